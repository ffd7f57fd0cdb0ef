/**
 * DMA_MAP: argsz and payload checks, flags, ranges (zero, u64 overflow, overlap → EEXIST),
 * fd-backed and message-backed mappings, fds closed on every path, max_dma_maps → ENOSPC,
 * and everything released on disconnect.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { GUEST_RAM_SEALS, close, memfdCreate } from '../../protocol/native/libc.ts';
import {
  Cmd,
  Errno,
  type Harness,
  U64_MAX,
  assertServerClosesFds,
  body,
  expectErrno,
  memfdMappingCount,
  openFdCount,
  startServer,
  turns,
  withClient,
} from './harness.ts';

const MiB = 1n << 20n;

describe('DMA_MAP', () => {
  let h: Harness;
  before(() => {
    h = startServer();
  });
  after(() => h.close());

  it('maps without an fd and replies with no payload', async () => {
    await withClient(h, async (c) => {
      const b = await expectErrno(c, Cmd.DMA_MAP, body.dmaMap({ address: 0x10000n, size: 0x1000n }), 0);
      assert.equal(b.byteLength, 0);
      assert.equal(h.server.dma.count, 1);
    });
  });

  it('refuses a short payload with EINVAL', async () => {
    await withClient(h, async (c) => {
      for (const n of [0, 4, 31]) {
        await expectErrno(c, Cmd.DMA_MAP, body.dmaMap({ address: 0x10000n, size: 0x1000n }).subarray(0, n), Errno.EINVAL);
      }
      assert.equal(h.server.dma.count, 0);
    });
  });

  it('refuses argsz below 32 with EINVAL and accepts a larger argsz', async () => {
    await withClient(h, async (c) => {
      for (const argsz of [0, 24, 31]) {
        await expectErrno(c, Cmd.DMA_MAP, body.dmaMap({ argsz, address: 0x10000n, size: 0x1000n }), Errno.EINVAL);
      }
      await expectErrno(c, Cmd.DMA_MAP, body.dmaMap({ argsz: 64, address: 0x10000n, size: 0x1000n }), 0);
      await expectErrno(c, Cmd.DMA_MAP, body.dmaMap({ argsz: 0xffffffff, address: 0x20000n, size: 0x1000n }), 0);
      assert.equal(h.server.dma.count, 2);
    });
  });

  it('refuses unknown flags with EINVAL', async () => {
    await withClient(h, async (c) => {
      for (const flags of [4, 3 | 8, 0x80000000]) {
        await expectErrno(c, Cmd.DMA_MAP, body.dmaMap({ flags, address: 0x10000n, size: 0x1000n }), Errno.EINVAL);
      }
      for (const flags of [0, 1, 2, 3]) {
        await expectErrno(c, Cmd.DMA_MAP, body.dmaMap({ flags, address: BigInt(flags + 1) << 20n, size: 0x1000n }), 0);
      }
    });
  });

  it('refuses an empty range and a range that wraps around 2^64 with EINVAL', async () => {
    await withClient(h, async (c) => {
      await expectErrno(c, Cmd.DMA_MAP, body.dmaMap({ address: 0x10000n, size: 0n }), Errno.EINVAL);
      await expectErrno(c, Cmd.DMA_MAP, body.dmaMap({ address: U64_MAX - 0xfffn, size: 0x2000n }), Errno.EINVAL);
      await expectErrno(c, Cmd.DMA_MAP, body.dmaMap({ address: U64_MAX, size: 2n }), Errno.EINVAL);
      await expectErrno(c, Cmd.DMA_MAP, body.dmaMap({ address: 2n, size: U64_MAX }), Errno.EINVAL);
      assert.equal(h.server.dma.count, 0);
      // The very last page ends exactly at 2^64: legal.
      await expectErrno(c, Cmd.DMA_MAP, body.dmaMap({ address: U64_MAX - 0xfffn, size: 0x1000n }), 0);
      await expectErrno(c, Cmd.DMA_UNMAP, body.dmaUnmap({ address: U64_MAX - 0xfffn, size: 0x1000n }), 0);
    });
  });

  it('refuses a mapping over an existing one with EEXIST (exact, inside, straddling)', async () => {
    await withClient(h, async (c) => {
      await expectErrno(c, Cmd.DMA_MAP, body.dmaMap({ address: 0x10000n, size: 0x2000n }), 0);
      for (const [address, size] of [
        [0x10000n, 0x2000n],
        [0x11000n, 0x1000n],
        [0xf000n, 0x2000n],
        [0x11fffn, 0x10n],
        [0x0n, 0x100000n],
      ] as const) {
        await expectErrno(c, Cmd.DMA_MAP, body.dmaMap({ address, size }), Errno.EEXIST);
      }
      // Adjacent on both sides is fine.
      await expectErrno(c, Cmd.DMA_MAP, body.dmaMap({ address: 0xf000n, size: 0x1000n }), 0);
      await expectErrno(c, Cmd.DMA_MAP, body.dmaMap({ address: 0x12000n, size: 0x1000n }), 0);
      assert.equal(h.server.dma.count, 3);
    });
  });

  it('maps an fd-backed range: one mmap and one kept fd per file, both released by the last unmap', async () => {
    await withClient(h, async (c) => {
      const mem = memfdCreate('conf-guest-ram', MiB, { seals: GUEST_RAM_SEALS });
      try {
        const fdsBefore = openFdCount();
        const mapsBefore = memfdMappingCount();
        await expectErrno(c, Cmd.DMA_MAP, body.dmaMap({ address: 0x80000000n, size: MiB / 2n, offset: MiB / 2n }), 0, { fds: [mem] });
        // The server keeps one fd per mapped file (to check its size before each DMA copy).
        assert.equal(openFdCount(), fdsBefore + 1, 'the server keeps exactly one fd of the memfd');
        assert.equal(memfdMappingCount(), mapsBefore + 1, 'the server mapped the file once');
        // A second mapping into the same file shares the first mmap, and its fd is closed.
        await expectErrno(c, Cmd.DMA_MAP, body.dmaMap({ address: 0x90000000n, size: 0x1000n }), 0, { fds: [mem] });
        assert.equal(memfdMappingCount(), mapsBefore + 1);
        assert.equal(openFdCount(), fdsBefore + 1);
        await expectErrno(c, Cmd.DMA_UNMAP, body.dmaUnmap({ address: 0x80000000n, size: MiB / 2n }), 0);
        assert.equal(memfdMappingCount(), mapsBefore + 1, 'still referenced by the second mapping');
        await expectErrno(c, Cmd.DMA_UNMAP, body.dmaUnmap({ address: 0x90000000n, size: 0x1000n }), 0);
        assert.equal(memfdMappingCount(), mapsBefore, 'unmapped before the reply');
        assert.equal(openFdCount(), fdsBefore);
      } finally {
        close(mem);
      }
    });
  });

  it('refuses a range beyond the end of the fd with EINVAL and closes the fd', async () => {
    await withClient(h, async (c) => {
      const mem = memfdCreate('conf-small', 0x4000n, { seals: GUEST_RAM_SEALS });
      try {
        const fdsBefore = openFdCount();
        const mapsBefore = memfdMappingCount();
        await expectErrno(c, Cmd.DMA_MAP, body.dmaMap({ address: 0x10000n, size: 0x5000n }), Errno.EINVAL, { fds: [mem] });
        await expectErrno(c, Cmd.DMA_MAP, body.dmaMap({ address: 0x10000n, size: 0x1000n, offset: 0x4000n }), Errno.EINVAL, { fds: [mem] });
        await expectErrno(c, Cmd.DMA_MAP, body.dmaMap({ address: 0x10000n, size: 0x1000n, offset: U64_MAX - 0x10n }), Errno.EINVAL, { fds: [mem] });
        assert.equal(openFdCount(), fdsBefore);
        assert.equal(memfdMappingCount(), mapsBefore);
        assert.equal(h.server.dma.count, 0);
      } finally {
        close(mem);
      }
    });
  });

  it('refuses two fds with EINVAL and closes both', async () => {
    await withClient(h, async (c) => {
      await assertServerClosesFds(2, async (fds) => {
        await expectErrno(c, Cmd.DMA_MAP, body.dmaMap({ address: 0x10000n, size: 0x1000n }), Errno.EINVAL, { fds });
      });
      assert.equal(h.server.dma.count, 0);
    });
  });

  it('refuses an fd that cannot be mapped (an eventfd) and closes it', async () => {
    await withClient(h, async (c) => {
      await assertServerClosesFds(1, async (fds) => {
        // fstat says 0 bytes, so the range is beyond the "file".
        await expectErrno(c, Cmd.DMA_MAP, body.dmaMap({ address: 0x10000n, size: 0x1000n }), Errno.EINVAL, { fds });
      });
    });
  });

  it('closes the fd of a refused mapping (EEXIST) too', async () => {
    await withClient(h, async (c) => {
      await expectErrno(c, Cmd.DMA_MAP, body.dmaMap({ address: 0x10000n, size: 0x1000n }), 0);
      const mem = memfdCreate('conf-eexist', 0x1000n, { seals: GUEST_RAM_SEALS });
      try {
        const fdsBefore = openFdCount();
        const mapsBefore = memfdMappingCount();
        await expectErrno(c, Cmd.DMA_MAP, body.dmaMap({ address: 0x10000n, size: 0x1000n }), Errno.EEXIST, { fds: [mem] });
        assert.equal(openFdCount(), fdsBefore);
        assert.equal(memfdMappingCount(), mapsBefore);
      } finally {
        close(mem);
      }
    });
  });

  it('releases every mapping and its mmap when the client disconnects', async () => {
    const mem = memfdCreate('conf-disconnect', MiB, { seals: GUEST_RAM_SEALS });
    const fdsBefore = openFdCount();
    const mapsBefore = memfdMappingCount();
    try {
      await withClient(h, async (c) => {
        await expectErrno(c, Cmd.DMA_MAP, body.dmaMap({ address: 0x100000n, size: MiB }), 0, { fds: [mem] });
        await expectErrno(c, Cmd.DMA_MAP, body.dmaMap({ address: 0x400000n, size: 0x1000n }), 0);
        assert.equal(memfdMappingCount(), mapsBefore + 1);
      });
      await turns();
      assert.equal(h.server.dma.count, 0);
      assert.equal(memfdMappingCount(), mapsBefore);
      assert.equal(openFdCount(), fdsBefore);
    } finally {
      close(mem);
    }
  });
});

describe('DMA_MAP with max_dma_maps 4', () => {
  let h: Harness;
  before(() => {
    h = startServer({ maxMsgFds: 16, maxDataXferSize: 1 << 20, maxDmaMaps: 4 });
  });
  after(() => h.close());

  it('advertises max_dma_maps 4 and refuses the 5th mapping with ENOSPC', async () => {
    await withClient(h, async (c) => {
      for (let i = 0n; i < 4n; i++) await expectErrno(c, Cmd.DMA_MAP, body.dmaMap({ address: (i + 1n) << 20n, size: 0x1000n }), 0);
      await expectErrno(c, Cmd.DMA_MAP, body.dmaMap({ address: 5n << 20n, size: 0x1000n }), Errno.ENOSPC);
      // Freeing one makes room again.
      await expectErrno(c, Cmd.DMA_UNMAP, body.dmaUnmap({ address: 1n << 20n, size: 0x1000n }), 0);
      await expectErrno(c, Cmd.DMA_MAP, body.dmaMap({ address: 5n << 20n, size: 0x1000n }), 0);
    });
  });

  it('closes the fd of a mapping refused with ENOSPC', async () => {
    await withClient(h, async (c) => {
      for (let i = 0n; i < 4n; i++) await expectErrno(c, Cmd.DMA_MAP, body.dmaMap({ address: (i + 1n) << 20n, size: 0x1000n }), 0);
      const mem = memfdCreate('conf-enospc', 0x1000n, { seals: GUEST_RAM_SEALS });
      try {
        const fdsBefore = openFdCount();
        const mapsBefore = memfdMappingCount();
        await expectErrno(c, Cmd.DMA_MAP, body.dmaMap({ address: 5n << 20n, size: 0x1000n }), Errno.ENOSPC, { fds: [mem] });
        assert.equal(openFdCount(), fdsBefore);
        assert.equal(memfdMappingCount(), mapsBefore);
      } finally {
        close(mem);
      }
    });
  });
});
