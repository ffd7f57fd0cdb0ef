/** Device memory shared with the client: a memfd, mapped once here, handed over as an fd. */
import type { SharedMemory } from './served-device.ts';
import { close, memfdCreate, mmapShared, munmap, viewOf } from './native/libc.ts';

/** The largest single view V8 gives us; bigger regions are viewed window by window. */
const MAX_VIEW = 1 << 30;

/**
 * The view of the whole region is made on first use, not in the constructor: V8 counts every
 * view's length as external memory, and 64 MiB more of it forces a full GC. A server making N
 * devices at start-up paid N mark-compacts for views that a device whose BAR1 nobody reads
 * through the server (edu-plus under QEMU) never uses.
 */
export class MemfdMemory implements SharedMemory {
  readonly fd: number;
  private readonly addr: bigint;
  private whole: Uint8Array | null = null;
  private closed = false;
  private viewedAny = false;

  constructor(
    readonly name: string,
    readonly size: bigint,
    opts: { hugePages?: boolean } = {},
  ) {
    this.fd = memfdCreate(name, size, opts);
    try {
      this.addr = mmapShared(this.fd, size, 0n);
    } catch (err) {
      close(this.fd);
      throw err;
    }
  }

  bytes(offset: number, length: number): Uint8Array {
    if (this.closed) throw new Error(`${this.name}: memory used after close`);
    if (offset < 0 || length < 0 || BigInt(offset + length) > this.size) {
      throw new RangeError(`${this.name}: [${offset}, +${length}) outside ${this.size} bytes`);
    }
    this.viewedAny = true;
    if (this.size > BigInt(MAX_VIEW)) return new Uint8Array(viewOf(this.addr + BigInt(offset), length));
    this.whole ??= new Uint8Array(viewOf(this.addr, Number(this.size)));
    return this.whole.subarray(offset, offset + length);
  }

  /** Whether any view was handed out (one may still be held: unmapping would leave it dangling). */
  get viewed(): boolean {
    return this.viewedAny;
  }

  /** Unmaps and closes. Only the owner calls this, when no view of it can be used again. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    munmap(this.addr, this.size);
    close(this.fd);
  }
}
