/**
 * Our client against our server serving edu-plus over a real Unix socket: attach sequence as
 * QEMU does it, trapped BAR0 and config accesses, BAR1 through the shared memfd, and that bad
 * input gets an error reply while the server keeps serving.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createEduPlus, type EduPlus } from '../device/edu-plus.ts';
import { VfioUserClient } from '../protocol/client.ts';
import { decodeCaps, decodeSparseAreas } from '../protocol/codec.ts';
import { Errno, VfioUserError } from '../protocol/errors.ts';
import { silentLogger } from '../protocol/log.ts';
import { eventfdConsume, eventfdCreate, isOpenFd, memfdCreate, mmapShared, munmap, viewOf, close } from '../protocol/native/libc.ts';
import { VfioUserServer } from '../protocol/server.ts';
import { Command, CAP_SPARSE_MMAP, PciRegion, RegionFlags } from '../protocol/wire.ts';

function u32(bytes: Uint8Array): number {
  return new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, true);
}
function le32(v: number): Uint8Array {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  return b;
}
async function rejectsWith(p: Promise<unknown>, errno: number): Promise<void> {
  await assert.rejects(p, (err: unknown) => err instanceof VfioUserError && err.errno === errno);
}

describe('edu-plus over vfio-user (our client, our server)', () => {
  let dir: string;
  let server: VfioUserServer;
  let client: VfioUserClient;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'edu-plus-test-'));
    server = VfioUserServer.listen({ socketPath: join(dir, 'dev.sock'), device: createEduPlus(), log: silentLogger });
    client = VfioUserClient.connect(server.socketPath);
    await client.version();
  });

  after(() => {
    client.close();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('creates the socket with mode 0600', () => {
    assert.equal(statSync(server.socketPath).mode & 0o777, 0o600);
  });

  it('reports a resettable PCI device with 9 regions and 5 irq indexes', async () => {
    const info = await client.deviceInfo();
    assert.deepEqual({ flags: info.flags, regions: info.numRegions, irqs: info.numIrqs }, { flags: 3, regions: 9, irqs: 5 });
  });

  it('describes BAR0 as a trapped 1 MiB region and region 2 as empty', async () => {
    const bar0 = await client.regionInfo(PciRegion.BAR0);
    assert.equal(bar0.info.size, 1n << 20n);
    assert.equal(bar0.info.flags, RegionFlags.READ | RegionFlags.WRITE);
    assert.equal(bar0.fd, undefined);
    const bar2 = await client.regionInfo(PciRegion.BAR2);
    assert.equal(bar2.info.size, 0n);
  });

  it('hands BAR1 over as one mmappable fd with a sparse area covering 64 MiB', async () => {
    const { info, fd } = await client.regionInfo(PciRegion.BAR1);
    assert.equal(info.size, 64n << 20n);
    assert.equal(info.flags, RegionFlags.READ | RegionFlags.WRITE | RegionFlags.MMAP | RegionFlags.CAPS);
    const caps = decodeCaps(info);
    assert.equal(caps.length, 1);
    assert.equal(caps[0]!.id, CAP_SPARSE_MMAP.id);
    assert.deepEqual(decodeSparseAreas(caps[0]!), [{ offset: 0n, size: 64n << 20n }]);
    assert.ok(fd !== undefined);
    // Writes through our mapping of the fd land in the device's own memory, without a message.
    const addr = mmapShared(fd, info.size, info.offset);
    const before = server.currentSession!.stats.regionWrites.get(PciRegion.BAR1) ?? 0;
    new DataView(viewOf(addr + 4096n * 3n, 4)).setUint32(0, 0xcafef00d, true);
    munmap(addr, info.size);
    close(fd);
    const device = server.device as EduPlus;
    assert.equal(new DataView(device.bar1.bytes(4096 * 3, 4).slice().buffer).getUint32(0, true), 0xcafef00d);
    assert.equal(server.currentSession!.stats.regionWrites.get(PciRegion.BAR1) ?? 0, before);
  });

  it('reads the identification register and inverts liveness', async () => {
    assert.equal(u32(await client.regionRead(PciRegion.BAR0, 0n, 4)), 0x010000ed);
    await client.regionWrite(PciRegion.BAR0, 4n, le32(0x12345678));
    assert.equal(u32(await client.regionRead(PciRegion.BAR0, 4n, 4)), 0xedcba987);
  });

  it('answers wrongly sized BAR0 accesses like QEMU\'s edu instead of failing', async () => {
    // QEMU's memory core keeps 1- and 2-byte accesses away from edu: they read 0.
    assert.deepEqual([...(await client.regionRead(PciRegion.BAR0, 0n, 2))], [0, 0]);
    // An 8-byte read below 0x80 reaches edu, which answers all-ones.
    assert.deepEqual([...(await client.regionRead(PciRegion.BAR0, 0n, 8))], Array(8).fill(0xff));
  });

  it('serves config space: ids, class, BAR type bits, MSI capability', async () => {
    const cfg = await client.regionRead(PciRegion.CONFIG, 0n, 256);
    const v = new DataView(cfg.buffer, cfg.byteOffset);
    assert.equal(v.getUint16(0, true), 0x1234);
    assert.equal(v.getUint16(2, true), 0x11e8);
    assert.equal(cfg[8], 0x10);
    // Class code 0x00ff00: prog-if 0x00, sub class 0xff, base class 0x00 (lspci: "00ff").
    assert.deepEqual([cfg[9], cfg[10], cfg[11]], [0x00, 0xff, 0x00]);
    assert.equal(v.getUint32(0x10, true) & 0xf, 0x0);
    assert.equal(v.getUint32(0x14, true) & 0xf, 0xc);
    assert.equal(cfg[0x3d], 1);
    const cap = cfg[0x34]!;
    assert.equal(cfg[cap], 0x05);
    assert.equal(v.getUint16(cap + 2, true) & 0x80, 0x80);
  });

  it('sizes BAR0 and BAR1 like hardware when the guest writes all-ones', async () => {
    await client.regionWrite(PciRegion.CONFIG, 0x10n, le32(0xffffffff));
    assert.equal(u32(await client.regionRead(PciRegion.CONFIG, 0x10n, 4)), 0xfff00000);
    await client.regionWrite(PciRegion.CONFIG, 0x14n, le32(0xffffffff));
    await client.regionWrite(PciRegion.CONFIG, 0x18n, le32(0xffffffff));
    assert.equal(u32(await client.regionRead(PciRegion.CONFIG, 0x14n, 4)), 0xfc00000c);
    assert.equal(u32(await client.regionRead(PciRegion.CONFIG, 0x18n, 4)), 0xffffffff);
  });

  it('describes INTx and MSI with one vector each', async () => {
    assert.equal((await client.irqInfo(0)).count, 1);
    assert.equal((await client.irqInfo(1)).count, 1);
    assert.equal((await client.irqInfo(2)).count, 0);
  });

  it('refuses out-of-range accesses with EINVAL and keeps serving', async () => {
    await rejectsWith(client.regionRead(PciRegion.BAR0, (1n << 20n) - 2n, 4), Errno.EINVAL);
    await rejectsWith(client.regionRead(PciRegion.BAR0, 0xffff_ffff_ffff_fffcn, 8), Errno.EINVAL);
    await rejectsWith(client.regionRead(42, 0n, 4), Errno.EINVAL);
    await rejectsWith(client.regionRead(PciRegion.BAR2, 0n, 4), Errno.EINVAL);
    assert.equal(u32(await client.regionRead(PciRegion.BAR0, 0n, 4)), 0x010000ed);
  });

  it('answers an unknown command with ENOSYS', async () => {
    await rejectsWith(client.request(99, new Uint8Array(4)), Errno.ENOSYS);
    await rejectsWith(client.request(14 /* retired DIRTY_PAGES */, new Uint8Array(16)), Errno.ENOSYS);
    await rejectsWith(client.request(Command.DMA_READ, new Uint8Array(16)), Errno.ENOSYS);
  });

  it('refuses fds attached to a command that takes none, and closes them', async () => {
    const efd = eventfdCreate();
    try {
      await rejectsWith(client.request(Command.DEVICE_GET_INFO, new Uint8Array(16).fill(0).map((_, i) => (i === 0 ? 16 : 0)), [efd]), Errno.EINVAL);
      // Our copy is still open; the server's copy was closed (it holds no eventfds).
      assert.ok(isOpenFd(efd));
      assert.equal(server.irqs.heldFds, 0);
    } finally {
      close(efd);
    }
  });

  it('accepts INTx eventfds and QEMU-style mask/unmask, and signals on interrupt raise', async () => {
    const efd = eventfdCreate();
    const set = (flags: number, count: number, fds: number[] = []) => {
      const b = Buffer.alloc(20);
      b.writeUInt32LE(20, 0);
      b.writeUInt32LE(flags, 4);
      b.writeUInt32LE(0, 8);
      b.writeUInt32LE(0, 12);
      b.writeUInt32LE(count, 16);
      return client.request(Command.DEVICE_SET_IRQS, b, fds);
    };
    try {
      await set(0x4 | 0x20, 1, [efd]); // DATA_EVENTFD | ACTION_TRIGGER
      assert.equal(server.irqs.heldFds, 1);
      await set(0x1 | 0x8, 1); // DATA_NONE | MASK
      await set(0x1 | 0x10, 1); // DATA_NONE | UNMASK
      assert.equal(eventfdConsume(efd), 0n);
      await client.regionWrite(PciRegion.BAR0, 0x60n, le32(0x4));
      // The server's copy of our eventfd was signalled: this is what QEMU would see.
      assert.equal(eventfdConsume(efd), 1n);
      assert.equal(u32(await client.regionRead(PciRegion.BAR0, 0x24n, 4)), 0x4);
      await set(0x1 | 0x20, 0); // disable
      assert.equal(server.irqs.heldFds, 0);
    } finally {
      close(efd);
    }
  });

  it('refuses a non-eventfd as an interrupt fd (a resample memfd used to abort the process)', async () => {
    const mem = memfdCreate('not-an-eventfd', 4096n);
    try {
      for (const action of [0x20, 0x10]) {
        await rejectsWith(client.setIrqs({ flags: 0x4 | action, index: 0, start: 0, count: 1, fds: [mem] }), Errno.EINVAL);
      }
      assert.equal(server.irqs.heldFds, 0);
      assert.equal(u32(await client.regionRead(PciRegion.BAR0, 0n, 4)), 0x010000ed);
    } finally {
      close(mem);
    }
  });

  it('closes a connection whose header is unusable, after an error reply, then serves the next client', async () => {
    const bad = VfioUserClient.connect(server.socketPath);
    const id = bad.allocateId();
    const reply = bad.waitReply(id, Command.VERSION);
    const hdr = Buffer.alloc(16);
    hdr.writeUInt16LE(id, 0);
    hdr.writeUInt16LE(Command.VERSION, 2);
    hdr.writeUInt32LE(4, 4); // size 4 < 16
    // The first client is still connected, so this one is refused: EBUSY, then closed.
    bad.sendRaw(hdr);
    assert.equal((await reply).header.error, Errno.EBUSY);
    client.close();
    await server.clientGone();
    const next = VfioUserClient.connect(server.socketPath);
    const id2 = next.allocateId();
    const reply2 = next.waitReply(id2, Command.VERSION);
    hdr.writeUInt16LE(id2, 0);
    next.sendRaw(hdr);
    const r = await reply2;
    assert.equal(r.header.error, Errno.EINVAL);
    await server.clientGone();
    client = VfioUserClient.connect(server.socketPath);
    await client.version();
    assert.equal(u32(await client.regionRead(PciRegion.BAR0, 0n, 4)), 0x010000ed);
  });
});
