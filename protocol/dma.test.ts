import assert from 'node:assert/strict';
import { openSync, readFileSync, readlinkSync, readdirSync } from 'node:fs';
import { describe, it } from 'node:test';
import { DEFAULT_MAX_DMA_MAPS, DmaMapTable, maxDmaMapsForRam } from './dma.ts';
import { Errno, VfioUserError } from './errors.ts';
import { GUEST_RAM_SEALS, close, memfdCreate, mmapShared, munmap, viewOf } from './native/libc.ts';
import { ADVERTISED_MAX_DMA_MAPS_CAP, DEFAULT_SERVER_LIMITS, negotiate } from './version.ts';

const PAGE = 0x1000n;
const map = (address: bigint, size: bigint, offset = 0n, flags = 3) => ({ argsz: 32, flags, offset, address, size });
const unmap = (address: bigint, size: bigint, flags = 0) => ({ argsz: 24, flags, address, size });
const errno = (n: number) => (err: unknown) => err instanceof VfioUserError && err.errno === n;

/** Mappings of memfds named `name` in this process (what /proc/self/maps shows). */
function mappingsOf(name: string): number {
  return readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.includes(`/memfd:${name}`)).length;
}
function openFdsOf(name: string): number {
  return readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`).includes(`memfd:${name}`);
    } catch {
      return false;
    }
  }).length;
}

describe('the DMA map limit', () => {
  it('by default holds a 1 GiB + 2 MiB pin made of one-page maps (what the kernel\'s VFIO selftests send through a vIOMMU)', () => {
    const table = new DmaMapTable(DEFAULT_MAX_DMA_MAPS);
    const pages = ((1n << 30n) + (2n << 20n)) / PAGE;
    for (let i = 0n; i < pages; i++) table.add(map(i * PAGE, PAGE), undefined);
    assert.equal(table.count, 262_656);
    assert.equal(table.remove(unmap(0n, pages * PAGE)), 262_656);
  });

  it('is sized by guest RAM for vm (never below 65,535) and refuses one map beyond it with ENOSPC', () => {
    assert.equal(maxDmaMapsForRam(4n << 30n), 1 << 20);
    assert.equal(maxDmaMapsForRam(128n << 20n), 65_535);
    const table = new DmaMapTable(3);
    for (let i = 0n; i < 3n; i++) table.add(map(i * PAGE, PAGE), undefined);
    assert.throws(() => table.add(map(3n * PAGE, PAGE), undefined), errno(Errno.ENOSPC));
  });

  it('advertises at most 65,535 in VERSION (QEMU refuses more), whatever the table holds', () => {
    const json = (maxDmaMaps: number) =>
      JSON.parse(negotiate({ major: 0, minor: 0, json: '{}' }, { ...DEFAULT_SERVER_LIMITS, maxDmaMaps }).reply.json ?? '') as { capabilities: { max_dma_maps: number } };
    assert.equal(json(DEFAULT_MAX_DMA_MAPS).capabilities.max_dma_maps, ADVERTISED_MAX_DMA_MAPS_CAP);
    assert.equal(json(100).capabilities.max_dma_maps, 100);
  });
});

describe('DmaMapTable', () => {
  it('maps many page-sized DMA_MAPs of one memfd with a single mmap, and unmaps it with the last', () => {
    const mem = memfdCreate('dma-test-ram', 16n * PAGE, { seals: GUEST_RAM_SEALS });
    const table = new DmaMapTable(65535);
    for (let i = 0n; i < 16n; i++) {
      // Each message carries its own fd of the same file, as QEMU sends them.
      table.add(map(0x10000n + i * PAGE, PAGE, i * PAGE), memfdDup(mem));
    }
    assert.equal(table.count, 16);
    assert.equal(table.mappedFiles, 1);
    assert.equal(mappingsOf('dma-test-ram'), 1);
    assert.equal(openFdsOf('dma-test-ram'), 2, 'the table keeps one fd per mapped file (ours is the other)');
    // A transfer crossing page boundaries spans adjacent mappings, piece by piece.
    const found = table.segments(0x10000n + 5n * PAGE + 8n, 2n * PAGE);
    assert.ok('pieces' in found);
    assert.deepEqual(found.pieces.map((p) => [p.region.fileOffset, p.length]), [[5n * PAGE, PAGE - 8n], [6n * PAGE, PAGE], [7n * PAGE, 8n]]);
    assert.deepEqual(table.segments(0x10000n + 15n * PAGE, 2n * PAGE), { hole: 0x10000n + 16n * PAGE });
    assert.equal(table.remove(unmap(0x10000n, 8n * PAGE)), 8);
    assert.equal(mappingsOf('dma-test-ram'), 1);
    assert.equal(table.remove(unmap(0x10000n, 16n * PAGE)), 8);
    assert.equal(mappingsOf('dma-test-ram'), 0);
    assert.equal(openFdsOf('dma-test-ram'), 1, 'the last unmap closes the kept fd');
    close(mem);
  });

  it('sees what the other side writes into the file', () => {
    const mem = memfdCreate('dma-test-shared', PAGE, { seals: GUEST_RAM_SEALS });
    const addr = mmapShared(mem, PAGE, 0n);
    new DataView(viewOf(addr, 16)).setUint32(8, 0x5eed1234, true);
    const table = new DmaMapTable(8);
    const region = table.add(map(0x2000n, PAGE), memfdDup(mem));
    assert.ok(region.file);
    assert.equal(new DataView(viewOf(region.file.addr + region.fileOffset, 16)).getUint32(8, true), 0x5eed1234);
    table.clear();
    munmap(addr, PAGE);
    close(mem);
  });

  it('refuses overlaps with EEXIST, beyond-file ranges and u64 wrap with EINVAL, and too many maps with ENOSPC', () => {
    const table = new DmaMapTable(2);
    table.add(map(0x4000n, 2n * PAGE), undefined);
    assert.throws(() => table.add(map(0x5000n, PAGE), undefined), errno(Errno.EEXIST));
    assert.throws(() => table.add(map(0x3000n, 2n * PAGE), undefined), errno(Errno.EEXIST));
    assert.throws(() => table.add(map(0xffff_ffff_ffff_f000n, 2n * PAGE), undefined), errno(Errno.EINVAL));
    assert.throws(() => table.add(map(0x9000n, 0n), undefined), errno(Errno.EINVAL));
    assert.throws(() => table.add(map(0x9000n, PAGE, 0n, 8), undefined), errno(Errno.EINVAL));
    const small = memfdCreate('dma-test-small', PAGE, { seals: GUEST_RAM_SEALS });
    assert.throws(() => table.add(map(0x9000n, 2n * PAGE), memfdDup(small)), errno(Errno.EINVAL));
    assert.equal(openFdsOf('dma-test-small'), 1, 'the fd of a refused DMA_MAP is closed');
    table.add(map(0x6000n, PAGE), undefined);
    assert.throws(() => table.add(map(0x8000n, PAGE), undefined), errno(Errno.ENOSPC));
    close(small);
  });

  it('unmaps like type1: empty ranges succeed, straddling ones are EINVAL, ALL clears', () => {
    const table = new DmaMapTable(16);
    table.add(map(0x10000n, 4n * PAGE), undefined);
    table.add(map(0x20000n, PAGE), undefined);
    assert.equal(table.remove(unmap(0x40000n, PAGE)), 0);
    assert.throws(() => table.remove(unmap(0x11000n, PAGE)), errno(Errno.EINVAL));
    assert.throws(() => table.remove(unmap(0x10000n, 0n)), errno(Errno.EINVAL));
    assert.throws(() => table.remove(unmap(0x1000n, 0n, 2)), errno(Errno.EINVAL), 'ALL needs address and size 0');
    assert.equal(table.remove(unmap(0n, 0n, 2)), 2);
    assert.equal(table.count, 0);
  });
});

/** A second fd of the same memfd, as a DMA_MAP message would carry: reopened via /proc. */
function memfdDup(fd: number): number {
  return openSync(`/proc/self/fd/${fd}`, 'r+');
}
