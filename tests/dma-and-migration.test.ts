/**
 * Server-issued DMA (both paths) and migration, driven by our client against our server.
 */
import assert from 'node:assert/strict';
import { ftruncateSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createEduPlus, type EduPlus } from '../device/edu-plus.ts';
import { VfioUserClient } from '../protocol/client.ts';
import { DmaFault } from '../protocol/served-device.ts';
import { Errno, VfioUserError } from '../protocol/errors.ts';
import { silentLogger } from '../protocol/log.ts';
import { Seal, close, memfdCreate, mmapShared, munmap, viewOf } from '../protocol/native/libc.ts';
import { VfioUserServer } from '../protocol/server.ts';
import { MigState, MigrationFlags, PciRegion } from '../protocol/wire.ts';

const dir = mkdtempSync(join(tmpdir(), 'edu-plus-dma-'));
let n = 0;
async function connected(): Promise<{ server: VfioUserServer; client: VfioUserClient }> {
  const server = VfioUserServer.listen({ socketPath: join(dir, `s${n++}.sock`), device: createEduPlus(), log: silentLogger });
  const client = VfioUserClient.connect(server.socketPath);
  // A small max_data_xfer_size makes the message path split transfers into several messages.
  await client.version(JSON.stringify({ capabilities: { max_msg_fds: 8, max_data_xfer_size: 4096 } }));
  return { server, client };
}
const le32 = (v: number) => Buffer.from(Uint32Array.of(v).buffer);

after(() => rmSync(dir, { recursive: true, force: true }));

describe('server-issued DMA', () => {
  it('reads and writes guest memory through DMA_READ/DMA_WRITE when the client passed no fd', async () => {
    const { server, client } = await connected();
    const guest = new Uint8Array(0x4000).map((_, i) => i & 0xff);
    await client.dmaMap({ address: 0x100000n, size: 0x4000n, memory: guest });
    const got = await server.dmaAccess.read(0x100000n + 0x10n, 0x2000);
    assert.deepEqual(got, guest.slice(0x10, 0x2010));
    assert.ok(client.dmaServed.reads >= 2, 'a 8 KiB read at 4 KiB max_data_xfer_size takes several messages');
    await server.dmaAccess.write(0x101000n, new Uint8Array(0x1800).fill(0x5a));
    assert.ok(guest.subarray(0x1000, 0x2800).every((b) => b === 0x5a));
    assert.equal(guest[0x2800], 0x00);
    assert.equal(server.dmaAccess.moved.direct, 0);
    client.close();
    server.close();
  });

  for (const sealed of [true, false]) {
    const how = sealed ? 'through its mapping of a sealed fd' : 'with pread/pwrite on an fd not sealed against shrinking';
    it(`copies ${how}, and refuses (no SIGBUS) once the client shrinks the file`, async () => {
      const { server, client } = await connected();
      const fd = memfdCreate('dma-guest-ram', 0x10000n, sealed ? { seals: Seal.SHRINK | Seal.SEAL } : {});
      const addr = mmapShared(fd, 0x10000n, 0n);
      const mine = new Uint8Array(viewOf(addr, 0x10000));
      mine.set([1, 2, 3, 4], 0x3000);
      await client.dmaMap({ address: 0x80000000n, size: 0x8000n, offset: 0x2000n, fd });
      assert.deepEqual([...(await server.dmaAccess.read(0x80001000n, 4))], [1, 2, 3, 4]);
      await server.dmaAccess.write(0x80000010n, Uint8Array.of(9, 8, 7));
      assert.deepEqual([...mine.subarray(0x2010, 0x2013)], [9, 8, 7]);
      assert.equal(client.dmaServed.reads + client.dmaServed.writes, 0);
      const moved = server.dmaAccess.moved;
      assert.deepEqual([moved.direct, moved.copied], sealed ? [7, 0] : [0, 7], 'the path follows the seal');
      if (!sealed) {
        // A client that shrinks the file under a mapping gets a refusal, not a server killed by SIGBUS.
        ftruncateSync(fd, 0x1000);
        await assert.rejects(server.dmaAccess.read(0x80001000n, 4), /shrank the file/);
      } else {
        assert.throws(() => ftruncateSync(fd, 0x1000), /EPERM/, 'the seal forbids shrinking');
      }
      client.close();
      await server.clientGone();
      munmap(addr, 0x10000n);
      close(fd);
      server.close();
    });
  }

  it('copies through a mapping it just used only while that mapping lasts and allows the access', async () => {
    const { server, client } = await connected();
    const fd = memfdCreate('dma-guest-ram-cached', 0x4000n, { seals: Seal.SHRINK | Seal.SEAL });
    const addr = mmapShared(fd, 0x4000n, 0n);
    const mine = new Uint8Array(viewOf(addr, 0x4000));
    mine.forEach((_, i) => (mine[i] = i & 0xff));
    // Two page maps, the second read-only: a transfer across both is copied piece by piece.
    await client.dmaMap({ address: 0x200000n, size: 0x1000n, offset: 0n, fd });
    await client.dmaMap({ address: 0x201000n, size: 0x1000n, offset: 0x1000n, flags: 1, fd });
    assert.deepEqual(await server.dmaAccess.read(0x200ff0n, 0x20), mine.slice(0xff0, 0x1010));
    await server.dmaAccess.write(0x200000n, Uint8Array.of(0xee));
    assert.equal(mine[0], 0xee);
    await assert.rejects(server.dmaAccess.write(0x201000n, Uint8Array.of(1)), (e: unknown) => e instanceof DmaFault && /does not allow writes/.test(e.message));
    assert.equal(mine[0x1000], 0x00, 'the refused write changed nothing');
    // Unmapped right after use: the next access faults instead of reaching the old mapping.
    await server.dmaAccess.read(0x200000n, 4);
    await client.dmaUnmap(0x200000n, 0x1000n);
    await assert.rejects(server.dmaAccess.read(0x200000n, 4), (e: unknown) => e instanceof DmaFault && /0x200000 is not DMA-mapped/.test(e.message));
    // Mapped again at another file offset: the copy follows the new mapping.
    await client.dmaMap({ address: 0x200000n, size: 0x1000n, offset: 0x2000n, fd });
    assert.deepEqual([...(await server.dmaAccess.read(0x200000n, 2))], [0x00, 0x01]);
    client.close();
    await server.clientGone();
    munmap(addr, 0x4000n);
    close(fd);
    server.close();
  });

  it('faults, naming the address, outside any mapping and for writes to a read-only mapping', async () => {
    const { server, client } = await connected();
    await client.dmaMap({ address: 0x1000n, size: 0x1000n, flags: 1, memory: new Uint8Array(0x1000) });
    await assert.rejects(server.dmaAccess.read(0x5000n, 4), (e: unknown) => e instanceof DmaFault && /0x5000 is not DMA-mapped/.test(e.message));
    await assert.rejects(server.dmaAccess.read(0x1ffen, 4), DmaFault);
    await assert.rejects(server.dmaAccess.write(0x1000n, Uint8Array.of(1)), /does not allow writes/);
    client.close();
    server.close();
  });
});

