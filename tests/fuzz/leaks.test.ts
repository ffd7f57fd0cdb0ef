/**
 * 1000 connect/abuse/disconnect cycles — VERSION, an fd-backed DMA_MAP, an eventfd wired with
 * SET_IRQS, refused requests carrying fds, and now and then a disconnect in the middle of a
 * message or a header the server must close on — leave the process (server included: it runs
 * here) with the descriptors and mappings it had after one warm-up cycle.
 *
 * Mappings: every file-backed line of /proc/self/maps (the server's DMA and BAR1 mmaps of
 * memfds are among them) must be back exactly. Anonymous lines are V8's and malloc's heaps:
 * even with a forced GC they drift by a few lines, so they get a small allowance — a server
 * that keeps each client's objects alive shows up there, and in ArrayBuffer memory, which is
 * bounded too (every connection owns a 256 KiB receive buffer).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { close, eventfdCreate, memfdCreate } from '../../protocol/native/libc.ts';
import { Cmd, Errno, type Harness, body, expectClosed, expectErrno, header, mappingCount, openFdCount, send, startServer, turns } from '../conformance/harness.ts';

const CYCLES = Number(process.env.LEAK_CYCLES ?? 1000);
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const settleMemory = async () => {
  for (let i = 0; i < 3; i++) {
    gc();
    await turns(2);
  }
};

/** Anonymous mapping lines may grow by this much (heap noise, measured at ≤ 10 over 3000 cycles). */
// Measured: V8 and malloc add or drop anonymous mappings on their own (19–45 lines after
// 1000–3000 cycles, not growing with the count); a per-client leak would add ~1000.
const ANON_ALLOWANCE = 64;
/** ArrayBuffer memory may grow by this much: 16 connections' receive buffers. */
const ARRAY_BUFFER_ALLOWANCE = 16 * 256 * 1024;

/**
 * The JavaScript heap's pages: V8 maps each page of its heap (256 KiB) as an anonymous mapping
 * of its own, and keeps a grown heap (its young generation grows with the allocation rate) after
 * a GC. Those are not ours to count.
 */
const V8_PAGE = 256 * 1024;
function heapPages(): number {
  return Math.ceil(getHeapSpaceStatistics().reduce((n, s) => n + s.space_size, 0) / V8_PAGE);
}

/** /proc/self/maps lines split into file-backed (by path) and anonymous. */
function mappings(): { files: Map<string, number>; anonymous: number } {
  const files = new Map<string, number>();
  let anonymous = 0;
  for (const line of readFileSync('/proc/self/maps', 'utf8').split('\n')) {
    if (!line) continue;
    const path = line.split(/\s+/).slice(5).join(' ');
    if (path === '' || path === '[heap]' || path === '[stack]' || path.startsWith('[anon')) anonymous++;
    else files.set(path, (files.get(path) ?? 0) + 1);
  }
  return { files, anonymous };
}

describe('no leaks across client lifetimes', () => {
  let h: Harness;
  let guestRam: number;
  let irqFd: number;
  before(() => {
    h = startServer();
    guestRam = memfdCreate('leak-guest-ram', 1n << 20n);
    irqFd = eventfdCreate();
  });
  after(() => {
    close(guestRam);
    close(irqFd);
    h.close();
  });

  async function cycle(i: number): Promise<void> {
    await h.settle();
    const c = h.rawClient();
    await expectErrno(c, Cmd.VERSION, body.version(0, 0, '{"capabilities":{"max_msg_fds":8}}'), 0);
    await expectErrno(c, Cmd.DMA_MAP, body.dmaMap({ address: 0x100000n, size: 0x80000n, offset: BigInt(i % 8) * 0x1000n }), 0, { fds: [guestRam] });
    await expectErrno(c, Cmd.DMA_MAP, body.dmaMap({ address: 0x200000n, size: 0x1000n }), 0);
    await expectErrno(c, Cmd.DEVICE_SET_IRQS, body.setIrqs({ flags: 4 | 32, index: i % 2, count: 1 }), 0, { fds: [irqFd] });
    // Refused requests, several carrying fds the server must close.
    await expectErrno(c, Cmd.DMA_MAP, body.dmaMap({ address: 0x100000n, size: 0x1000n }), Errno.EEXIST, { fds: [guestRam] });
    await expectErrno(c, Cmd.DEVICE_GET_INFO, body.u32s(16, 0, 0, 0), Errno.EINVAL, { fds: [irqFd, guestRam] });
    await expectErrno(c, Cmd.DEVICE_SET_IRQS, body.setIrqs({ flags: 4 | 32, index: 0, count: 1 }), Errno.EINVAL, { fds: [irqFd, irqFd] });
    await expectErrno(c, Cmd.REGION_READ, body.regionAccess(1n << 20n, 0, 4), Errno.EINVAL);
    await expectErrno(c, 99, Buffer.alloc(8), Errno.ENOSYS);
    if (i % 4 === 1) {
      // Disconnect in the middle of a message that carries fds.
      c.sendRaw(Buffer.concat([header({ id: 1, command: Cmd.DMA_MAP, size: 48 }), Buffer.alloc(10)]), [guestRam, irqFd]);
      await turns(1);
      c.close();
    } else if (i % 4 === 2) {
      // A header the server closes the connection on.
      const r = await send(c, Cmd.DEVICE_GET_INFO, Buffer.alloc(0), { size: 8, fds: [irqFd] });
      assert.equal(r.errno, Errno.EINVAL);
      await expectClosed(c);
      c.close();
    } else if (i % 4 === 3) {
      await expectErrno(c, Cmd.DMA_UNMAP, body.dmaUnmap({ flags: 2, address: 0n, size: 0n }), 0);
      c.close();
    } else {
      c.close();
    }
    await h.settle();
  }

  it(`holds no extra fds or mappings after ${CYCLES} cycles`, async () => {
    await cycle(0);
    await settleMemory();
    const fds = openFdCount();
    const maps = mappingCount();
    const before = mappings();
    const pages = heapPages();
    const arrayBuffers = process.memoryUsage().arrayBuffers;
    for (let i = 1; i <= CYCLES; i++) await cycle(i);
    await settleMemory();
    assert.equal(h.server.dma.count, 0);
    assert.equal(h.server.irqs.heldFds, 0);
    assert.equal(openFdCount(), fds, 'open fds back to the baseline');
    const now = mappings();
    assert.deepEqual(now.files, before.files, 'file-backed mappings (memfd DMA and BAR1 maps included) back to the baseline');
    const heapGrown = heapPages() - pages;
    const grown = now.anonymous - before.anonymous - Math.max(0, heapGrown);
    assert.ok(grown <= ANON_ALLOWANCE, `anonymous mappings grew by ${grown} lines besides ${heapGrown} JavaScript heap pages (/proc/self/maps: ${maps} → ${mappingCount()} lines)`);
    const abGrown = process.memoryUsage().arrayBuffers - arrayBuffers;
    assert.ok(abGrown <= ARRAY_BUFFER_ALLOWANCE, `ArrayBuffer memory grew by ${(abGrown / 2 ** 20).toFixed(1)} MiB over ${CYCLES} clients: the server keeps something of every client alive`);
  });
});
