/**
 * The message layer: header sizes below 16 and above the limit (error reply with the request's
 * id, then the connection is closed and the next client is served), unsolicited replies,
 * unknown commands, NO_REPLY, unknown header flags, pipelining, messages split across writes,
 * disconnects in the middle of a message, too many fds, and a second concurrent client.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { VfioUserClient } from '../../protocol/client.ts';
import { close, eventfdCreate, memfdCreate } from '../../protocol/native/libc.ts';
import { FdSender } from '../../protocol/native/fd-messages.ts';
import {
  Cmd,
  EDU_ID,
  ERROR,
  Errno,
  type Harness,
  NO_REPLY,
  REPLY,
  assertServerClosesFds,
  body,
  closeFds,
  expectClosed,
  expectErrno,
  header,
  openFdCount,
  rd,
  readId,
  send,
  startServer,
  turns,
  u32le,
  withClient,
  withRawClient,
  withTimeout,
} from './harness.ts';

/** The server's limit: a whole REGION_WRITE of max_data_xfer_size (1 MiB) plus headers. */
const MAX_MESSAGE = 16 + 16 + (1 << 20);

/** Sends a bare header and returns the error reply's errno; the id must be echoed. */
async function badHeader(c: VfioUserClient, size: number, id = 0xbeef, command: number = Cmd.DEVICE_GET_INFO): Promise<number> {
  const reply = c.waitReply(id, command);
  c.sendRaw(header({ id, command, size }));
  const r = await withTimeout(reply, 'error reply to a bad header');
  assert.equal(r.header.id, id);
  assert.equal(r.header.flags & (0xf | ERROR), REPLY | ERROR);
  return r.header.error;
}

const liveness = async (c: VfioUserClient) => rd.u32(await expectErrno(c, Cmd.REGION_READ, body.regionAccess(4n, 0, 4), 0), 16);