describe('migration over MIG_DATA_READ/WRITE', () => {
  it('moves edu-plus register state from one server to another', async () => {
    const a = await connected();
    const b = await connected();
    assert.equal(await a.client.migrationFlags(), MigrationFlags.STOP_COPY);
    await a.client.regionWrite(PciRegion.BAR0, 0x04n, le32(0x13572468));
    await a.client.regionWrite(PciRegion.BAR0, 0x08n, le32(5));
    assert.equal(await a.client.migrationState(), MigState.RUNNING);
    await a.client.setMigrationState(MigState.STOP_COPY);
    const chunks: Uint8Array[] = [];
    for (;;) {
      const c = await a.client.migDataRead(64);
      chunks.push(c);
      if (c.byteLength < 64) break;
    }
    await b.client.setMigrationState(MigState.RESUMING);
    for (const c of chunks) if (c.byteLength) await b.client.migDataWrite(c);
    await b.client.setMigrationState(MigState.RUNNING);
    const read = async (off: bigint) => Buffer.from(await b.client.regionRead(PciRegion.BAR0, off, 4)).readUInt32LE(0);
    assert.equal(await read(0x04n), ~0x13572468 >>> 0);
    assert.equal(await read(0x08n), 120);
    for (const s of [a, b]) {
      s.client.close();
      s.server.close();
    }
  });

  it('refuses unsupported states and bad data, and recovers from ERROR by reset', async () => {
    const { server, client } = await connected();
    const einval = (e: unknown) => e instanceof VfioUserError && e.errno === Errno.EINVAL;
    await assert.rejects(client.setMigrationState(MigState.PRE_COPY), einval);
    await assert.rejects(client.migDataRead(16), einval, 'MIG_DATA_READ outside STOP_COPY');
    await client.setMigrationState(MigState.RESUMING);
    await client.migDataWrite(Uint8Array.of(0xc1, 0xff, 0x00));
    await assert.rejects(client.setMigrationState(MigState.RUNNING), einval);
    assert.equal(await client.migrationState(), MigState.ERROR);
    await assert.rejects(client.setMigrationState(MigState.RUNNING), einval, 'ERROR needs a reset');
    await client.reset();
    assert.equal(await client.migrationState(), MigState.RUNNING);
    assert.equal(Buffer.from(await client.regionRead(PciRegion.BAR0, 0n, 4)).readUInt32LE(0), 0x010000ed);
    assert.equal((server.device as EduPlus).registers.liveness, 0);
    client.close();
    server.close();
  });
});
