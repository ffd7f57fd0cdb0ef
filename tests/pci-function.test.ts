/**
 * The PCI function layer through the real server and client: config space and region info
 * generated from one declaration (BAR sizing masks agree with region sizes), the capability
 * chain, a doorbell page trapping inside a shared-memory BAR, FLR and PM soft reset by config
 * writes, and the server refusing an inconsistent declaration at start.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { PciFunctionDeclaration } from '../device/pci/declaration.ts';
import { PciFunction, type ResetCause } from '../device/pci/function.ts';
import { VfioUserClient } from '../protocol/client.ts';
import { decodeCaps, decodeSparseAreas } from '../protocol/codec.ts';
import { silentLogger } from '../protocol/log.ts';
import { VfioUserServer } from '../protocol/server.ts';
import type { DeviceHost, DeviceModel } from '../protocol/served-device.ts';
import { close, eventfdConsume, eventfdCreate } from '../protocol/native/libc.ts';
import { IrqSetFlags, PciIrq, PciRegion, RegionFlags } from '../protocol/wire.ts';

const MiB = 1n << 20n;
const PAGE = 4096n;

function declaration(over: Partial<PciFunctionDeclaration> = {}): PciFunctionDeclaration {
  return {
    name: 'sample',
    vendorId: 0x1234,
    deviceId: 0xbeef,
    revision: 3,
    classCode: 0x120000,
    subsystemVendorId: 0x1af4,
    subsystemId: 0x1100,
    interruptPin: 1,
    bars: [
      { index: 0, size: 4096n, backing: 'trapped' },
      // A RAM BAR whose second page is a doorbell that traps.
      { index: 2, size: 16n * MiB, is64: true, prefetchable: true, backing: 'memory', trappedRanges: [{ offset: PAGE, size: PAGE }] },
    ],
    capabilities: [
      { kind: 'msi', vectors: 4, address64: false },
      { kind: 'pm', softReset: true },
      { kind: 'pcie', flr: true },
    ],
    ...over,
  };
}

/**
 * A scratch register at BAR0+0, an interrupt trigger at BAR0+4 (the value is the vector), and a
 * doorbell that counts rings (BAR2's trapped page).
 */
class Sample extends PciFunction {
  scratch = 0;
  rings: { offset: number; value: bigint }[] = [];
  resets: ResetCause[] = [];
  protected barRead(bar: number, offset: number): bigint {
    return bar === 0 && offset === 0 ? BigInt(this.scratch) : BigInt(this.rings.length);
  }
  protected barWrite(bar: number, offset: number, _size: number, value: bigint): void {
    if (bar === 0 && offset === 4) this.raiseInterrupt(Number(value));
    else if (bar === 0) this.scratch = Number(value);
    else this.rings.push({ offset, value });
  }
  protected resetRegisters(cause: ResetCause): void {
    this.scratch = 0;
    this.resets.push(cause);
  }
}

const dir = mkdtempSync(join(tmpdir(), 'edu-plus-pci-'));
let n = 0;
after(() => rmSync(dir, { recursive: true, force: true }));

async function withSample(decl: PciFunctionDeclaration, body: (c: VfioUserClient, d: Sample) => Promise<void>): Promise<void> {
  const server = VfioUserServer.listen({ socketPath: join(dir, `s${n++}.sock`), device: (host: DeviceHost) => new Sample(host, decl), log: silentLogger });
  const client = VfioUserClient.connect(server.socketPath);
  try {
    await client.version();
    await body(client, server.device as Sample);
  } finally {
    client.close();
    server.close();
  }
}

const le = (bytes: number, v: number) => {
  const b = Buffer.alloc(bytes);
  if (bytes === 8) b.writeBigUInt64LE(BigInt(v));
  else b.writeUIntLE(v, 0, bytes);
  return b;
};
const cfgRead = async (c: VfioUserClient, off: number, bytes: number) => Buffer.from(await c.regionRead(PciRegion.CONFIG, BigInt(off), bytes)).readUIntLE(0, bytes);
const cfgWrite = (c: VfioUserClient, off: number, bytes: number, v: number) => c.regionWrite(PciRegion.CONFIG, BigInt(off), le(bytes, v));

