/**
 * The C peer (bench/c-peer.c) against our own client: it must answer what QEMU's client asks
 * at attach time, serve edu's two registers, size BARs, and take a vIOMMU guest's page-sized
 * DMA maps (an fd with each) and unmaps. Correctness only; the bench measures its speed.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { VfioUserClient } from '../protocol/client.ts';
import { Errno, VfioUserError } from '../protocol/errors.ts';
import { close, memfdCreate } from '../protocol/native/libc.ts';
import { Command, RegionFlags } from '../protocol/wire.ts';
import { type RunningCPeer, startCPeer } from './c-peer.ts';

const u32 = (n: number) => new Uint8Array(new Uint32Array([n >>> 0]).buffer);
const readU32 = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, 4).getUint32(0, true);
const PAGE = 4096n;

async function rejectsWith(p: Promise<unknown>, errno: number): Promise<void> {
  await assert.rejects(p, (e: unknown) => e instanceof VfioUserError && e.errno === errno);
}

describe('c-peer (the benchmarks\' C vfio-user server)', () => {
  let dir: string;
  let peer: RunningCPeer;
  let client: VfioUserClient;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'edu-plus-c-peer-'));
    peer = await startCPeer(join(dir, 'peer.sock'), { maxDmaMaps: 5000 });
    client = VfioUserClient.connect(join(dir, 'peer.sock'));
  });
  after(async () => {
    client?.close();
    await peer?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('negotiates 0.0 with capabilities QEMU accepts (max_dma_maps capped at 65535)', async () => {
    const v = await client.version();
    assert.equal(v.major, 0);
    assert.equal(v.minor, 0);
    const caps = JSON.parse(v.json!).capabilities;
    assert.equal(caps.max_dma_maps, 5000);
    assert.ok(caps.max_msg_fds <= 16 && caps.pgsizes % 4096 === 0);
  });

  it('describes a PCI device with 9 regions: BAR0 trapped, BAR1 mmappable with its fd', async () => {
    const info = await client.deviceInfo();
    assert.equal(info.numRegions, 9);
    assert.equal(info.numIrqs, 5);
    const bar0 = await client.regionInfo(0);
    assert.equal(bar0.info.size, 1n << 20n);
    assert.equal(bar0.fd, undefined);
    const bar1 = await client.regionInfo(1);
    assert.equal(bar1.info.size, 64n << 20n);
    assert.ok(bar1.info.flags & RegionFlags.MMAP);
    assert.ok(bar1.fd !== undefined);
    close(bar1.fd!);
    assert.equal((await client.irqInfo(0)).count, 1);
  });

  it('has edu\'s identity in config space and sizes BAR0 and BAR1', async () => {
    const id = readU32(await client.regionRead(7, 0n, 4));
    assert.equal(id, 0x11e81234);
    assert.equal(readU32(await client.regionRead(7, 8n, 4)) >>> 8, 0x00ff00);
    await client.regionWrite(7, 0x10n, u32(0xffffffff));
    assert.equal(readU32(await client.regionRead(7, 0x10n, 4)), 0xfff00000);
    await client.regionWrite(7, 0x14n, u32(0xffffffff));
    await client.regionWrite(7, 0x18n, u32(0xffffffff));
    assert.equal(readU32(await client.regionRead(7, 0x14n, 4)), 0xfc00000c);
    assert.equal(readU32(await client.regionRead(7, 0x18n, 4)), 0xffffffff);
  });

  it('serves edu\'s identification and liveness registers', async () => {
    assert.equal(readU32(await client.regionRead(0, 0n, 4)), 0x010000ed);
    await client.regionWrite(0, 4n, u32(0x12345678));
    assert.equal(readU32(await client.regionRead(0, 4n, 4)), ~0x12345678 >>> 0);
    await client.reset();
    assert.equal(readU32(await client.regionRead(0, 4n, 4)), 0xffffffff);
    await rejectsWith(client.regionRead(0, (1n << 20n) - 2n, 4), Errno.EINVAL);
  });

  it('takes 4096 page-sized DMA maps with an fd each, keeps one fd, refuses overlaps and the 5001st', async () => {
    const memfd = memfdCreate('guest-ram', 8192n * PAGE);
    try {
      const base = 1n << 32n;
      for (let i = 0n; i < 4096n; i++) await client.dmaMap({ address: base + i * PAGE, size: PAGE, offset: i * PAGE, fd: memfd });
      // One descriptor kept for the one file, however many maps passed it.
      const fds = readdirSync(`/proc/${peer.pid}/fd`).length;
      assert.ok(fds < 16, `the peer holds ${fds} fds`);
      await rejectsWith(client.dmaMap({ address: base + 100n * PAGE, size: PAGE, fd: memfd }), Errno.EEXIST);
      await rejectsWith(client.dmaMap({ address: base - PAGE, size: 2n * PAGE, fd: memfd }), Errno.EEXIST);
      // A range cutting a map in two is refused; one holding nothing is fine.
      await rejectsWith(client.dmaUnmap(base + PAGE / 2n, PAGE), Errno.EINVAL);
      await client.dmaUnmap(1n << 40n, 1n << 20n);
      // Unmap one by one from the bottom and the rest as one range.
      for (let i = 0n; i < 2048n; i++) await client.dmaUnmap(base + i * PAGE, PAGE);
      await client.dmaUnmap(base, 4096n * PAGE);
      for (let i = 0n; i < 5000n; i++) await client.dmaMap({ address: i * PAGE, size: PAGE, fd: memfd });
      await rejectsWith(client.dmaMap({ address: 5000n * PAGE, size: PAGE, fd: memfd }), Errno.ENOSPC);
      await client.dmaUnmap(0n, 0n, 2 /* ALL */);
      await client.dmaMap({ address: 0n, size: PAGE, fd: memfd });
    } finally {
      close(memfd);
    }
  });

  it('answers any other command with ENOSYS and stays up', async () => {
    await rejectsWith(client.request(Command.DEVICE_FEATURE, new Uint8Array(8)), Errno.ENOSYS);
    assert.equal(readU32(await client.regionRead(0, 0n, 4)), 0x010000ed);
  });
});
