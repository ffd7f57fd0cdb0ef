/**
 * A cursor over one message body. Every read is bounds-checked against the frame: a short
 * payload becomes EINVAL for the request, never a read into the next message.
 */
import { invalid } from './errors.ts';

export class WireReader {
  private readonly view: DataView;
  private at = 0;

  constructor(readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get offset(): number {
    return this.at;
  }

  get remaining(): number {
    return this.bytes.byteLength - this.at;
  }

  private take(n: number, what: string): number {
    if (this.at + n > this.bytes.byteLength) {
      invalid(`payload too short for ${what}: need ${this.at + n} bytes, have ${this.bytes.byteLength}`);
    }
    const start = this.at;
    this.at += n;
    return start;
  }

  u16(what = 'u16'): number {
    return this.view.getUint16(this.take(2, what), true);
  }

  u32(what = 'u32'): number {
    return this.view.getUint32(this.take(4, what), true);
  }

  u64(what = 'u64'): bigint {
    return this.view.getBigUint64(this.take(8, what), true);
  }

  /** A view (no copy) of the next n bytes of the frame. */
  bytesView(n: number, what = 'data'): Uint8Array {
    const start = this.take(n, what);
    return new Uint8Array(this.bytes.buffer, this.bytes.byteOffset + start, n);
  }

  /** The rest of the frame, as a view. */
  rest(): Uint8Array {
    return this.bytesView(this.remaining);
  }

  skip(n: number, what = 'padding'): void {
    this.take(n, what);
  }
}
