/**
 * DEVICE_GET_INFO: payload and argsz checks; the reply's argsz is the real size (16) whatever
 * the client offered; fds where none belong.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Cmd, Errno, type Harness, body, expectErrno, expectFdsRefused, rd, startServer, withClient } from './harness.ts';

describe('DEVICE_GET_INFO', () => {
  let h: Harness;
  before(() => {
    h = startServer();
  });
  after(() => h.close());

  it('reports a resettable PCI device with 9 regions and 5 irq indexes', async () => {
    await withClient(h, async (c) => {
      const b = await expectErrno(c, Cmd.DEVICE_GET_INFO, body.u32s(16, 0, 0, 0), 0);
      assert.equal(b.byteLength, 16);
      assert.deepEqual([rd.u32(b, 0), rd.u32(b, 4), rd.u32(b, 8), rd.u32(b, 12)], [16, 0x3, 9, 5]);
    });
  });

  it('refuses a short payload with EINVAL', async () => {
    await withClient(h, async (c) => {
      for (const n of [0, 4, 15]) await expectErrno(c, Cmd.DEVICE_GET_INFO, body.u32s(16, 0, 0, 0).subarray(0, n), Errno.EINVAL);
    });
  });

  it('refuses argsz below 16 with EINVAL', async () => {
    await withClient(h, async (c) => {
      for (const argsz of [0, 8, 15]) await expectErrno(c, Cmd.DEVICE_GET_INFO, body.u32s(argsz, 0, 0, 0), Errno.EINVAL);
    });
  });

  it('accepts a larger argsz and replies with the real size', async () => {
    await withClient(h, async (c) => {
      for (const argsz of [17, 64, 0xffffffff]) {
        const b = await expectErrno(c, Cmd.DEVICE_GET_INFO, body.u32s(argsz, 0, 0, 0), 0);
        assert.equal(b.byteLength, 16);
        assert.equal(rd.u32(b, 0), 16);
      }
      // A payload longer than the struct is accepted too.
      await expectErrno(c, Cmd.DEVICE_GET_INFO, body.u32s(32, 0, 0, 0, 0, 0, 0, 0), 0);
    });
  });

  it('refuses fds with EINVAL and closes them', async () => {
    await withClient(h, (c) => expectFdsRefused(c, Cmd.DEVICE_GET_INFO, body.u32s(16, 0, 0, 0)));
  });
});
