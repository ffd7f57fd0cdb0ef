/**
 * REGION_WRITE_MULTI: wr_cnt against the entries, entry count ≤ 8, all-or-nothing validation,
 * the reply's wr_cnt, NO_REPLY (how QEMU sends it), fds refused.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { VfioUserClient } from '../../protocol/client.ts';
import { Cmd, Errno, type Harness, NO_REPLY, U64_MAX, body, expectErrno, expectFdsRefused, le, rd, startServer, u32le, withClient } from './harness.ts';

interface Entry {
  offset: bigint;
  region: number;
  count: number;
  data: number[];
}

function multi(entries: Entry[], wrCnt: bigint | number = entries.length): Buffer {
  const b = le().u64(wrCnt);
  for (const e of entries) {
    const field = [...e.data, 0, 0, 0, 0, 0, 0, 0, 0].slice(0, 8);
    b.u64(e.offset).u32(e.region).u32(e.count).raw(field);
  }
  return b.build();
}

const liveness = (v: number): Entry => ({ offset: 4n, region: 0, count: 4, data: [...u32le(v)] });
const readLiveness = async (c: VfioUserClient) => rd.u32(await expectErrno(c, Cmd.REGION_READ, body.regionAccess(4n, 0, 4), 0), 16);

describe('REGION_WRITE_MULTI', () => {
  let h: Harness;
  before(() => {
    h = startServer();
  });
  after(() => h.close());

  it('applies every write in order and replies with wr_cnt', async () => {
    await withClient(h, async (c) => {
      const b = await expectErrno(c, Cmd.REGION_WRITE_MULTI, multi([liveness(1), { offset: 8n, region: 0, count: 4, data: [...u32le(5)] }, liveness(0x0f0f0f0f)]), 0);
      assert.equal(b.byteLength, 8);
      assert.equal(rd.u64(b, 0), 3n);
      assert.equal(await readLiveness(c), 0xf0f0f0f0);
      assert.equal(rd.u32(await expectErrno(c, Cmd.REGION_READ, body.regionAccess(8n, 0, 4), 0), 16), 120);
    });
  });

  it('applies writes sent with NO_REPLY (as QEMU does) without replying', async () => {
    await withClient(h, async (c) => {
      const id = c.allocateId();
      c.sendRaw(Buffer.concat([le().u16(id).u16(Cmd.REGION_WRITE_MULTI).u32(16 + 32).u32(NO_REPLY).u32(0).build(), multi([liveness(0x11111111)])]));
      // Had the server replied, our client would have closed on an unexpected message.
      assert.equal(await readLiveness(c), 0xeeeeeeee);
      assert.equal(c.isClosed, false);
    });
  });

  it('refuses a short payload, wr_cnt 0 and wr_cnt that does not match the entries with EINVAL', async () => {
    await withClient(h, async (c) => {
      for (const n of [0, 4, 7]) await expectErrno(c, Cmd.REGION_WRITE_MULTI, multi([liveness(1)]).subarray(0, n), Errno.EINVAL);
      await expectErrno(c, Cmd.REGION_WRITE_MULTI, multi([]), Errno.EINVAL);
      await expectErrno(c, Cmd.REGION_WRITE_MULTI, multi([liveness(1)], 2), Errno.EINVAL);
      await expectErrno(c, Cmd.REGION_WRITE_MULTI, multi([liveness(1), liveness(2)], 1), Errno.EINVAL);
      await expectErrno(c, Cmd.REGION_WRITE_MULTI, multi([liveness(1)], U64_MAX), Errno.EINVAL);
      await expectErrno(c, Cmd.REGION_WRITE_MULTI, multi([liveness(1)]).subarray(0, 8 + 20), Errno.EINVAL);
    });
  });

  it('refuses an entry with count > 8 or 0, a bad region or range, applying none of the batch', async () => {
    await withClient(h, async (c) => {
      await expectErrno(c, Cmd.REGION_WRITE_MULTI, multi([liveness(0)]), 0);
      const bad: Entry[] = [
        { offset: 4n, region: 0, count: 9, data: [] },
        { offset: 4n, region: 0, count: 0, data: [] },
        { offset: 4n, region: 9, count: 4, data: [] },
        { offset: 4n, region: 2, count: 4, data: [] },
        { offset: (1n << 20n) - 2n, region: 0, count: 4, data: [] },
        { offset: U64_MAX - 1n, region: 0, count: 4, data: [] },
      ];
      for (const e of bad) await expectErrno(c, Cmd.REGION_WRITE_MULTI, multi([liveness(0x12345678), e]), Errno.EINVAL);
      assert.equal(await readLiveness(c), 0xffffffff, 'the valid first entry was not applied either');
    });
  });

  it('refuses fds with EINVAL and closes them', async () => {
    await withClient(h, (c) => expectFdsRefused(c, Cmd.REGION_WRITE_MULTI, multi([liveness(1)])));
  });
});
