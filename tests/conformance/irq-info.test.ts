/** DEVICE_GET_IRQ_INFO: payload, argsz, index range, the two wired indexes, fds refused. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Cmd, Errno, type Harness, body, expectErrno, expectFdsRefused, rd, startServer, withClient } from './harness.ts';

const EVENTFD = 1;
const MASKABLE = 2;
const AUTOMASKED = 4;
const NORESIZE = 8;

describe('DEVICE_GET_IRQ_INFO', () => {
  let h: Harness;
  before(() => {
    h = startServer();
  });
  after(() => h.close());

  it('describes INTx (maskable, automasked) and MSI (one vector each), and the empty indexes', async () => {
    await withClient(h, async (c) => {
      const info = async (index: number) => {
        const b = await expectErrno(c, Cmd.DEVICE_GET_IRQ_INFO, body.u32s(16, 0, index, 0), 0);
        assert.equal(b.byteLength, 16);
        return { argsz: rd.u32(b, 0), flags: rd.u32(b, 4), index: rd.u32(b, 8), count: rd.u32(b, 12) };
      };
      assert.deepEqual(await info(0), { argsz: 16, flags: EVENTFD | MASKABLE | AUTOMASKED, index: 0, count: 1 });
      assert.deepEqual(await info(1), { argsz: 16, flags: EVENTFD | NORESIZE, index: 1, count: 1 });
      for (const i of [2, 3, 4]) assert.equal((await info(i)).count, 0);
    });
  });

  it('refuses a short payload with EINVAL', async () => {
    await withClient(h, async (c) => {
      for (const n of [0, 8, 15]) await expectErrno(c, Cmd.DEVICE_GET_IRQ_INFO, body.u32s(16, 0, 0, 0).subarray(0, n), Errno.EINVAL);
    });
  });

  it('refuses argsz below 16 with EINVAL and answers a larger one with the real size', async () => {
    await withClient(h, async (c) => {
      for (const argsz of [0, 12, 15]) await expectErrno(c, Cmd.DEVICE_GET_IRQ_INFO, body.u32s(argsz, 0, 0, 0), Errno.EINVAL);
      const b = await expectErrno(c, Cmd.DEVICE_GET_IRQ_INFO, body.u32s(100, 0, 1, 0), 0);
      assert.equal(rd.u32(b, 0), 16);
      assert.equal(rd.u32(b, 12), 1);
    });
  });

  it('refuses an index past the last irq index with EINVAL', async () => {
    await withClient(h, async (c) => {
      for (const index of [5, 6, 0x7fffffff, 0xffffffff]) await expectErrno(c, Cmd.DEVICE_GET_IRQ_INFO, body.u32s(16, 0, index, 0), Errno.EINVAL);
    });
  });

  it('refuses fds with EINVAL and closes them', async () => {
    await withClient(h, (c) => expectFdsRefused(c, Cmd.DEVICE_GET_IRQ_INFO, body.u32s(16, 0, 0, 0)));
  });
});
