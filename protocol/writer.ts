/** A growable little-endian buffer for building message bodies. */
export class WireWriter {
  private buf: Buffer;
  private at = 0;

  constructor(initial = 64) {
    this.buf = Buffer.alloc(initial);
  }

  get length(): number {
    return this.at;
  }

  /** Reserves n bytes and returns where they start (call before touching this.buf: it may move). */
  private ensure(n: number): number {
    if (this.at + n > this.buf.length) {
      const next = Buffer.alloc(Math.max(this.buf.length * 2, this.at + n));
      this.buf.copy(next, 0, 0, this.at);
      this.buf = next;
    }
    const start = this.at;
    this.at += n;
    return start;
  }

  u16(v: number): this {
    const at = this.ensure(2);
    this.buf.writeUInt16LE(v, at);
    return this;
  }

  u32(v: number): this {
    const at = this.ensure(4);
    this.buf.writeUInt32LE(v >>> 0, at);
    return this;
  }

  u64(v: bigint | number): this {
    const at = this.ensure(8);
    this.buf.writeBigUInt64LE(BigInt(v), at);
    return this;
  }

  bytes(data: Uint8Array): this {
    const at = this.ensure(data.byteLength);
    this.buf.set(data, at);
    return this;
  }

  zeros(n: number): this {
    const at = this.ensure(n);
    this.buf.fill(0, at, this.at);
    return this;
  }

  /** Overwrites a u32 written earlier (e.g. argsz once the total is known). */
  patchU32(offset: number, v: number): this {
    this.buf.writeUInt32LE(v >>> 0, offset);
    return this;
  }

  /** The bytes written (the buffer itself when the initial size was exact: no view to make). */
  finish(): Buffer {
    return this.at === this.buf.length ? this.buf : this.buf.subarray(0, this.at);
  }
}
