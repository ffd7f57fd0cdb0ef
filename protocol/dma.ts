/**
 * The client's DMA mappings (guest memory the device may access).
 *
 * With a vIOMMU QEMU sends one DMA_MAP per 4 KiB page, each with an fd of the same guest-RAM
 * memfd: a guest pinning 1 GiB sends 262,144 of them. So the mappings live in a balanced tree
 * (iova-tree.ts: O(log n) insert, remove and lookup), and each distinct backing file
 * (identified by fstat's dev/ino) is mmapped once and shared by every mapping into it: a map
 * costs one fstat and one close of the fd it came with, never an mmap (262,144 mmaps would
 * pass the kernel's vm.max_map_count, 65,530 by default) nor a kept descriptor.
 * Mappings without an fd are kept too: the device reaches them through DMA_READ/DMA_WRITE.
 */
import type { DmaMap, DmaUnmap } from './wire.ts';
import { Errno, VfioUserError, invalid } from './errors.ts';
import { IovaTree, type IovaNode, unlinked } from './iova-tree.ts';
import { PROT_READ, PROT_WRITE, Seal, closeQuietly, fileSeals, fstat, mmapShared, munmap, SyscallError } from './native/libc.ts';
import { DmaMapFlags, DmaUnmapFlags } from './wire.ts';

const U64_MAX = (1n << 64n) - 1n;

/**
 * How many mappings the table holds by default: a guest of 4 GiB mapped page by page, as a
 * vIOMMU makes QEMU send it (the kernel's VFIO selftests pin 1 GiB + 2 MiB in one test, about
 * 262,000 maps). A mapping costs the server about 190 bytes of JavaScript heap (the tree node
 * with its three bigints; bench/dma-maps.ts measures it): 1 Mi maps are ~190 MiB and a 1 GiB
 * pin ~48 MiB, so a hostile client cannot make the server grow without bound, yet a guest can
 * map all its RAM.
 */
export const DEFAULT_MAX_DMA_MAPS = 1 << 20;

/** The limit that lets a guest of `ramBytes` map all of its RAM in 4 KiB pages (at least 65,535). */
export function maxDmaMapsForRam(ramBytes: bigint): number {
  const pages = Number(ramBytes / 4096n);
  return Math.max(65_535, pages);
}

/**
 * One backing file, shared by all mappings into it. It is mmapped only when sealed against
 * shrinking (F_SEAL_SHRINK, as QEMU's memory-backend-memfd seals guest RAM by default): the
 * client could otherwise truncate it and our next copy through the mapping would die of
 * SIGBUS. An unsealed file is reached with pread/pwrite on `fd`, which cannot fault.
 */
export interface MappedFile {
  readonly key: string;
  /** Our mapping of the whole file; 0n when the file is not sealed and is not mapped. */
  readonly addr: bigint;
  readonly size: bigint;
  readonly writable: boolean;
  /** Kept open: the copy path reads and writes through it. */
  readonly fd: number;
  refs: number;
  /**
   * A view of the whole mapping, made on first use and dropped (never touched again) when the
   * mapping goes: making a koffi view per transfer cost more than the copy for small ones.
   */
  view?: Uint8Array;
}

export interface DmaRegion {
  readonly address: bigint;
  readonly size: bigint;
  readonly readable: boolean;
  readonly writable: boolean;
  /** Present when the client passed an fd: the region's bytes are at file.addr + fileOffset. */
  readonly file?: MappedFile;
  readonly fileOffset: bigint;
}

export interface DmaSegment {
  readonly region: DmaRegion;
  readonly address: bigint;
  readonly length: bigint;
}

/** A mapping as the tree holds it. */
type RegionNode = DmaRegion & IovaNode;

export class DmaMapTable {
  private readonly regions = new IovaTree<RegionNode>();
  private readonly files = new Map<string, MappedFile>();
  /**
   * Bumped whenever a mapping goes (unmap, clear): whoever caches a DmaRegion or its file's view
   * checks it still holds the number it cached with.
   */
  generation = 0;

