/**
 * MIG_DATA_READ / MIG_DATA_WRITE: state checks (STOP_COPY / RESUMING), argsz and size rules
 * (spec: a reply `size` below the requested size means "no more data", so a read whose argsz
 * cannot hold `size` bytes must be refused, as libvfio-user does, not silently shortened),
 * the client's max_data_xfer_size, a full round trip, fds refused.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { VfioUserClient } from '../../protocol/client.ts';
import { Cmd, Errno, type Harness, body, expectErrno, expectFdsRefused, le, rd, startServer, u32le, withFreshDevice } from './harness.ts';

const GET = 1 << 16;
const SET = 1 << 17;
const MIG_DEVICE_STATE = 2;
const STOP = 1;
const RUNNING = 2;
const STOP_COPY = 3;
const RESUMING = 4;
const ERROR = 0;

const setState = (c: VfioUserClient, s: number, errno = 0) =>
  expectErrno(c, Cmd.DEVICE_FEATURE, body.feature(16, MIG_DEVICE_STATE | SET, le().u32(s).u32(0xffffffff).build()), errno);
const getState = async (c: VfioUserClient) => rd.u32(await expectErrno(c, Cmd.DEVICE_FEATURE, body.feature(16, MIG_DEVICE_STATE | GET), 0), 8);
const migRead = (c: VfioUserClient, argsz: number, size: number, errno = 0) => expectErrno(c, Cmd.MIG_DATA_READ, body.migData(argsz, size), errno);
const migWrite = (c: VfioUserClient, argsz: number, size: number, data: Uint8Array | number[], errno = 0) =>
  expectErrno(c, Cmd.MIG_DATA_WRITE, body.migData(argsz, size, data), errno);

/** Reads the whole saved state in chunks of `chunk` bytes. */
async function readAll(c: VfioUserClient, chunk: number): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for (;;) {
    const b = await migRead(c, 8 + chunk, chunk);
    const size = rd.u32(b, 4);
    assert.equal(rd.u32(b, 0), 8 + size, 'reply argsz covers exactly the data returned');
    assert.equal(b.byteLength, 8 + size);
    out.push(b.slice(8));
    if (size < chunk) return out;
  }
}

describe('MIG_DATA_READ / MIG_DATA_WRITE', () => {
  let h: Harness;
  before(() => {
    h = startServer();
  });
  after(() => h.close());

  it('refuses MIG_DATA_READ outside STOP_COPY and MIG_DATA_WRITE outside RESUMING with EINVAL', async () => {
    await withFreshDevice(h, async (c) => {
      await migRead(c, 24, 16, Errno.EINVAL);
      await migWrite(c, 12, 4, [1, 2, 3, 4], Errno.EINVAL);
      await setState(c, STOP);
      await migRead(c, 24, 16, Errno.EINVAL);
      await setState(c, STOP_COPY);
      await migWrite(c, 12, 4, [1, 2, 3, 4], Errno.EINVAL);
      await setState(c, RUNNING);
    });
  });

  it('moves the device state out in chunks and back in, restoring the registers', async () => {
    await withFreshDevice(h, async (c) => {
      await expectErrno(c, Cmd.REGION_WRITE, body.regionAccess(4n, 0, 4, u32le(0x13572468)), 0);
      await setState(c, STOP_COPY);
      const chunks = await readAll(c, 32);
      assert.ok(chunks.reduce((n, b) => n + b.byteLength, 0) > 0);
      await setState(c, RUNNING);
      await expectErrno(c, Cmd.REGION_WRITE, body.regionAccess(4n, 0, 4, u32le(0)), 0);
      await setState(c, RESUMING);
      for (const b of chunks) if (b.byteLength) assert.equal((await migWrite(c, 8 + b.byteLength, b.byteLength, b)).byteLength, 0);
      await setState(c, RUNNING);
      assert.equal(rd.u32(await expectErrno(c, Cmd.REGION_READ, body.regionAccess(4n, 0, 4), 0), 16), ~0x13572468 >>> 0);
    });
  });

  it('accepts a MIG_DATA_READ argsz larger than needed and replies with the real size', async () => {
    await withFreshDevice(h, async (c) => {
      await setState(c, STOP_COPY);
      const b = await migRead(c, 4096, 4);
      assert.equal(rd.u32(b, 4), 4);
      assert.equal(rd.u32(b, 0), 12);
      await setState(c, RUNNING);
    });
  });

  it('refuses a MIG_DATA_READ whose argsz cannot hold `size` bytes with EINVAL', async () => {
    await withFreshDevice(h, async (c) => {
      await setState(c, STOP_COPY);
      await migRead(c, 8, 16, Errno.EINVAL);
      await migRead(c, 8 + 15, 16, Errno.EINVAL);
      await setState(c, RUNNING);
    });
  });

  it('refuses a short payload, argsz below 8 and a read carrying data with EINVAL', async () => {
    await withFreshDevice(h, async (c) => {
      await setState(c, STOP_COPY);
      for (const n of [0, 4, 7]) await expectErrno(c, Cmd.MIG_DATA_READ, body.migData(24, 16).subarray(0, n), Errno.EINVAL);
      await migRead(c, 4, 0, Errno.EINVAL);
      await expectErrno(c, Cmd.MIG_DATA_READ, body.migData(24, 16, [1, 2, 3, 4]), Errno.EINVAL);
      await setState(c, RUNNING);
    });
  });

  it("refuses a MIG_DATA_READ larger than the client's max_data_xfer_size with EINVAL", async () => {
    await withFreshDevice(
      h,
      async (c) => {
        await setState(c, STOP_COPY);
        await migRead(c, 8 + 4097, 4097, Errno.EINVAL);
        await migRead(c, 8 + 4096, 4096);
        await setState(c, RUNNING);
      },
      JSON.stringify({ capabilities: { max_data_xfer_size: 4096 } }),
    );
  });

  it('refuses a MIG_DATA_WRITE whose size is not the data length, short payloads and argsz below 8, with EINVAL', async () => {
    await withFreshDevice(h, async (c) => {
      await setState(c, RESUMING);
      await migWrite(c, 16, 8, [1, 2, 3, 4], Errno.EINVAL);
      await migWrite(c, 12, 2, [1, 2, 3, 4], Errno.EINVAL);
      for (const n of [0, 4, 7]) await expectErrno(c, Cmd.MIG_DATA_WRITE, body.migData(12, 4, [1, 2, 3, 4]).subarray(0, n), Errno.EINVAL);
      await migWrite(c, 4, 4, [1, 2, 3, 4], Errno.EINVAL);
      // Nothing was written: leaving RESUMING with no data cannot load a state.
      await setState(c, RUNNING, Errno.EINVAL);
      assert.equal(await getState(c), ERROR);
      await expectErrno(c, Cmd.DEVICE_RESET, Buffer.alloc(0), 0);
      assert.equal(await getState(c), RUNNING);
    });
  });

  it('refuses fds with EINVAL and closes them', async () => {
    await withFreshDevice(h, async (c) => {
      await setState(c, STOP_COPY);
      await expectFdsRefused(c, Cmd.MIG_DATA_READ, body.migData(24, 16));
      await setState(c, RESUMING);
      await expectFdsRefused(c, Cmd.MIG_DATA_WRITE, body.migData(12, 4, [1, 2, 3, 4]));
      await expectErrno(c, Cmd.DEVICE_RESET, Buffer.alloc(0), 0);
    });
  });
});
