/**
 * The parts of the vfio-user bodies a struct table alone cannot say: VERSION's JSON text, the
 * region capability chain, REGION_WRITE_MULTI's entries, DMA_READ/WRITE's count-trimmed data,
 * and the hand-written fast path for REGION_READ/WRITE. Every layout comes from the tables in
 * wire.ts; nothing here repeats a size or an offset. Decoders refuse a short body with EINVAL;
 * u64 fields stay bigint.
 */
import { invalid } from './errors.ts';
import {
  CAP_SPARSE_MMAP,
  CapHeader,
  DmaTransferHead,
  RegionAccess,
  RegionInfo,
  SparseMmapArea,
  SparseMmapCap,
  VersionHead,
  WriteMultiEntry,
  WriteMultiHead,
} from './wire.ts';

// ---- VERSION ---------------------------------------------------------------------------------

export interface VersionBody {
  readonly major: number;
  readonly minor: number;
  /** The JSON text without its NUL, or undefined when the message has none. */
  readonly json?: string;
}

export function decodeVersion(body: Uint8Array): VersionBody {
  const { major, minor, json: text } = VersionHead.decode(body);
  if (text.byteLength === 0) return { major, minor };
  // The spec requires a NUL-terminated string; a missing NUL means a truncated or foreign peer.
  if (text[text.length - 1] !== 0) invalid('VERSION capabilities are not NUL-terminated');
  const nul = text.indexOf(0);
  if (nul !== text.length - 1) invalid('VERSION capabilities contain a NUL before the end');
  return { major, minor, json: Buffer.from(text.subarray(0, nul)).toString('utf8') };
}

export function encodeVersion(v: VersionBody): Buffer {
  return VersionHead.encode({ major: v.major, minor: v.minor, json: v.json === undefined ? undefined : Buffer.from(v.json + '\0', 'utf8') });
}

// ---- region capabilities ---------------------------------------------------------------------

export interface SparseArea {
  readonly offset: bigint;
  readonly size: bigint;
}

/** VFIO_REGION_INFO_CAP_SPARSE_MMAP as the only (last) capability of a region info reply. */
export function encodeSparseMmapCap(areas: readonly SparseArea[]): Buffer {
  const entries = Buffer.concat(areas.map((a) => SparseMmapArea.encode(a)));
  return SparseMmapCap.encode({ ...CAP_SPARSE_MMAP, next: 0, nrAreas: areas.length, reserved: 0, areas: entries });
}

export interface RegionCap {
  readonly id: number;
  readonly version: number;
  /** The whole capability, its header included. */
  readonly bytes: Uint8Array;
  /** The cap's bytes after its header. */
  readonly data: Uint8Array;
}

/** Walks a capability chain inside a region-info reply (offsets are from the struct's start). */
export function decodeCaps(info: RegionInfo): RegionCap[] {
  if (info.caps.byteLength === 0 || info.capOffset === 0) return [];
  const whole = new Uint8Array(RegionInfo.size + info.caps.byteLength);
  whole.set(info.caps, RegionInfo.size);
  const caps: RegionCap[] = [];
  let at = info.capOffset;
  const seen = new Set<number>();
  while (at !== 0) {
    if (seen.has(at) || at < RegionInfo.size || at + CapHeader.size > whole.byteLength) {
      invalid(`bad capability offset ${at}`);
    }
    seen.add(at);
    const { id, version, next } = CapHeader.decode(whole.subarray(at));
    const end = next > at ? next : whole.byteLength;
    caps.push({ id, version, bytes: whole.subarray(at, end), data: whole.subarray(at + CapHeader.size, end) });
    at = next;
  }
  return caps;
}

export function decodeSparseAreas(cap: RegionCap): SparseArea[] {
  const { nrAreas, areas } = SparseMmapCap.decode(cap.bytes);
  const out: SparseArea[] = [];
  for (let i = 0; i < nrAreas; i++) {
    const { offset, size } = SparseMmapArea.decode(areas.subarray(i * SparseMmapArea.size));
    out.push({ offset, size });
  }
  return out;
}

// ---- REGION_READ / REGION_WRITE: the hot path --------------------------------------------------