describe('framing and connection handling', () => {
  let h: Harness;
  before(() => {
    h = startServer();
  });
  after(() => h.close());

  for (const size of [0, 4, 15]) {
    it(`answers header size ${size} with EINVAL carrying the id, closes, and serves the next client`, async () => {
      await withClient(h, async (c) => {
        assert.equal(await badHeader(c, size), Errno.EINVAL);
        await expectClosed(c);
      });
      await withClient(h, async (c) => assert.equal(await readId(c), EDU_ID));
    });
  }

  for (const size of [MAX_MESSAGE + 1, 64 << 20, 0xffffffff]) {
    it(`answers header size ${size} (over the limit) with E2BIG carrying the id, closes, and serves the next client`, async () => {
      await withClient(h, async (c) => {
        assert.equal(await badHeader(c, size), Errno.E2BIG);
        await expectClosed(c);
      });
      await withClient(h, async (c) => assert.equal(await readId(c), EDU_ID));
    });
  }

  it('treats a bad header before VERSION the same way', async () => {
    await withRawClient(h, async (c) => {
      assert.equal(await badHeader(c, 8, 7, Cmd.VERSION), Errno.EINVAL);
      await expectClosed(c);
    });
    await withClient(h, async (c) => assert.equal(await readId(c), EDU_ID));
  });

  it('still answers (and applies) the requests that precede a bad header in the same write', async () => {
    await withClient(h, async (c) => {
      const write = body.regionAccess(4n, 0, 4, u32le(0x0f0f0f0f));
      const writeReply = c.waitReply(21, Cmd.REGION_WRITE);
      const badReply = c.waitReply(22, Cmd.DEVICE_GET_INFO);
      c.sendRaw(Buffer.concat([header({ id: 21, command: Cmd.REGION_WRITE, size: 16 + write.length }), write, header({ id: 22, command: Cmd.DEVICE_GET_INFO, size: 4 })]));
      const w = await withTimeout(writeReply, 'the reply to the request before the bad header');
      assert.equal(w.header.flags & ERROR, 0);
      assert.equal((await withTimeout(badReply, 'the error reply to the bad header')).header.error, Errno.EINVAL);
      await expectClosed(c);
    });
    await withClient(h, async (c) => assert.equal(await liveness(c), 0xf0f0f0f0));
  });

  it('closes without a reply on a bad header sent with NO_REPLY, and closes fds that came with it', async () => {
    await assertServerClosesFds(2, async (fds) => {
      await withClient(h, async (c) => {
        c.sendRaw(header({ id: 3, command: Cmd.DEVICE_GET_INFO, size: 2, flags: NO_REPLY }), fds);
        await expectClosed(c);
      });
    });
    await withClient(h, async (c) => assert.equal(await readId(c), EDU_ID));
  });

  it('accepts a message of exactly the size limit', async () => {
    await withClient(h, async (c) => {
      const data = new Uint8Array(1 << 20);
      await expectErrno(c, Cmd.REGION_WRITE, body.regionAccess(0n, 1, 1 << 20, data), 0, { pieceSize: 64 << 10 });
    });
  });

  it('drops an unsolicited reply (closing its fds) and keeps serving', async () => {
    await withClient(h, async (c) => {
      await assertServerClosesFds(1, async (fds) => {
        c.sendRaw(Buffer.concat([header({ id: 0x1234, command: Cmd.DMA_READ, size: 16 + 8, flags: REPLY }), Buffer.alloc(8)]), fds);
        c.sendRaw(header({ id: 0x4321, command: Cmd.REGION_READ, size: 16, flags: REPLY | ERROR, error: 5 }));
        assert.equal(await readId(c), EDU_ID);
      });
      assert.equal(c.isClosed, false);
    });
  });

  it('answers unknown and server-to-client commands with ENOSYS and keeps serving', async () => {
    await withClient(h, async (c) => {
      for (const cmd of [0, 14, 19, 20, 99, 0xffff, Cmd.DMA_READ, Cmd.DMA_WRITE]) await expectErrno(c, cmd, Buffer.alloc(16), Errno.ENOSYS);
      await expectErrno(c, 0x7777, Buffer.alloc(0), Errno.ENOSYS);
      assert.equal(await readId(c), EDU_ID);
    });
  });

  it('applies a NO_REPLY request without replying, and stays silent about a failing one', async () => {
    await withClient(h, async (c) => {
      c.sendRaw(Buffer.concat([header({ id: 1, command: Cmd.REGION_WRITE, size: 36, flags: NO_REPLY }), body.regionAccess(4n, 0, 4, u32le(0x0000ffff))]));
      c.sendRaw(Buffer.concat([header({ id: 2, command: Cmd.REGION_WRITE, size: 36, flags: NO_REPLY }), body.regionAccess(4n, 9, 4, u32le(1))]));
      c.sendRaw(Buffer.concat([header({ id: 3, command: 99, size: 16, flags: NO_REPLY })]));
      // A reply to any of them would make our client close on an unexpected message.
      assert.equal(await liveness(c), 0xffff0000);
      assert.equal(c.isClosed, false);
    });
  });

  it('refuses unknown header flag bits and message types other than command/reply with EINVAL', async () => {
    await withClient(h, async (c) => {
      for (const flags of [0x40, 0x80, 0x100, 0x80000000, 2, 15]) {
        await expectErrno(c, Cmd.REGION_READ, body.regionAccess(0n, 0, 4), Errno.EINVAL, { flags });
      }
      assert.equal(await readId(c), EDU_ID);
    });
  });

  it('handles pipelined requests in order (several in one write)', async () => {
    await withClient(h, async (c) => {
      const ids = [c.allocateId(), c.allocateId(), c.allocateId()];
      const replies = [c.waitReply(ids[0]!, Cmd.REGION_WRITE), c.waitReply(ids[1]!, Cmd.REGION_READ), c.waitReply(ids[2]!, Cmd.DEVICE_GET_INFO)];
      const write = body.regionAccess(4n, 0, 4, u32le(0x11223344));
      const read = body.regionAccess(4n, 0, 4);
      const info = body.u32s(16, 0, 0, 0);
      c.sendRaw(
        Buffer.concat([
          header({ id: ids[0]!, command: Cmd.REGION_WRITE, size: 16 + write.length }),
          write,
          header({ id: ids[1]!, command: Cmd.REGION_READ, size: 16 + read.length }),
          read,
          header({ id: ids[2]!, command: Cmd.DEVICE_GET_INFO, size: 16 + info.length }),
          info,
        ]),
      );
      const [w, r, i] = await withTimeout(Promise.all(replies), 'pipelined replies');
      assert.equal(w.header.error, 0);
      assert.equal(rd.u32(r.body, 16), ~0x11223344 >>> 0, 'the read saw the write before it');
      assert.equal(rd.u32(i.body, 8), 9);
    });
  });

  it('reassembles a message sent one byte per write, fds with the first byte', async () => {
    await withClient(h, async (c) => {
      const mem = memfdCreate('conf-split', 0x1000n);
      try {
        const fdsBefore = openFdCount();
        await expectErrno(c, Cmd.DMA_MAP, body.dmaMap({ address: 0x10000n, size: 0x1000n }), 0, { fds: [mem], pieceSize: 1 });
        // The fd arrived with the first byte and was paired with this message: the server mapped
        // it and keeps that one fd for the mapping's life.
        assert.equal(openFdCount(), fdsBefore + 1);
        assert.equal(h.server.dma.count, 1);
        await expectErrno(c, Cmd.REGION_READ, body.regionAccess(0n, 0, 4), 0, { pieceSize: 7 });
      } finally {
        close(mem);
      }
    });
  });

  it('survives a client that disconnects in the middle of a message, closing that message\'s fds', async () => {
    for (const cut of [8, 16 + 10]) {
      await assertServerClosesFds(2, async (fds) => {
        await withClient(h, async (c) => {
          const whole = Buffer.concat([header({ id: 9, command: Cmd.DMA_MAP, size: 48 }), body.dmaMap({ address: 0x10000n, size: 0x1000n })]);
          c.sendRaw(whole.subarray(0, cut), fds);
          await turns();
        });
      });
      assert.equal(h.server.dma.count, 0);
      await withClient(h, async (c) => assert.equal(await readId(c), EDU_ID));
    }
  });

  it('closes a connection that sends more fds than max_msg_fds in one message, releasing them all', async () => {
    const fds = Array.from({ length: 17 }, () => eventfdCreate());
    try {
      const before = openFdCount();
      await withClient(h, async (c) => {
        const msg = Buffer.concat([header({ id: 5, command: Cmd.DEVICE_SET_IRQS, size: 36 }), body.setIrqs({ flags: 4 | 32, index: 0, count: 1 })]);
        new FdSender(32).sendAll(c.fd, [msg], fds);
        await expectClosed(c);
      });
      await turns();
      assert.equal(openFdCount(), before);
      assert.equal(h.server.irqs.heldFds, 0);
    } finally {
      closeFds(fds);
    }
    await withClient(h, async (c) => assert.equal(await readId(c), EDU_ID));
  });

  it('refuses a second concurrent client with EBUSY (closing its fds) while the first keeps working', async () => {
    await withClient(h, async (first) => {
      await expectErrno(first, Cmd.REGION_WRITE, body.regionAccess(4n, 0, 4, u32le(0)), 0);
      await assertServerClosesFds(1, async (fds) => {
        const second = h.intruder();
        try {
          const r = await send(second, Cmd.VERSION, body.version(0, 0, '{}'), { fds });
          assert.equal(r.errno, Errno.EBUSY);
          await expectClosed(second);
        } finally {
          second.close();
        }
      });
      assert.equal(await liveness(first), 0xffffffff);
      assert.equal(await readId(first), EDU_ID);
    });
    await withClient(h, async (c) => assert.equal(await readId(c), EDU_ID));
  });
});
