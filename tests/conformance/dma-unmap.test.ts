/**
 * DMA_UNMAP: argsz and payload checks, exact ranges, empty ranges (success, like type1),
 * straddling (EINVAL), UNMAP_ALL, the dirty-bitmap flag (ENOTSUP) and unknown flags.
 * Spec: "The server responds with the original DMA entry in the request."
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { VfioUserClient } from '../../protocol/client.ts';
import { GUEST_RAM_SEALS, close, memfdCreate } from '../../protocol/native/libc.ts';
import { Cmd, Errno, type Harness, U64_MAX, body, expectErrno, expectFdsRefused, memfdMappingCount, rd, startServer, withClient } from './harness.ts';

const ALL = 2;
const DIRTY_BITMAP = 1;

async function map(c: VfioUserClient, address: bigint, size: bigint, fds: number[] = []): Promise<void> {
  await expectErrno(c, Cmd.DMA_MAP, body.dmaMap({ address, size }), 0, { fds });
}

describe('DMA_UNMAP', () => {
  let h: Harness;
  before(() => {
    h = startServer();
  });
  after(() => h.close());

  it('unmaps an exact range and replies with the original entry', async () => {
    await withClient(h, async (c) => {
      await map(c, 0x10000n, 0x2000n);
      const req = body.dmaUnmap({ address: 0x10000n, size: 0x2000n });
      const b = await expectErrno(c, Cmd.DMA_UNMAP, req, 0);
      assert.deepEqual([...b], [...req]);
      assert.equal(h.server.dma.count, 0);
      // The range is free again.
      await map(c, 0x10000n, 0x2000n);
    });
  });

  it('refuses a short payload with EINVAL', async () => {
    await withClient(h, async (c) => {
      await map(c, 0x10000n, 0x1000n);
      for (const n of [0, 8, 23]) {
        await expectErrno(c, Cmd.DMA_UNMAP, body.dmaUnmap({ address: 0x10000n, size: 0x1000n }).subarray(0, n), Errno.EINVAL);
      }
      assert.equal(h.server.dma.count, 1);
    });
  });

  it('refuses argsz below 24 with EINVAL', async () => {
    await withClient(h, async (c) => {
      await map(c, 0x10000n, 0x1000n);
      for (const argsz of [0, 16, 23]) {
        await expectErrno(c, Cmd.DMA_UNMAP, body.dmaUnmap({ argsz, address: 0x10000n, size: 0x1000n }), Errno.EINVAL);
      }
      assert.equal(h.server.dma.count, 1);
    });
  });

  it('accepts a larger argsz and echoes the original entry', async () => {
    await withClient(h, async (c) => {
      await map(c, 0x10000n, 0x1000n);
      const req = body.dmaUnmap({ argsz: 64, address: 0x10000n, size: 0x1000n });
      const b = await expectErrno(c, Cmd.DMA_UNMAP, req, 0);
      assert.equal(h.server.dma.count, 0);
      assert.equal(b.byteLength, 24);
      assert.equal(rd.u64(b, 8), 0x10000n);
      assert.equal(rd.u64(b, 16), 0x1000n);
      assert.equal(rd.u32(b, 0), 64, 'spec: "the server responds with the original DMA entry in the request" (argsz included)');
    });
  });

  it('succeeds on a range that holds no mapping and removes nothing', async () => {
    await withClient(h, async (c) => {
      await map(c, 0x10000n, 0x1000n);
      await expectErrno(c, Cmd.DMA_UNMAP, body.dmaUnmap({ address: 0x100000n, size: 0x1000n }), 0);
      await expectErrno(c, Cmd.DMA_UNMAP, body.dmaUnmap({ address: 0x11000n, size: 0x1000n }), 0);
      assert.equal(h.server.dma.count, 1);
    });
  });

  it('refuses a range that would split a mapping with EINVAL and keeps the mapping', async () => {
    await withClient(h, async (c) => {
      await map(c, 0x10000n, 0x4000n);
      for (const [address, size] of [
        [0x10000n, 0x1000n],
        [0x11000n, 0x1000n],
        [0xf000n, 0x2000n],
        [0x13000n, 0x2000n],
      ] as const) {
        await expectErrno(c, Cmd.DMA_UNMAP, body.dmaUnmap({ address, size }), Errno.EINVAL);
      }
      assert.equal(h.server.dma.count, 1);
      await expectErrno(c, Cmd.DMA_MAP, body.dmaMap({ address: 0x10000n, size: 0x1000n }), Errno.EEXIST);
    });
  });

  it('removes every mapping wholly inside a larger range', async () => {
    await withClient(h, async (c) => {
      await map(c, 0x10000n, 0x1000n);
      await map(c, 0x11000n, 0x1000n);
      await map(c, 0x20000n, 0x1000n);
      await expectErrno(c, Cmd.DMA_UNMAP, body.dmaUnmap({ address: 0x0n, size: 0x18000n }), 0);
      assert.equal(h.server.dma.count, 1);
    });
  });

  it('refuses an empty or wrapping range with EINVAL', async () => {
    await withClient(h, async (c) => {
      await map(c, 0x10000n, 0x1000n);
      await expectErrno(c, Cmd.DMA_UNMAP, body.dmaUnmap({ address: 0x10000n, size: 0n }), Errno.EINVAL);
      await expectErrno(c, Cmd.DMA_UNMAP, body.dmaUnmap({ address: U64_MAX - 0xfffn, size: 0x2000n }), Errno.EINVAL);
      await expectErrno(c, Cmd.DMA_UNMAP, body.dmaUnmap({ address: 0x10000n, size: U64_MAX }), Errno.EINVAL);
      assert.equal(h.server.dma.count, 1);
    });
  });

  it('UNMAP_ALL with address and size 0 removes everything, fd-backed mappings included', async () => {
    await withClient(h, async (c) => {
      const mem = memfdCreate('conf-unmap-all', 0x10000n, { seals: GUEST_RAM_SEALS });
      try {
        const mapsBefore = memfdMappingCount();
        await map(c, 0x10000n, 0x1000n, [mem]);
        await map(c, 0x20000n, 0x1000n);
        await map(c, 0x30000n, 0x8000n, [mem]);
        assert.equal(memfdMappingCount(), mapsBefore + 1);
        await expectErrno(c, Cmd.DMA_UNMAP, body.dmaUnmap({ flags: ALL, address: 0n, size: 0n }), 0);
        assert.equal(h.server.dma.count, 0);
        assert.equal(memfdMappingCount(), mapsBefore);
        // Nothing left: another ALL is still fine.
        await expectErrno(c, Cmd.DMA_UNMAP, body.dmaUnmap({ flags: ALL, address: 0n, size: 0n }), 0);
      } finally {
        close(mem);
      }
    });
  });

  it('refuses UNMAP_ALL with a non-zero address or size with EINVAL', async () => {
    await withClient(h, async (c) => {
      await map(c, 0x10000n, 0x1000n);
      await expectErrno(c, Cmd.DMA_UNMAP, body.dmaUnmap({ flags: ALL, address: 0x10000n, size: 0n }), Errno.EINVAL);
      await expectErrno(c, Cmd.DMA_UNMAP, body.dmaUnmap({ flags: ALL, address: 0n, size: 0x1000n }), Errno.EINVAL);
      await expectErrno(c, Cmd.DMA_UNMAP, body.dmaUnmap({ flags: ALL, address: 0x10000n, size: 0x1000n }), Errno.EINVAL);
      assert.equal(h.server.dma.count, 1);
    });
  });

  it('refuses the dirty-bitmap flag with ENOTSUP (no dirty logging) and unknown flags with EINVAL', async () => {
    await withClient(h, async (c) => {
      await map(c, 0x10000n, 0x1000n);
      await expectErrno(c, Cmd.DMA_UNMAP, body.dmaUnmap({ flags: DIRTY_BITMAP, address: 0x10000n, size: 0x1000n }), Errno.ENOTSUP);
      for (const flags of [4, 0x80000000]) {
        await expectErrno(c, Cmd.DMA_UNMAP, body.dmaUnmap({ flags, address: 0x10000n, size: 0x1000n }), Errno.EINVAL);
      }
      assert.equal(h.server.dma.count, 1);
    });
  });

  it('refuses fds with EINVAL and closes them', async () => {
    await withClient(h, async (c) => {
      await map(c, 0x10000n, 0x1000n);
      await expectFdsRefused(c, Cmd.DMA_UNMAP, body.dmaUnmap({ address: 0x10000n, size: 0x1000n }));
      assert.equal(h.server.dma.count, 1);
    });
  });
});