// Offsets read from the table once: the fast path below repeats no layout of its own.
const ACCESS_SIZE = RegionAccess.size;
const AT_OFFSET = RegionAccess.offsetOf('offset');
const AT_REGION = RegionAccess.offsetOf('region');
const AT_COUNT = RegionAccess.offsetOf('count');

/**
 * RegionAccess.decode without its per-field loop: one DataView, one object of a fixed shape,
 * `data` a view of the frame (no copy). codec.test.ts holds it equal to the table's decoder.
 */
export function decodeRegionAccess(body: Uint8Array): RegionAccess {
  if (body.byteLength < ACCESS_SIZE) invalid(`payload too short for ${RegionAccess.name}: need ${ACCESS_SIZE} bytes, have ${body.byteLength}`);
  const view = new DataView(body.buffer, body.byteOffset, ACCESS_SIZE);
  return {
    offset: view.getBigUint64(AT_OFFSET, true),
    region: view.getUint32(AT_REGION, true),
    count: view.getUint32(AT_COUNT, true),
    data: new Uint8Array(body.buffer, body.byteOffset + ACCESS_SIZE, body.byteLength - ACCESS_SIZE),
  };
}

/** RegionAccess.encode without its per-field loop: one buffer, every byte written. */
export function encodeRegionAccess(a: RegionAccess): Buffer {
  const out = Buffer.allocUnsafe(ACCESS_SIZE + a.data.byteLength);
  out.writeBigUInt64LE(a.offset, AT_OFFSET);
  out.writeUInt32LE(a.region >>> 0, AT_REGION);
  out.writeUInt32LE(a.count >>> 0, AT_COUNT);
  out.set(a.data, ACCESS_SIZE);
  return out;
}

// ---- REGION_WRITE_MULTI ----------------------------------------------------------------------

/** One coalesced write, its data trimmed to `count` (at most 8 bytes). */
export interface MultiWrite {
  readonly offset: bigint;
  readonly region: number;
  readonly count: number;
  readonly data: Uint8Array;
}

export function decodeWriteMulti(body: Uint8Array): MultiWrite[] {
  const { wrCnt, entries } = WriteMultiHead.decode(body);
  if (BigInt(entries.byteLength) !== wrCnt * BigInt(WriteMultiEntry.size)) {
    invalid(`REGION_WRITE_MULTI wr_cnt ${wrCnt} does not match ${entries.byteLength} bytes of entries`);
  }
  const writes: MultiWrite[] = [];
  for (let at = 0; at < entries.byteLength; at += WriteMultiEntry.size) {
    const { offset, region, count, data } = WriteMultiEntry.decode(entries.subarray(at));
    if (count > data.byteLength) invalid(`REGION_WRITE_MULTI entry ${at / WriteMultiEntry.size} count ${count} exceeds ${data.byteLength}`);
    writes.push({ offset, region, count, data: data.subarray(0, count) });
  }
  return writes;
}

export function encodeWriteMulti(writes: readonly MultiWrite[]): Buffer {
  const entries = Buffer.concat(writes.map((w) => WriteMultiEntry.encode(w)));
  return WriteMultiHead.encode({ wrCnt: BigInt(writes.length), entries });
}

// ---- DMA_READ / DMA_WRITE (server → client) --------------------------------------------------

export interface DmaTransfer {
  readonly address: bigint;
  readonly count: number;
  readonly data: Uint8Array;
}

export function encodeDmaTransfer(t: DmaTransfer): Buffer {
  return DmaTransferHead.encode({ address: t.address, count: BigInt(t.count), data: t.data });
}

/** Decodes either direction; `data` is what follows the fixed part, trimmed to count. */
export function decodeDmaTransfer(body: Uint8Array, expectData: boolean): DmaTransfer {
  const { address, count: count64, data } = DmaTransferHead.decode(body);
  if (count64 > 0xffff_ffffn) invalid(`DMA transfer count ${count64} is larger than any transfer`);
  const count = Number(count64);
  if (!expectData) return { address, count, data: new Uint8Array(0) };
  if (data.byteLength < count) invalid(`DMA transfer of ${count} bytes carries only ${data.byteLength}`);
  return { address, count, data: data.subarray(0, count) };
}