/** Capability id → offset, walking the chain from 0x34 as a driver does. */
async function capabilities(c: VfioUserClient): Promise<Map<number, number>> {
  const found = new Map<number, number>();
  for (let at = await cfgRead(c, 0x34, 1); at !== 0 && found.size < 48; at = await cfgRead(c, at + 1, 1)) found.set(await cfgRead(c, at, 1), at);
  return found;
}

describe('PCI function layer', () => {
  it('generates identity, BAR types and sizing masks that agree with the region sizes', async () => {
    await withSample(declaration(), async (c) => {
      assert.equal(await cfgRead(c, 0x00, 4), 0xbeef1234);
      assert.equal(await cfgRead(c, 0x08, 4), 0x12000003, 'class code and revision');
      assert.equal(await cfgRead(c, 0x2c, 4), 0x11001af4);
      assert.equal(await cfgRead(c, 0x3d, 1), 1, 'INTA#');
      assert.equal(await cfgRead(c, 0x18, 4), 0xc, 'BAR2: 64-bit prefetchable memory');
      for (const index of [0, 2]) {
        const { info } = await c.regionInfo(index);
        // Size the BAR as firmware does: all-ones, read back, invert the address bits.
        const at = 0x10 + index * 4;
        await cfgWrite(c, at, 4, 0xffff_ffff);
        const is64 = ((await cfgRead(c, at, 4)) & 0x6) === 0x4;
        if (is64) await cfgWrite(c, at + 4, 4, 0xffff_ffff);
        let mask = BigInt((await cfgRead(c, at, 4)) & ~0xf);
        if (is64) mask |= BigInt(await cfgRead(c, at + 4, 4)) << 32n;
        const width = is64 ? 0xffff_ffff_ffff_ffffn : 0xffff_ffffn;
        assert.equal((~mask & width) + 1n, info.size, `BAR${index}: sizing mask and region size agree`);
      }
      assert.equal((await c.regionInfo(1)).info.size, 0n, 'the upper half of BAR2 has no region');
    });
  });

  it('chains the declared capabilities and gives a PCI Express function 4 KiB of config space', async () => {
    await withSample(declaration(), async (c) => {
      assert.ok((await cfgRead(c, 0x06, 2)) & 0x10, 'status: capability list');
      const caps = await capabilities(c);
      assert.deepEqual([...caps.entries()], [[0x05, 0x40], [0x01, 0x4c], [0x10, 0x54]]);
      assert.equal(await cfgRead(c, 0x42, 2), 2 << 1, 'MSI: 4 vectors requested, 32-bit');
      assert.equal(await cfgRead(c, 0x54 + 4, 4) & (1 << 28), 1 << 28, 'Device Capabilities: FLR');
      assert.equal((await c.regionInfo(PciRegion.CONFIG)).info.size, 4096n);
      assert.equal((await c.irqInfo(1)).count, 4);
    });
    await withSample(declaration({ capabilities: [{ kind: 'msi', vectors: 1, address64: true }] }), async (c) => {
      assert.equal((await c.regionInfo(PciRegion.CONFIG)).info.size, 256n, 'conventional: 256 bytes');
    });
  });

  it('advertises a shared-memory BAR with a trapped page as two mmap areas, and traps only that page', async () => {
    await withSample(declaration(), async (c, d) => {
      const { info, fd } = await c.regionInfo(2);
      assert.ok(fd !== undefined && info.flags & RegionFlags.MMAP);
      const areas = decodeCaps(info).flatMap((cap) => decodeSparseAreas(cap));
      assert.deepEqual(areas, [{ offset: 0n, size: PAGE }, { offset: 2n * PAGE, size: 16n * MiB - 2n * PAGE }]);
      await c.regionWrite(2, PAGE + 8n, le(4, 0xd00b));
      await c.regionWrite(2, 2n * PAGE, le(4, 0x5a5a));
      assert.deepEqual(d.rings, [{ offset: Number(PAGE) + 8, value: 0xd00bn }], 'the doorbell write reached the device');
      assert.equal(Buffer.from(d.barMemory(2).bytes(Number(2n * PAGE), 4)).readUInt32LE(0), 0x5a5a, 'the other write landed in memory');
      assert.equal(Buffer.from(d.barMemory(2).bytes(Number(PAGE) + 8, 4)).readUInt32LE(0), 0, 'the doorbell page of memory stays untouched');
      assert.equal(Buffer.from(await c.regionRead(2, PAGE, 4)).readUInt32LE(0), 1, 'a doorbell read is the device\'s');
    });
  });

  it('resets the function when the guest writes Initiate FLR, which reads back as 0', async () => {
    await withSample(declaration(), async (c, d) => {
      await c.regionWrite(0, 0n, le(4, 77));
      await cfgWrite(c, 0x04, 2, 0x6);
      await c.regionWrite(2, 0n, le(4, 0xfeed));
      await cfgWrite(c, 0x54 + 8, 2, 0x8000 | 0x2810);
      assert.deepEqual(d.resets, ['flr']);
      assert.equal(d.scratch, 0);
      assert.equal(await cfgRead(c, 0x04, 2), 0, 'command register back to power-on');
      assert.equal(await cfgRead(c, 0x54 + 8, 2), 0x2810, 'Device Control at power-on, FLR bit not stored');
      assert.equal(Buffer.from(await c.regionRead(2, 0n, 4)).readUInt32LE(0), 0xfeed, 'shared memory kept');
    });
    await withSample(declaration({ capabilities: [{ kind: 'pcie', flr: false }] }), async (c, d) => {
      await cfgWrite(c, 0x40 + 8, 2, 0x8000);
      assert.deepEqual(d.resets, [], 'no FLR without the capability bit');
    });
  });

  it('resets on PM D3hot→D0 only when No_Soft_Reset is clear, and ignores D1/D2 requests', async () => {
    const pmcsr = 0x4c + 4;
    await withSample(declaration(), async (c, d) => {
      await c.regionWrite(0, 0n, le(4, 5));
      await cfgWrite(c, pmcsr, 2, 1);
      assert.equal((await cfgRead(c, pmcsr, 2)) & 3, 0, 'D1 is not supported: stays D0');
      await cfgWrite(c, pmcsr, 2, 3);
      assert.equal((await cfgRead(c, pmcsr, 2)) & 3, 3, 'D3hot');
      assert.deepEqual(d.resets, [], 'entering D3hot is no reset');
      await cfgWrite(c, pmcsr, 2, 0);
      assert.deepEqual(d.resets, ['pm']);
      assert.equal(d.scratch, 0);
    });
    await withSample(declaration({ capabilities: [{ kind: 'pm', softReset: false }] }), async (c, d) => {
      await c.regionWrite(0, 0n, le(4, 5));
      assert.equal((await cfgRead(c, 0x40 + 4, 2)) & 0x8, 0x8, 'No_Soft_Reset set');
      await cfgWrite(c, 0x40 + 4, 2, 3);
      await cfgWrite(c, 0x40 + 4, 2, 0);
      assert.deepEqual(d.resets, []);
      assert.equal(d.scratch, 5, 'state kept across D3hot with No_Soft_Reset');
    });
  });

  it('DEVICE_RESET from the client resets registers and config space', async () => {
    await withSample(declaration(), async (c, d) => {
      await c.regionWrite(0, 0n, le(4, 9));
      await cfgWrite(c, 0x04, 2, 0x2);
      await c.reset();
      assert.deepEqual(d.resets, ['device']);
      assert.equal(await cfgRead(c, 0x04, 2), 0);
    });
  });

  it('MSI-X: capability, irq info, a table that keeps entries (masked at reset), a read-only PBA, and delivery to the wired vector', async () => {
    const decl = declaration({
      capabilities: [{ kind: 'msix', vectors: 4, table: { bar: 0, offset: 0x800n }, pba: { bar: 0, offset: 0xc00n } }],
    });
    await withSample(decl, async (c, d) => {
      const at = (await capabilities(c)).get(0x11);
      assert.equal(at, 0x40);
      assert.equal(await cfgRead(c, 0x42, 2), 3, 'table size 4 (N-1)');
      assert.equal(await cfgRead(c, 0x44, 4), 0x800, 'table at BAR0+0x800');
      assert.equal(await cfgRead(c, 0x48, 4), 0xc00, 'PBA at BAR0+0xc00');
      assert.equal((await c.irqInfo(PciIrq.MSIX)).count, 4);
      const entry = (v: number, field: number) => BigInt(0x800 + v * 16 + field);
      assert.equal(Buffer.from(await c.regionRead(0, entry(1, 12), 4)).readUInt32LE(0), 1, 'vector 1 masked at reset');
      await c.regionWrite(0, entry(2, 0), le(8, 0xfee0_0000));
      await c.regionWrite(0, entry(2, 8), le(4, 0x4041));
      assert.equal(Buffer.from(await c.regionRead(0, entry(2, 8), 4)).readUInt32LE(0), 0x4041);
      await c.regionWrite(0, 0xc00n, le(8, 0xff));
      assert.equal(Buffer.from(await c.regionRead(0, 0xc00n, 8)).readBigUInt64LE(0), 0n, 'the PBA is read-only');
      assert.equal(d.scratch, 0, 'table writes never reach the device');

      const efd = eventfdCreate();
      try {
        await c.setIrqs({ flags: IrqSetFlags.DATA_EVENTFD | IrqSetFlags.ACTION_TRIGGER, index: PciIrq.MSIX, start: 2, count: 1, fds: [efd] });
        await c.regionWrite(0, 4n, le(4, 2));
        assert.equal(eventfdConsume(efd), 1n, 'vector 2 fired');
        await c.regionWrite(0, 4n, le(4, 1));
        assert.equal(eventfdConsume(efd), 0n, 'vector 1 is not wired: it falls back to INTx, not to vector 2');
        assert.equal((await cfgRead(c, 0x06, 2)) & 0x8, 0x8, 'INTx pending instead');
      } finally {
        close(efd);
      }
      await c.reset();
      assert.equal(Buffer.from(await c.regionRead(0, entry(2, 8), 4)).readUInt32LE(0), 0, 'reset clears the table');
      assert.equal(Buffer.from(await c.regionRead(0, entry(2, 12), 4)).readUInt32LE(0), 1, 'and masks every vector');
    });
  });

  it('makes the server refuse an inconsistent device at start, naming the field', () => {
    assert.throws(
      () =>
        VfioUserServer.listen({
          socketPath: join(dir, 'broken.sock'),
          device: (host: DeviceHost) => new Sample(host, declaration({ bars: [{ index: 5, size: MiB, is64: true, backing: 'memory' }] })),
          log: silentLogger,
        }),
      /bars\[0\]\.is64: a 64-bit BAR takes two slots/,
    );
  });

  it('refuses, for any device, mmap areas that are not whole pages inside a shared-memory region', () => {
    const handBuilt = (mmapAreas: { offset: bigint; size: bigint }[]) => (host: DeviceHost): DeviceModel => ({
      name: 'hand-built',
      numRegions: 9,
      numIrqs: 5,
      resettable: false,
      regions: [{ index: 0, size: MiB, readable: true, writable: true, memory: host.allocateSharedMemory('hb', MiB), mmapAreas }],
      irqs: [],
      read: (_r, _o, into) => into.fill(0xff),
      write: () => {},
      reset: () => {},
    });
    const listen = (mmapAreas: { offset: bigint; size: bigint }[]) =>
      VfioUserServer.listen({ socketPath: join(dir, `hb${n++}.sock`), device: handBuilt(mmapAreas), log: silentLogger }).close();
    listen([{ offset: 0n, size: PAGE }, { offset: 2n * PAGE, size: MiB - 2n * PAGE }]);
    assert.throws(() => listen([{ offset: 0x800n, size: PAGE }]), /hand-built: region 0 mmapAreas\[0\]: offset and size must be non-empty multiples of 4096/);
    assert.throws(() => listen([{ offset: PAGE, size: PAGE }, { offset: 0n, size: PAGE }]), /mmapAreas\[1\]: areas must be in order/);
    assert.throws(() => listen([{ offset: MiB - PAGE, size: 2n * PAGE }]), /mmapAreas\[0\]: ends at 0x101000, past the region's 0x100000 bytes/);
  });
});
