/**
 * The fuzzer's client: a raw vfio-user connection that never blocks (the server runs on the
 * same thread), parses what the server sends with its own little parser, keeps replies in
 * arrival order, ignores (counts) server-to-client requests and closes any fds it receives.
 */
import { type FdWatch, close, closeQuietly, connectUnix, watchReadable } from '../../protocol/native/libc.ts';
import { FdReceiver, FdSender } from '../../protocol/native/fd-messages.ts';

/** The server broke a rule: the message says which, and names the frame. */
export class FuzzViolation extends Error {}

const TYPE_MASK = 0xf;
const REPLY = 1;

export interface Incoming {
  readonly id: number;
  readonly command: number;
  readonly size: number;
  readonly flags: number;
  readonly error: number;
  readonly bodyLength: number;
  /** The first bytes of the body (at most 64), copied. */
  readonly head: Buffer;
}

export class RawPeer {
  private readonly sender = new FdSender(16, 2);
  private readonly receiver = new FdReceiver(16);
  private readonly buf = Buffer.alloc(2 << 20);
  private have = 0;
  private readonly queue: Incoming[] = [];
  private watch: FdWatch | null;
  closed = false;
  /** Server-to-client requests seen (DMA_READ/WRITE): ignored, counted. */
  serverRequests = 0;
  private wake: (() => void) | null = null;
  /** A malformed message from the server, if any. */
  private bad: string | null = null;
  private closedFd = false;

  constructor(readonly fd: number) {
    this.watch = watchReadable(fd, () => this.drain());
  }

  static connect(path: string): RawPeer {
    return new RawPeer(connectUnix(path));
  }

  send(bytes: Uint8Array, fds: readonly number[] = []): void {
    this.sender.sendAll(this.fd, [bytes], fds);
  }

  private drain(): void {
    for (;;) {
      if (this.closed) return;
      let got;
      try {
        got = this.receiver.recv(this.fd, this.buf, this.have, this.buf.length - this.have);
      } catch {
        this.markClosed();
        return;
      }
      if (got === null) break;
      closeQuietly(got.fds);
      if (got.bytes === 0) {
        this.markClosed();
        break;
      }
      this.have += got.bytes;
      this.parse();
    }
    this.poke();
  }

  private parse(): void {
    let at = 0;
    while (this.have - at >= 16) {
      const size = this.buf.readUInt32LE(at + 4);
      if (size < 16) {
        this.bad = `the server sent a message whose header says size ${size}`;
        this.markClosed();
        return;
      }
      if (this.have - at < size) break;
      const m = {
        id: this.buf.readUInt16LE(at),
        command: this.buf.readUInt16LE(at + 2),
        size,
        flags: this.buf.readUInt32LE(at + 8),
        error: this.buf.readUInt32LE(at + 12),
        bodyLength: size - 16,
        head: Buffer.from(this.buf.subarray(at + 16, at + Math.min(size, 16 + 64))),
      };
      if ((m.flags & TYPE_MASK) === REPLY) this.queue.push(m);
      else this.serverRequests++;
      at += size;
    }
    this.buf.copyWithin(0, at, this.have);
    this.have -= at;
  }

  /** End of stream, or a receive error (ECONNRESET when the server closed with data unread). */
  private markClosed(): void {
    this.closed = true;
    this.watch?.stop();
    this.watch = null;
    this.poke();
  }

  private poke(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  /** The next reply, or 'closed' once the server has closed and every reply was taken. */
  async next(timeoutMs: number): Promise<Incoming | 'closed' | 'timeout'> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      if (this.bad) throw new FuzzViolation(this.bad);
      const m = this.queue.shift();
      if (m) return m;
      if (this.closed) return 'closed';
      const left = deadline - performance.now();
      if (left <= 0) return 'timeout';
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          this.wake = null;
          resolve();
        }, left);
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  }

  get pendingReplies(): number {
    return this.queue.length;
  }

  close(): void {
    if (this.watch) this.watch.stop();
    this.watch = null;
    if (!this.closedFd) {
      this.closedFd = true;
      close(this.fd);
    }
    this.closed = true;
  }
}
