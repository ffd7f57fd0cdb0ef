/**
 * The device's view of guest memory: a transfer is split over the DMA mappings it spans; each
 * piece is copied straight through our mapping of the client's fd when the file is sealed
 * against shrinking, with pread/pwrite on the fd when it is not (a mapping of a file the
 * client may truncate would fault: SIGBUS), or carried by DMA_READ/DMA_WRITE messages (in
 * chunks of the client's max_data_xfer_size) when the client mapped memory without an fd.
 */
import { encodeDmaTransfer, decodeDmaTransfer } from './codec.ts';
import { type DmaAccess, DmaFault } from './served-device.ts';
import type { DmaMapTable, DmaSegment } from './dma.ts';
import { SyscallError, pread, pwrite, viewOf } from './native/libc.ts';
import type { PeerRequests } from './peer-requests.ts';
import { Command } from './wire.ts';

/** The connected client's request channel and its transfer limit, when there is a client. */
export interface DmaChannel {
  readonly peer: PeerRequests;
  readonly maxXfer: number;
}

/** Mappings up to this size (guest RAM of test VMs is 1 GiB) get one cached view; larger ones a view per transfer. */
const WHOLE_VIEW_LIMIT = 1n << 30n;

/** Guest addresses below this are exact as numbers. */
const EXACT_IN_NUMBERS = 1n << 53n;

/** What a transfer finished synchronously returns (one settled promise shared by all). */
const SETTLED: Promise<void> = Promise.resolve();

/** The mapping copyDirect used last, with its window in numbers (all exact: below 2^53). */
interface DirectHit {
  /** The table's generation when cached: any unmap since makes it stale. */
  readonly generation: number;
  readonly low: bigint;
  readonly high: bigint;
  readonly highNumber: number;
  /** File offset minus guest address: added to an address to find its byte in the view. */
  readonly delta: number;
  readonly view: Uint8Array;
  readonly readable: boolean;
  readonly writable: boolean;
}

export class ServerDma implements DmaAccess {
  /** Bytes moved by each path (mapped, copied through the fd, messages), for tests and benchmarks. */
  readonly moved = { direct: 0, copied: 0, messages: 0 };
  private hit: DirectHit | null = null;

  constructor(
    private readonly table: DmaMapTable,
    private readonly channel: () => DmaChannel | null,
  ) {}

  pathOf(address: bigint): 'direct' | 'messages' | undefined {
    const found = this.table.segments(address, 1n);
    if ('hole' in found) return undefined;
    return found.pieces[0]!.region.file ? 'direct' : 'messages';
  }

  private plan(address: bigint, length: number, write: boolean): DmaSegment[] {
    if (length <= 0) throw new DmaFault(address, length, 'empty transfer');
    const found = this.table.segments(address, BigInt(length));
    if ('hole' in found) throw new DmaFault(address, length, `0x${found.hole.toString(16)} is not DMA-mapped`);
    for (const p of found.pieces) {
      if (write ? !p.region.writable : !p.region.readable) {
        throw new DmaFault(address, length, `mapping at 0x${p.region.address.toString(16)} does not allow ${write ? 'writes' : 'reads'}`);
      }
    }
    return found.pieces;
  }

  /**
   * The piece's bytes in our mapping of a sealed file (it cannot shrink, so the mapping cannot
   * fault); used synchronously, never kept across an await.
   */
  private mapped(p: DmaSegment): Uint8Array {
    const file = p.region.file!;
    const start = p.region.fileOffset + (p.address - p.region.address);
    if (file.size <= WHOLE_VIEW_LIMIT) {
      file.view ??= new Uint8Array(viewOf(file.addr, Number(file.size)));
      return file.view.subarray(Number(start), Number(start + p.length));
    }
    return new Uint8Array(viewOf(file.addr + start, Number(p.length)));
  }

  /** Copies one piece between `data` and an fd-backed mapping: through our mapping, or the fd. */
  private copyFile(p: DmaSegment, data: Uint8Array, write: boolean): void {
    const file = p.region.file!;
    if (write && !file.writable) throw new DmaFault(p.address, data.byteLength, 'the client passed a read-only fd');
    if (file.addr !== 0n) {
      if (write) this.mapped(p).set(data);
      else data.set(this.mapped(p));
      this.moved.direct += data.byteLength;
      return;
    }
    const at = p.region.fileOffset + (p.address - p.region.address);
    try {
      if (write) pwrite(file.fd, data, at);
      else if (pread(file.fd, data, at) < data.byteLength) throw new DmaFault(p.address, data.byteLength, 'the client shrank the file backing this DMA mapping');
    } catch (err) {
      if (err instanceof SyscallError) throw new DmaFault(p.address, data.byteLength, `the client's fd refused the copy: ${err.message}`);
      throw err;
    }
    this.moved.copied += data.byteLength;
  }

