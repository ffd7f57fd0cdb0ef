/**
 * PCI-level access for conformance tests of devices other than edu-plus (the example device,
 * gpu): region info with its sparse areas, dword/qword register access, config space walks and
 * BAR sizing as firmware does it — all from the hand-built bodies of harness.ts, never the
 * production client's encoders.
 */
import assert from 'node:assert/strict';
import type { VfioUserClient } from '../../protocol/client.ts';
import { Cmd, body, closeFds, expectErrno, le, rd, send } from './harness.ts';

export const CONFIG = 7;
export const RegionFlag = { READ: 1, WRITE: 2, MMAP: 4, CAPS: 8 } as const;

export interface RegionInfo {
  readonly flags: number;
  readonly size: bigint;
  /** Sparse mmap areas as [offset, size]; empty for a trapped region. */
  readonly areas: [bigint, bigint][];
  /** Whether the server passed an fd (which is closed here). */
  readonly fd: boolean;
}

/** DEVICE_GET_REGION_INFO with room for any caps; walks the cap chain for SPARSE_MMAP (id 1). */
export async function regionInfo(c: VfioUserClient, index: number): Promise<RegionInfo> {
  const r = await send(c, Cmd.DEVICE_GET_REGION_INFO, body.regionInfo(4096, index));
  closeFds(r.fds);
  assert.equal(r.errno, 0, `region ${index} info`);
  const b = r.body;
  const areas: [bigint, bigint][] = [];
  for (let at = rd.u32(b, 12); at !== 0; at = rd.u32(b, at + 4)) {
    if (rd.u16(b, at) !== 1) continue;
    const count = rd.u32(b, at + 8);
    for (let i = 0; i < count; i++) areas.push([rd.u64(b, at + 16 + i * 16), rd.u64(b, at + 24 + i * 16)]);
  }
  return { flags: rd.u32(b, 4), size: rd.u64(b, 16), areas, fd: r.fds.length > 0 };
}

/** A little-endian read of 1, 2, 4 or 8 bytes (8 as a bigint). */
export async function read(c: VfioUserClient, region: number, offset: number | bigint, bytes: 1 | 2 | 4): Promise<number>;
export async function read(c: VfioUserClient, region: number, offset: number | bigint, bytes: 8): Promise<bigint>;
export async function read(c: VfioUserClient, region: number, offset: number | bigint, bytes: 1 | 2 | 4 | 8): Promise<number | bigint> {
  const b = await expectErrno(c, Cmd.REGION_READ, body.regionAccess(BigInt(offset), region, bytes), 0);
  if (bytes === 8) return rd.u64(b, 16);
  return bytes === 4 ? rd.u32(b, 16) : bytes === 2 ? rd.u16(b, 16) : b[16]!;
}

export async function write(c: VfioUserClient, region: number, offset: number | bigint, bytes: 1 | 2 | 4 | 8, value: number | bigint): Promise<void> {
  const data = bytes === 8 ? le().u64(BigInt(value)).build() : le().u32(Number(value)).build().subarray(0, bytes);
  await expectErrno(c, Cmd.REGION_WRITE, body.regionAccess(BigInt(offset), region, bytes, data), 0);
}

/** Capability id → config offset, walking the chain from 0x34 as a driver does. */
export async function capabilities(c: VfioUserClient): Promise<Map<number, number>> {
  const found = new Map<number, number>();
  for (let at = await read(c, CONFIG, 0x34, 1); at !== 0 && found.size < 48; at = await read(c, CONFIG, at + 1, 1)) found.set(await read(c, CONFIG, at, 1), at);
  return found;
}

/** BAR `index` sized as firmware does: write all-ones, read back, invert the address bits. */
export async function barSize(c: VfioUserClient, index: number): Promise<{ size: bigint; is64: boolean; prefetchable: boolean }> {
  const at = 0x10 + index * 4;
  const type = await read(c, CONFIG, at, 4);
  await write(c, CONFIG, at, 4, 0xffff_ffff);
  const is64 = (type & 0x6) === 0x4;
  if (is64) await write(c, CONFIG, at + 4, 4, 0xffff_ffff);
  let mask = BigInt((await read(c, CONFIG, at, 4)) & ~0xf) & 0xffff_ffffn;
  if (is64) mask |= BigInt(await read(c, CONFIG, at + 4, 4)) << 32n;
  const width = is64 ? (1n << 64n) - 1n : 0xffff_ffffn;
  return { size: (~mask & width) + 1n, is64, prefetchable: (type & 0x8) !== 0 };
}

/** Initiate FLR through the PCI Express capability's Device Control register. */
export async function functionLevelReset(c: VfioUserClient): Promise<void> {
  const exp = (await capabilities(c)).get(0x10);
  assert.ok(exp !== undefined, 'a PCI Express capability');
  const devctl = await read(c, CONFIG, exp + 8, 2);
  await write(c, CONFIG, exp + 8, 2, devctl | 0x8000);
}

export const Irq = { INTX: 0, MSI: 1, MSIX: 2 } as const;

/** DEVICE_SET_IRQS, DATA_EVENTFD | ACTION_TRIGGER: wires `efd` to vector `start` of `index`. */
export async function wireVector(c: VfioUserClient, index: number, start: number, efd: number): Promise<void> {
  await expectErrno(c, Cmd.DEVICE_SET_IRQS, body.setIrqs({ flags: 0x4 | 0x20, index, start, count: 1 }), 0, { fds: [efd] });
}
