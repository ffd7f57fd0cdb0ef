/** DEVICE_RESET: no payload in either direction; registers back to power-on values; fds refused. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Cmd, Errno, type Harness, body, expectErrno, expectFdsRefused, rd, startServer, u32le, withClient } from './harness.ts';

describe('DEVICE_RESET', () => {
  let h: Harness;
  before(() => {
    h = startServer();
  });
  after(() => h.close());

  it('resets the registers and replies without payload', async () => {
    await withClient(h, async (c) => {
      await expectErrno(c, Cmd.REGION_WRITE, body.regionAccess(4n, 0, 4, u32le(0x12345678)), 0);
      const b = await expectErrno(c, Cmd.DEVICE_RESET, Buffer.alloc(0), 0);
      assert.equal(b.byteLength, 0);
      assert.equal(rd.u32(await expectErrno(c, Cmd.REGION_READ, body.regionAccess(4n, 0, 4), 0), 16), 0, 'liveness back to its power-on 0');
    });
  });

  it('refuses a payload with EINVAL and does not reset', async () => {
    await withClient(h, async (c) => {
      await expectErrno(c, Cmd.REGION_WRITE, body.regionAccess(4n, 0, 4, u32le(0x12345678)), 0);
      for (const n of [1, 4, 16]) await expectErrno(c, Cmd.DEVICE_RESET, Buffer.alloc(n), Errno.EINVAL);
      assert.equal(rd.u32(await expectErrno(c, Cmd.REGION_READ, body.regionAccess(4n, 0, 4), 0), 16), 0xedcba987);
    });
  });

  it('refuses fds with EINVAL and closes them', async () => {
    await withClient(h, (c) => expectFdsRefused(c, Cmd.DEVICE_RESET, Buffer.alloc(0)));
  });
});
