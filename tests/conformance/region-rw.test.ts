/**
 * REGION_READ / REGION_WRITE: payload checks, count vs data, region index, offset+count range
 * without u64 overflow, max_data_xfer_size, trapped (BAR0, config) and shared-memory (BAR1)
 * regions, fds refused.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { VfioUserClient } from '../../protocol/client.ts';
import { Cmd, EDU_ID, Errno, type Harness, U64_MAX, body, expectErrno, expectFdsRefused, rd, startServer, u32le, withClient } from './harness.ts';

const MiB = 1 << 20;
const BAR1_SIZE = 64n << 20n;

const read = (c: VfioUserClient, region: number, offset: bigint, count: number, errno = 0) =>
  expectErrno(c, Cmd.REGION_READ, body.regionAccess(offset, region, count), errno);
const write = (c: VfioUserClient, region: number, offset: bigint, data: Uint8Array | number[], count = data.length, errno = 0) =>
  expectErrno(c, Cmd.REGION_WRITE, body.regionAccess(offset, region, count, data), errno);

describe('REGION_READ', () => {
  let h: Harness;
  before(() => {
    h = startServer();
  });
  after(() => h.close());

  it('reads the edu identification register, echoing offset, region and count', async () => {
    await withClient(h, async (c) => {
      const b = await read(c, 0, 0n, 4);
      assert.equal(b.byteLength, 20);
      assert.deepEqual([rd.u64(b, 0), rd.u32(b, 8), rd.u32(b, 12), rd.u32(b, 16)], [0n, 0, 4, EDU_ID]);
    });
  });

  it('reads config space (vendor 1234, device 11e8) and the last bytes of BAR0 and BAR1', async () => {
    await withClient(h, async (c) => {
      const cfg = await read(c, 7, 0n, 256);
      assert.deepEqual([rd.u16(cfg, 16), rd.u16(cfg, 18)], [0x1234, 0x11e8]);
      await read(c, 7, 252n, 4);
      await read(c, 0, BigInt(MiB - 4), 4);
      const tail = await read(c, 1, BAR1_SIZE - 4096n, 4096);
      assert.equal(tail.byteLength, 16 + 4096);
    });
  });

  it('refuses a read of more than max_data_xfer_size with EINVAL', async () => {
    await withClient(h, async (c) => {
      await read(c, 1, 0n, MiB + 1, Errno.EINVAL);
      await read(c, 1, 0n, 0xffffffff, Errno.EINVAL);
    });
  });

  it('reads 128 KiB in one reply', async () => {
    await withClient(h, async (c) => {
      const b = await read(c, 1, 0n, 128 << 10);
      assert.equal(b.byteLength, 16 + (128 << 10));
    });
  });

  // The reply (1 MiB + 32 bytes) is larger than the socket's send buffer: the server must wait
  // for room (the client here reads on the same event loop) instead of failing the send.
  it('reads exactly max_data_xfer_size (a reply larger than the socket buffer)', async () => {
    await withClient(h, async (c) => {
      const b = await read(c, 1, 0n, MiB);
      assert.equal(b.byteLength, 16 + MiB);
    });
  });

  it('refuses a short payload, a zero count and a request carrying data with EINVAL', async () => {
    await withClient(h, async (c) => {
      for (const n of [0, 8, 15]) await expectErrno(c, Cmd.REGION_READ, body.regionAccess(0n, 0, 4).subarray(0, n), Errno.EINVAL);
      await read(c, 0, 0n, 0, Errno.EINVAL);
      await expectErrno(c, Cmd.REGION_READ, body.regionAccess(0n, 0, 4, [0, 0, 0, 0]), Errno.EINVAL);
    });
  });

  it('refuses a region index out of range or without size with EINVAL', async () => {
    await withClient(h, async (c) => {
      for (const region of [2, 3, 4, 5, 6, 8, 9, 0xffffffff]) await read(c, region, 0n, 4, Errno.EINVAL);
    });
  });

  it('refuses offset+count beyond the region, including u64 overflow, with EINVAL', async () => {
    await withClient(h, async (c) => {
      for (const [region, offset, count] of [
        [0, BigInt(MiB), 1],
        [0, BigInt(MiB - 2), 4],
        [0, U64_MAX - 3n, 8],
        [0, U64_MAX, 1],
        [7, 256n, 1],
        [7, 255n, 2],
        [1, BAR1_SIZE - 1n, 2],
        [1, U64_MAX - 0xfffn, 0x2000],
      ] as const) {
        await read(c, region, offset, count, Errno.EINVAL);
      }
    });
  });

  it('refuses fds with EINVAL and closes them', async () => {
    await withClient(h, (c) => expectFdsRefused(c, Cmd.REGION_READ, body.regionAccess(0n, 0, 4)));
  });
});

describe('REGION_WRITE', () => {
  let h: Harness;
  before(() => {
    h = startServer();
  });
  after(() => h.close());

  it('writes edu liveness (read back inverted) and replies with offset, region, count and no data', async () => {
    await withClient(h, async (c) => {
      const b = await write(c, 0, 4n, u32le(0x12345678));
      assert.equal(b.byteLength, 16);
      assert.deepEqual([rd.u64(b, 0), rd.u32(b, 8), rd.u32(b, 12)], [4n, 0, 4]);
      assert.equal(rd.u32(await read(c, 0, 4n, 4), 16), 0xedcba987);
    });
  });

  it('writes shared memory (BAR1) at its very end and reads it back', async () => {
    await withClient(h, async (c) => {
      await write(c, 1, BAR1_SIZE - 4n, [1, 2, 3, 4]);
      assert.deepEqual([...(await read(c, 1, BAR1_SIZE - 4n, 4)).subarray(16)], [1, 2, 3, 4]);
    });
  });

  it('writes exactly max_data_xfer_size bytes', async () => {
    await withClient(h, async (c) => {
      const data = new Uint8Array(MiB).fill(0xa5);
      await expectErrno(c, Cmd.REGION_WRITE, body.regionAccess(0n, 1, MiB, data), 0, { pieceSize: 64 << 10 });
      assert.deepEqual([...(await read(c, 1, BigInt(MiB - 2), 2)).subarray(16)], [0xa5, 0xa5]);
    });
  });

  it('answers any BAR0 write promptly, even a factorial of 0xffffffff (QEMU gives up after 5 s)', async () => {
    await withClient(h, async (c) => {
      const t0 = performance.now();
      await write(c, 0, 8n, u32le(0xffffffff));
      const ms = performance.now() - t0;
      assert.ok(ms < 250, `REGION_WRITE of the factorial register took ${ms.toFixed(0)} ms`);
      // 34! and above are 0 modulo 2^32.
      assert.equal(rd.u32(await read(c, 0, 8n, 4), 16), 0);
    });
  });

  it('refuses count different from the data length (both ways) and a zero count with EINVAL', async () => {
    await withClient(h, async (c) => {
      await write(c, 0, 4n, [1, 2, 3, 4], 8, Errno.EINVAL);
      await write(c, 0, 4n, [1, 2, 3, 4, 5, 6, 7, 8], 4, Errno.EINVAL);
      await write(c, 0, 4n, [], 4, Errno.EINVAL);
      await write(c, 0, 4n, [], 0, Errno.EINVAL);
      await write(c, 0, 4n, [1, 2, 3, 4], 0, Errno.EINVAL);
    });
  });

  it('refuses a short payload with EINVAL', async () => {
    await withClient(h, async (c) => {
      for (const n of [0, 12, 15]) await expectErrno(c, Cmd.REGION_WRITE, body.regionAccess(4n, 0, 4, u32le(1)).subarray(0, n), Errno.EINVAL);
    });
  });

  it('refuses bad regions and out-of-range writes (u64 overflow included) with EINVAL, changing nothing', async () => {
    await withClient(h, async (c) => {
      await write(c, 0, 4n, u32le(0));
      for (const region of [2, 6, 8, 9, 0xffffffff]) await write(c, region, 4n, u32le(1), 4, Errno.EINVAL);
      await write(c, 0, BigInt(MiB - 2), u32le(1), 4, Errno.EINVAL);
      await write(c, 0, U64_MAX - 3n, new Uint8Array(8), 8, Errno.EINVAL);
      await write(c, 7, 254n, u32le(1), 4, Errno.EINVAL);
      await write(c, 1, BAR1_SIZE, [1], 1, Errno.EINVAL);
      assert.equal(rd.u32(await read(c, 0, 4n, 4), 16), 0xffffffff, 'liveness untouched');
    });
  });

  it('refuses fds with EINVAL and closes them', async () => {
    await withClient(h, (c) => expectFdsRefused(c, Cmd.REGION_WRITE, body.regionAccess(4n, 0, 4, u32le(1))));
  });
});