  /**
   * The fast path: when one mapping of a sealed (hence mmapped) file holds the whole transfer
   * and allows it, copies it at once and returns true; otherwise returns false and leaves every
   * check and error to the general path. The mapping last used is kept in plain numbers (hit),
   * so a device working inside one mapping pays no tree lookup and no bigint arithmetic, and
   * the caller gets an already-settled promise rather than an async frame: at 64 KiB those
   * per-call costs were a third of the time.
   */
  private copyDirect(address: bigint, data: Uint8Array, write: boolean): boolean {
    const length = data.byteLength;
    if (length === 0) return false;
    let hit = this.hit;
    if (!hit || hit.generation !== this.table.generation || address < hit.low || address >= hit.high) {
      hit = this.hitFor(address, length);
      if (!hit) return false;
    }
    const at = Number(address); // exact: below hit.high, itself at most 2^53
    if (at + length > hit.highNumber || !(write ? hit.writable : hit.readable)) return false;
    const start = at + hit.delta;
    if (write) hit.view.set(data, start);
    else data.set(hit.view.subarray(start, start + length));
    this.moved.direct += length;
    return true;
  }

  /** Caches the mapping holding [address, address+length) for copyDirect, if it qualifies. */
  private hitFor(address: bigint, length: number): DirectHit | null {
    const region = this.table.covering(address, BigInt(length));
    const file = region?.file;
    if (!region || !file || file.addr === 0n || file.size > WHOLE_VIEW_LIMIT) return null;
    const high = region.address + region.size;
    if (high > EXACT_IN_NUMBERS) return null;
    file.view ??= new Uint8Array(viewOf(file.addr, Number(file.size)));
    this.hit = {
      generation: this.table.generation,
      low: region.address,
      high,
      highNumber: Number(high),
      delta: Number(region.fileOffset) - Number(region.address),
      view: file.view,
      readable: region.readable,
      writable: region.writable && file.writable,
    };
    return this.hit;
  }

  read(address: bigint, length: number): Promise<Uint8Array> {
    // Every byte is written before the buffer is returned: no need to zero it first.
    const raw = Buffer.allocUnsafeSlow(length); // never pooled: the array below owns it alone
    const out = new Uint8Array(raw.buffer, raw.byteOffset, length);
    return this.readInto(address, out).then(() => out);
  }

  readInto(address: bigint, out: Uint8Array): Promise<void> {
    return this.copyDirect(address, out, false) ? SETTLED : this.readPieces(address, out);
  }

  write(address: bigint, data: Uint8Array): Promise<void> {
    return this.copyDirect(address, data, true) ? SETTLED : this.writePieces(address, data);
  }

  private async readPieces(address: bigint, out: Uint8Array): Promise<void> {
    const length = out.byteLength;
    const pieces = this.plan(address, length, false);
    let at = 0;
    for (const p of pieces) {
      const n = Number(p.length);
      if (p.region.file) {
        this.copyFile(p, out.subarray(at, at + n), false);
      } else {
        await this.viaMessages(p, (chunkAddr, count) => this.readChunk(chunkAddr, count, out, at + Number(chunkAddr - p.address)));
        this.moved.messages += n;
      }
      at += n;
    }
  }

  private async writePieces(address: bigint, data: Uint8Array): Promise<void> {
    let at = 0;
    for (const p of this.plan(address, data.byteLength, true)) {
      const n = Number(p.length);
      if (p.region.file) {
        this.copyFile(p, data.subarray(at, at + n), true);
      } else {
        const base = at;
        await this.viaMessages(p, async (chunkAddr, count) => {
          const from = base + Number(chunkAddr - p.address);
          await this.peer(address, data.byteLength).request(
            Command.DMA_WRITE,
            encodeDmaTransfer({ address: chunkAddr, count, data: data.subarray(from, from + count) }),
          );
        });
        this.moved.messages += n;
      }
      at += n;
    }
  }

  private peer(address: bigint, length: number): PeerRequests {
    const ch = this.channel();
    if (!ch) throw new DmaFault(address, length, 'no client is connected to carry DMA messages');
    return ch.peer;
  }

  private async readChunk(address: bigint, count: number, out: Uint8Array, at: number): Promise<void> {
    const body = await this.peer(address, count).request(Command.DMA_READ, encodeDmaTransfer({ address, count, data: new Uint8Array(0) }));
    const reply = decodeDmaTransfer(body, true);
    if (reply.count !== count) throw new DmaFault(address, count, `client returned ${reply.count} bytes`);
    out.set(reply.data, at);
  }

  private async viaMessages(p: DmaSegment, chunk: (address: bigint, count: number) => Promise<void>): Promise<void> {
    const max = BigInt(this.channel()?.maxXfer ?? 0);
    if (max === 0n) throw new DmaFault(p.address, Number(p.length), 'no client is connected to carry DMA messages');
    for (let off = 0n; off < p.length; off += max) {
      const count = p.length - off < max ? p.length - off : max;
      await chunk(p.address + off, Number(count));
    }
  }
}