  constructor(private readonly maxMaps: number) {}

  get count(): number {
    return this.regions.size;
  }

  get mappedFiles(): number {
    return this.files.size;
  }

  /** All mappings, lowest address first. */
  list(): readonly DmaRegion[] {
    return [...this.regions];
  }

  /**
   * DMA_MAP. Takes ownership of `fd` (closed here on every path, unless it becomes the kept fd
   * of a newly mapped file). Errors: EINVAL (flags, zero or overflowing range, range beyond the
   * file), EEXIST (overlaps a mapping), ENOSPC (more than max_dma_maps), or the errno of a
   * failed fstat/mmap.
   */
  add(req: DmaMap, fd: number | undefined): DmaRegion {
    let kept = false;
    try {
      if (req.flags & ~(DmaMapFlags.READ | DmaMapFlags.WRITE)) invalid(`DMA_MAP unknown flags 0x${req.flags.toString(16)}`);
      if (req.size === 0n) invalid('DMA_MAP of zero bytes');
      if (req.address > U64_MAX - req.size + 1n) invalid('DMA_MAP range wraps around 2^64');
      if (this.regions.size >= this.maxMaps) {
        throw new VfioUserError(Errno.ENOSPC, `DMA_MAP beyond max_dma_maps (${this.maxMaps})`);
      }
      const next = this.regions.firstEndingAfter(req.address);
      if (next && next.address < req.address + req.size) {
        throw new VfioUserError(
          Errno.EEXIST,
          `DMA_MAP [0x${req.address.toString(16)}, +0x${req.size.toString(16)}) overlaps [0x${next.address.toString(16)}, +0x${next.size.toString(16)})`,
        );
      }
      let file: MappedFile | undefined;
      if (fd !== undefined) {
        file = this.mapFile(fd, req);
        kept = file.fd === fd;
      }
      const region: RegionNode = {
        address: req.address,
        size: req.size,
        readable: (req.flags & DmaMapFlags.READ) !== 0,
        writable: (req.flags & DmaMapFlags.WRITE) !== 0,
        file,
        fileOffset: req.offset,
        ...unlinked(),
      };
      this.regions.insert(region);
      return region;
    } finally {
      // The first fd of a newly mapped file is kept by it; every other one is closed here.
      if (fd !== undefined && !kept) closeQuietly([fd]);
    }
  }

  private mapFile(fd: number, req: DmaMap): MappedFile {
    const st = fstat(fd);
    if (req.offset > st.size || req.size > st.size - req.offset) {
      invalid(`DMA_MAP offset 0x${req.offset.toString(16)} + size 0x${req.size.toString(16)} is beyond the file (0x${st.size.toString(16)} bytes)`);
    }
    const key = `${st.dev}:${st.ino}`;
    const known = this.files.get(key);
    if (known && known.size >= st.size) {
      known.refs++;
      return known;
    }
    if (known) invalid('DMA_MAP backing file grew since it was first mapped');
    if ((fileSeals(fd) & Seal.SHRINK) === 0) {
      // Writability shows at the first pwrite (EBADF for a read-only fd).
      const file: MappedFile = { key, addr: 0n, size: st.size, writable: true, fd, refs: 1 };
      this.files.set(key, file);
      return file;
    }
    let addr: bigint;
    let writable = true;
    try {
      addr = mmapShared(fd, st.size, 0n, PROT_READ | PROT_WRITE);
    } catch (err) {
      // A read-only fd (the client only lets us read) maps read-only.
      if (!(err instanceof SyscallError) || err.code !== 'EACCES') throw toProtocolError(err);
      addr = mmapShared(fd, st.size, 0n, PROT_READ);
      writable = false;
    }
    const file: MappedFile = { key, addr, size: st.size, writable, fd, refs: 1 };
    this.files.set(key, file);
    return file;
  }

