/**
 * VERSION: the handshake, its JSON capabilities and their edge cases, the order rules (nothing
 * before VERSION, VERSION once), and fds where none belong.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  Cmd,
  Errno,
  type Harness,
  body,
  expectErrno,
  expectFdsRefused,
  rd,
  readId,
  send,
  startServer,
  withRawClient,
  EDU_ID,
} from './harness.ts';

const caps = (c: Record<string, unknown>) => JSON.stringify({ capabilities: c });

describe('VERSION', () => {
  let h: Harness;
  before(() => {
    h = startServer();
  });
  after(() => h.close());

  it('answers 0.0 with a NUL-terminated JSON object within the bounds QEMU accepts', async () => {
    await withRawClient(h, async (c) => {
      const r = await send(c, Cmd.VERSION, body.version(0, 0, caps({ max_msg_fds: 16, max_data_xfer_size: 1 << 20, pgsizes: 4096 })));
      assert.equal(r.errno, 0);
      assert.deepEqual([rd.u16(r.body, 0), rd.u16(r.body, 2)], [0, 0]);
      assert.equal(r.body[r.body.byteLength - 1], 0, 'JSON is NUL-terminated');
      assert.equal(r.body.indexOf(0, 4), r.body.byteLength - 1, 'exactly one NUL, at the end');
      const json = JSON.parse(Buffer.from(r.body.subarray(4, r.body.byteLength - 1)).toString('utf8')) as { capabilities: Record<string, number> };
      const c2 = json.capabilities;
      assert.ok(c2.max_msg_fds! >= 1 && c2.max_msg_fds! <= 16, `max_msg_fds ${c2.max_msg_fds}`);
      assert.ok(c2.max_data_xfer_size! <= 64 << 20, `max_data_xfer_size ${c2.max_data_xfer_size}`);
      assert.equal(c2.pgsizes! % 4096, 0);
      assert.ok(c2.max_dma_maps! <= 65535);
    });
  });

  it('accepts a VERSION without capabilities (spec defaults apply)', async () => {
    await withRawClient(h, async (c) => {
      await expectErrno(c, Cmd.VERSION, body.version(0, 0), 0);
      assert.equal(await readId(c), EDU_ID);
    });
  });

  it('accepts a higher minor and still answers 0.0', async () => {
    await withRawClient(h, async (c) => {
      const b = await expectErrno(c, Cmd.VERSION, body.version(0, 7, caps({})), 0);
      assert.deepEqual([rd.u16(b, 0), rd.u16(b, 2)], [0, 0]);
    });
  });

  it('accepts unknown keys, top-level and inside capabilities', async () => {
    await withRawClient(h, async (c) => {
      const json = JSON.stringify({ capabilities: { max_msg_fds: 8, future_thing: { a: [1, 2] }, twin: true }, vendor: 'x' });
      await expectErrno(c, Cmd.VERSION, body.version(0, 0, json), 0);
    });
  });

  it('accepts an empty JSON object and capabilities at their QEMU maxima', async () => {
    await withRawClient(h, async (c) => {
      await expectErrno(c, Cmd.VERSION, body.version(0, 0, '{}'), 0);
    });
    await withRawClient(h, async (c) => {
      const json = caps({
        migration: { pgsize: 4096, max_bitmap_size: 256 << 20 },
        max_msg_fds: 16,
        max_data_xfer_size: 64 << 20,
        pgsizes: 4096 | 65536,
        max_dma_maps: 65535,
        write_multiple: true,
      });
      await expectErrno(c, Cmd.VERSION, body.version(0, 0, json), 0);
    });
  });

  it('refuses a short payload with EINVAL', async () => {
    for (const payload of [Buffer.alloc(0), Buffer.alloc(2), Buffer.alloc(3)]) {
      await withRawClient(h, (c) => expectErrno(c, Cmd.VERSION, payload, Errno.EINVAL).then(() => {}));
    }
  });

  const badJson: [string, Buffer][] = [
    ['JSON without its NUL', body.version(0, 0, caps({}), false)],
    ['a NUL in the middle', Buffer.concat([body.version(0, 0, '{}'), Buffer.from('{}\0')])],
    ['text that is not JSON', body.version(0, 0, '{"capabilities":')],
    ['only a NUL', Buffer.concat([body.version(0, 0), Buffer.from([0])])],
    ['a JSON array', body.version(0, 0, '[{"capabilities":{}}]')],
    ['a JSON string', body.version(0, 0, '"capabilities"')],
    ['JSON null', body.version(0, 0, 'null')],
    ['a JSON number', body.version(0, 0, '42')],
    ['capabilities as an array', body.version(0, 0, '{"capabilities":[]}')],
    ['capabilities as a string', body.version(0, 0, '{"capabilities":"max_msg_fds"}')],
    ['capabilities null', body.version(0, 0, '{"capabilities":null}')],
    ['max_msg_fds "foo"', body.version(0, 0, caps({ max_msg_fds: 'foo' }))],
    ['max_msg_fds -1', body.version(0, 0, caps({ max_msg_fds: -1 }))],
    ['max_msg_fds 1.5', body.version(0, 0, caps({ max_msg_fds: 1.5 }))],
    ['max_msg_fds 2^53', body.version(0, 0, '{"capabilities":{"max_msg_fds":9007199254740992}}')],
    ['max_msg_fds 2^64', body.version(0, 0, '{"capabilities":{"max_msg_fds":18446744073709551616}}')],
    ['max_msg_fds 1e400', body.version(0, 0, '{"capabilities":{"max_msg_fds":1e400}}')],
    ['max_msg_fds true', body.version(0, 0, caps({ max_msg_fds: true }))],
    ['max_data_xfer_size "1M"', body.version(0, 0, caps({ max_data_xfer_size: '1M' }))],
    ['max_data_xfer_size -4096', body.version(0, 0, caps({ max_data_xfer_size: -4096 }))],
    ['pgsizes 4095', body.version(0, 0, caps({ pgsizes: 4095 }))],
    ['pgsizes "4096"', body.version(0, 0, caps({ pgsizes: '4096' }))],
    ['max_dma_maps -1', body.version(0, 0, caps({ max_dma_maps: -1 }))],
    ['write_multiple "yes"', body.version(0, 0, caps({ write_multiple: 'yes' }))],
    ['migration not an object', body.version(0, 0, caps({ migration: 4096 }))],
    ['migration.pgsize 4095', body.version(0, 0, caps({ migration: { pgsize: 4095 } }))],
    ['migration.pgsize "4096"', body.version(0, 0, caps({ migration: { pgsize: '4096' } }))],
    ['migration.max_bitmap_size -1', body.version(0, 0, caps({ migration: { max_bitmap_size: -1 } }))],
  ];
  for (const [what, payload] of badJson) {
    it(`refuses ${what} with EINVAL`, async () => {
      await withRawClient(h, (c) => expectErrno(c, Cmd.VERSION, payload, Errno.EINVAL).then(() => {}));
    });
  }

  it('refuses major 1 (ENOTSUP) and keeps the connection for a retry with 0.0', async () => {
    await withRawClient(h, async (c) => {
      await expectErrno(c, Cmd.VERSION, body.version(1, 0, caps({})), Errno.ENOTSUP);
      await expectErrno(c, Cmd.VERSION, body.version(0xffff, 0), Errno.ENOTSUP);
      await expectErrno(c, Cmd.DEVICE_GET_INFO, body.u32s(16, 0, 0, 0), Errno.EINVAL, undefined);
      await expectErrno(c, Cmd.VERSION, body.version(0, 0, caps({})), 0);
      assert.equal(await readId(c), EDU_ID);
    });
  });

  it('a refused VERSION does not negotiate: commands stay EINVAL until a good one', async () => {
    await withRawClient(h, async (c) => {
      await expectErrno(c, Cmd.VERSION, body.version(0, 0, caps({ max_msg_fds: 'foo' })), Errno.EINVAL);
      await expectErrno(c, Cmd.REGION_READ, body.regionAccess(0n, 0, 4), Errno.EINVAL);
      await expectErrno(c, Cmd.VERSION, body.version(0, 0, caps({})), 0);
      assert.equal(await readId(c), EDU_ID);
    });
  });

  it('refuses a second VERSION with EINVAL and keeps the first negotiation', async () => {
    await withRawClient(h, async (c) => {
      await expectErrno(c, Cmd.VERSION, body.version(0, 0, caps({})), 0);
      await expectErrno(c, Cmd.VERSION, body.version(0, 0, caps({})), Errno.EINVAL);
      assert.equal(await readId(c), EDU_ID);
    });
  });

  it('refuses every command before VERSION with EINVAL (unknown ones with ENOSYS)', async () => {
    await withRawClient(h, async (c) => {
      const known = [
        [Cmd.DMA_MAP, body.dmaMap({ address: 0x1000n, size: 0x1000n })],
        [Cmd.DMA_UNMAP, body.dmaUnmap({ address: 0x1000n, size: 0x1000n })],
        [Cmd.DEVICE_GET_INFO, body.u32s(16, 0, 0, 0)],
        [Cmd.DEVICE_GET_REGION_INFO, body.regionInfo(32, 0)],
        [Cmd.DEVICE_GET_REGION_IO_FDS, body.u32s(16, 0, 0, 0)],
        [Cmd.DEVICE_GET_IRQ_INFO, body.u32s(16, 0, 0, 0)],
        [Cmd.DEVICE_SET_IRQS, body.setIrqs({ flags: 0x21, index: 0, count: 0 })],
        [Cmd.REGION_READ, body.regionAccess(0n, 0, 4)],
        [Cmd.REGION_WRITE, body.regionAccess(4n, 0, 4, [1, 2, 3, 4])],
        [Cmd.DEVICE_RESET, Buffer.alloc(0)],
        [Cmd.REGION_WRITE_MULTI, Buffer.alloc(8)],
        [Cmd.DEVICE_FEATURE, body.feature(16, 1 | (1 << 16))],
        [Cmd.MIG_DATA_READ, body.migData(8 + 16, 16)],
        [Cmd.MIG_DATA_WRITE, body.migData(8, 0)],
      ] as const;
      for (const [cmd, payload] of known) await expectErrno(c, cmd, payload, Errno.EINVAL);
      for (const cmd of [0, 11, 12, 14, 19, 0xffff]) await expectErrno(c, cmd, Buffer.alloc(8), Errno.ENOSYS);
      await expectErrno(c, Cmd.VERSION, body.version(0, 0), 0);
    });
  });

  it('refuses fds attached to VERSION with EINVAL and closes them', async () => {
    await withRawClient(h, async (c) => {
      await expectFdsRefused(c, Cmd.VERSION, body.version(0, 0, caps({})));
      await expectErrno(c, Cmd.VERSION, body.version(0, 0, caps({})), 0);
    });
  });
});
