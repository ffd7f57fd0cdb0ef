/**
 * DEVICE_GET_REGION_IO_FDS: no region of edu-plus has ioeventfd sub-regions, so a valid request
 * gets count 0 and no fds; flags and count must be 0; index range; argsz both ways.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Cmd, Errno, type Harness, body, expectErrno, expectFdsRefused, rd, send, startServer, withClient } from './harness.ts';

describe('DEVICE_GET_REGION_IO_FDS', () => {
  let h: Harness;
  before(() => {
    h = startServer();
  });
  after(() => h.close());

  it('answers count 0 and no fds for a valid region', async () => {
    await withClient(h, async (c) => {
      for (const index of [0, 1, 7]) {
        const r = await send(c, Cmd.DEVICE_GET_REGION_IO_FDS, body.u32s(16, 0, index, 0));
        assert.equal(r.errno, 0);
        assert.equal(r.fds.length, 0);
        assert.deepEqual([rd.u32(r.body, 0), rd.u32(r.body, 4), rd.u32(r.body, 8), rd.u32(r.body, 12)], [16, 0, index, 0]);
      }
    });
  });

  it('refuses a short payload and argsz below 16 with EINVAL', async () => {
    await withClient(h, async (c) => {
      for (const n of [0, 8, 15]) await expectErrno(c, Cmd.DEVICE_GET_REGION_IO_FDS, body.u32s(16, 0, 0, 0).subarray(0, n), Errno.EINVAL);
      for (const argsz of [0, 15]) await expectErrno(c, Cmd.DEVICE_GET_REGION_IO_FDS, body.u32s(argsz, 0, 0, 0), Errno.EINVAL);
    });
  });

  it('accepts a larger argsz and replies with the real size', async () => {
    await withClient(h, async (c) => {
      const b = await expectErrno(c, Cmd.DEVICE_GET_REGION_IO_FDS, body.u32s(256, 0, 0, 0), 0);
      assert.equal(rd.u32(b, 0), 16);
    });
  });

  it('refuses non-zero flags or count with EINVAL', async () => {
    await withClient(h, async (c) => {
      await expectErrno(c, Cmd.DEVICE_GET_REGION_IO_FDS, body.u32s(16, 1, 0, 0), Errno.EINVAL);
      await expectErrno(c, Cmd.DEVICE_GET_REGION_IO_FDS, body.u32s(16, 0x80000000, 0, 0), Errno.EINVAL);
      await expectErrno(c, Cmd.DEVICE_GET_REGION_IO_FDS, body.u32s(16, 0, 0, 1), Errno.EINVAL);
    });
  });

  it('refuses an index past the last region with EINVAL', async () => {
    await withClient(h, async (c) => {
      for (const index of [9, 0xffffffff]) await expectErrno(c, Cmd.DEVICE_GET_REGION_IO_FDS, body.u32s(16, 0, index, 0), Errno.EINVAL);
    });
  });

  it('refuses fds with EINVAL and closes them', async () => {
    await withClient(h, (c) => expectFdsRefused(c, Cmd.DEVICE_GET_REGION_IO_FDS, body.u32s(16, 0, 0, 0)));
  });
});
