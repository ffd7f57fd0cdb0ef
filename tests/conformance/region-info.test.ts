/**
 * DEVICE_GET_REGION_INFO: payload and argsz checks, index range, a trapped region (BAR0), the
 * mmappable BAR1 (argsz too small → the needed argsz, no caps, no fd; enough → sparse-mmap cap
 * and exactly one fd), empty regions, fds refused.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { EduPlus } from '../../device/edu-plus.ts';
import { fstat, isOpenFd } from '../../protocol/native/libc.ts';
import { Cmd, Errno, type Harness, NO_REPLY, body, closeFds, expectErrno, expectFdsRefused, header, openFdCount, rd, send, startServer, withClient } from './harness.ts';

const READ = 1;
const WRITE = 2;
const MMAP = 4;
const CAPS = 8;
const MiB = 1n << 20n;

function parse(b: Uint8Array) {
  return { argsz: rd.u32(b, 0), flags: rd.u32(b, 4), index: rd.u32(b, 8), capOffset: rd.u32(b, 12), size: rd.u64(b, 16), offset: rd.u64(b, 24) };
}

describe('DEVICE_GET_REGION_INFO', () => {
  let h: Harness;
  before(() => {
    h = startServer();
  });
  after(() => h.close());

  it('describes BAR0 as a trapped 1 MiB read/write region, without fd', async () => {
    await withClient(h, async (c) => {
      const r = await send(c, Cmd.DEVICE_GET_REGION_INFO, body.regionInfo(32, 0));
      assert.equal(r.errno, 0);
      assert.equal(r.fds.length, 0);
      assert.equal(r.body.byteLength, 32);
      assert.deepEqual(parse(r.body), { argsz: 32, flags: READ | WRITE, index: 0, capOffset: 0, size: MiB, offset: 0n });
    });
  });

  it('describes config space (256 bytes) and the empty slots (2 is BAR1\'s upper half, ROM, VGA)', async () => {
    await withClient(h, async (c) => {
      const cfg = parse(await expectErrno(c, Cmd.DEVICE_GET_REGION_INFO, body.regionInfo(32, 7), 0));
      assert.equal(cfg.size, 256n);
      assert.equal(cfg.flags, READ | WRITE);
      for (const index of [2, 3, 4, 5, 6, 8]) {
        const info = parse(await expectErrno(c, Cmd.DEVICE_GET_REGION_INFO, body.regionInfo(32, index), 0));
        assert.deepEqual({ size: info.size, flags: info.flags, index: info.index }, { size: 0n, flags: 0, index });
      }
    });
  });

  it('answers BAR1 with argsz 32 by asking for more: needed argsz, MMAP, no caps, no fd', async () => {
    await withClient(h, async (c) => {
      const r = await send(c, Cmd.DEVICE_GET_REGION_INFO, body.regionInfo(32, 1));
      assert.equal(r.errno, 0);
      assert.equal(r.fds.length, 0, 'no fd until the client can take the caps');
      assert.equal(r.body.byteLength, 32);
      const info = parse(r.body);
      assert.ok(info.argsz > 32, `needed argsz ${info.argsz}`);
      assert.equal(info.flags & (READ | WRITE | MMAP), READ | WRITE | MMAP);
      assert.equal(info.size, 64n * MiB);
    });
  });

  it('gives BAR1 with enough argsz: a sparse-mmap cap over 64 MiB and exactly one fd of that size', async () => {
    await withClient(h, async (c) => {
      const needed = parse(await expectErrno(c, Cmd.DEVICE_GET_REGION_INFO, body.regionInfo(32, 1), 0)).argsz;
      for (const argsz of [needed, needed + 100]) {
        const fdsBefore = openFdCount();
        const r = await send(c, Cmd.DEVICE_GET_REGION_INFO, body.regionInfo(argsz, 1));
        try {
          assert.equal(r.errno, 0);
          assert.equal(r.fds.length, 1);
          assert.equal(openFdCount(), fdsBefore + 1, 'only the received fd is new');
          const info = parse(r.body);
          assert.equal(info.argsz, needed, 'argsz is the real size even when more was offered');
          assert.equal(r.body.byteLength, needed);
          assert.equal(info.flags, READ | WRITE | MMAP | CAPS);
          assert.equal(info.capOffset, 32);
          // Cap header: id 1 (SPARSE_MMAP), version 1, next 0; nr_areas 1; area {0, 64 MiB}.
          assert.deepEqual([rd.u16(r.body, 32), rd.u16(r.body, 34), rd.u32(r.body, 36), rd.u32(r.body, 40)], [1, 1, 0, 1]);
          assert.deepEqual([rd.u64(r.body, 48), rd.u64(r.body, 56)], [0n, 64n * MiB]);
          assert.ok(fstat(r.fds[0]!).size >= info.offset + info.size);
        } finally {
          closeFds(r.fds);
        }
      }
    });
  });

  it('keeps the region\'s fd open when BAR1 info is asked with NO_REPLY (the fd belongs to the device)', async () => {
    // A server of its own: if the fd is closed, this server cannot even shut down cleanly.
    const own = startServer();
    try {
      await withClient(own, async (c) => {
        const bar1 = (own.server.device as EduPlus).bar1 as unknown as { fd: number };
        c.sendRaw(Buffer.concat([header({ id: 77, command: Cmd.DEVICE_GET_REGION_INFO, size: 16 + 32, flags: NO_REPLY }), body.regionInfo(256, 1)]));
        const r = await send(c, Cmd.DEVICE_GET_REGION_INFO, body.regionInfo(256, 1));
        try {
          assert.ok(isOpenFd(bar1.fd), "the server's BAR1 memfd is still open");
          assert.equal(r.errno, 0);
          assert.equal(r.fds.length, 1);
          assert.equal(fstat(r.fds[0]!).size, 64n * MiB, 'the fd handed over is still the BAR1 memfd');
        } finally {
          closeFds(r.fds);
        }
      });
    } finally {
      own.close();
    }
  });

  it('refuses a short payload with EINVAL', async () => {
    await withClient(h, async (c) => {
      for (const n of [0, 12, 31]) await expectErrno(c, Cmd.DEVICE_GET_REGION_INFO, body.regionInfo(32, 0).subarray(0, n), Errno.EINVAL);
    });
  });

  it('refuses argsz below 32 with EINVAL', async () => {
    await withClient(h, async (c) => {
      for (const argsz of [0, 16, 31]) await expectErrno(c, Cmd.DEVICE_GET_REGION_INFO, body.regionInfo(argsz, 0), Errno.EINVAL);
    });
  });

  it('accepts a larger argsz for a region without caps and replies with the real size', async () => {
    await withClient(h, async (c) => {
      const b = await expectErrno(c, Cmd.DEVICE_GET_REGION_INFO, body.regionInfo(4096, 0), 0);
      assert.equal(b.byteLength, 32);
      assert.equal(parse(b).argsz, 32);
    });
  });

  it('refuses an index past the last region with EINVAL', async () => {
    await withClient(h, async (c) => {
      for (const index of [9, 10, 0x80000000, 0xffffffff]) await expectErrno(c, Cmd.DEVICE_GET_REGION_INFO, body.regionInfo(32, index), Errno.EINVAL);
    });
  });

  it('refuses fds with EINVAL and closes them', async () => {
    await withClient(h, (c) => expectFdsRefused(c, Cmd.DEVICE_GET_REGION_INFO, body.regionInfo(64, 1)));
  });
});