  /**
   * DMA_UNMAP: removes every mapping inside [address, address+size), or all with the ALL flag.
   * Like the kernel's type1 IOMMU, a range holding no mapping succeeds and removes nothing
   * (QEMU unmaps never-mapped ranges when a guest binds the device). A mapping that straddles
   * the range's edge cannot be split: EINVAL. Returns the mappings removed.
   */
  remove(req: DmaUnmap): number {
    if (req.flags & ~DmaUnmapFlags.ALL) {
      if (req.flags & DmaUnmapFlags.GET_DIRTY_BITMAP) {
        throw new VfioUserError(Errno.ENOTSUP, 'DMA_UNMAP dirty bitmaps need dirty-page logging, which is not started');
      }
      invalid(`DMA_UNMAP unknown flags 0x${req.flags.toString(16)}`);
    }
    if (req.flags & DmaUnmapFlags.ALL) {
      if (req.address !== 0n || req.size !== 0n) invalid('DMA_UNMAP ALL needs address and size 0');
      return this.clear();
    }
    if (req.size === 0n) invalid('DMA_UNMAP of zero bytes');
    if (req.address > U64_MAX - req.size + 1n) invalid('DMA_UNMAP range wraps around 2^64');
    const end = req.address + req.size;
    const head = this.regions.firstEndingAfter(req.address);
    if (!head || head.address >= end) return 0;
    // Check both edges before removing anything: a refused unmap leaves the table as it was.
    let tail = head;
    while (tail.next && tail.next.address < end) tail = tail.next as RegionNode;
    if (head.address < req.address || tail.address + tail.size > end) {
      invalid(`DMA_UNMAP [0x${req.address.toString(16)}, +0x${req.size.toString(16)}) would split a mapping`);
    }
    let removed = 0;
    let r = head;
    this.generation++;
    for (;;) {
      const next = r.next as RegionNode;
      this.regions.delete(r);
      this.release(r);
      removed++;
      if (r === tail) return removed;
      r = next;
    }
  }

  /** Unmaps everything (DMA_UNMAP ALL, and on disconnect). Returns the mappings removed. */
  clear(): number {
    this.generation++;
    const removed = this.regions.clear();
    for (const r of removed) this.release(r);
    return removed.length;
  }

  private release(r: DmaRegion): void {
    const file = r.file;
    if (!file) return;
    if (--file.refs === 0) {
      this.files.delete(file.key);
      file.view = undefined;
      if (file.addr !== 0n) munmap(file.addr, file.size);
      closeQuietly([file.fd]);
    }
  }

  /**
   * The one mapping holding all of [address, address+length), if one does (the common case:
   * the device's transfer lies inside a single DMA_MAP). No allocation: the transfer fast path.
   */
  covering(address: bigint, length: bigint): DmaRegion | null {
    const r = this.regions.firstEndingAfter(address);
    return r && r.address <= address && address + length <= r.address + r.size ? r : null;
  }

  /**
   * The mappings covering [address, address+length) in order, one piece per mapping, or a
   * description of the first hole. A vIOMMU maps page by page, so one device transfer often
   * spans several adjacent mappings.
   */
  segments(address: bigint, length: bigint): { pieces: DmaSegment[] } | { hole: bigint } {
    const pieces: DmaSegment[] = [];
    let at = address;
    const end = address + length;
    let r = this.regions.firstEndingAfter(address);
    while (at < end) {
      if (!r || r.address > at) return { hole: at };
      const take = (r.address + r.size < end ? r.address + r.size : end) - at;
      pieces.push({ region: r, address: at, length: take });
      at += take;
      r = r.next as RegionNode | null;
    }
    return { pieces };
  }
}

function toProtocolError(err: unknown): unknown {
  if (err instanceof SyscallError) return new VfioUserError(err.errno, err.message);
  return err;
}
