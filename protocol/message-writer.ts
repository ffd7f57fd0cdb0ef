/**
 * Ordered, non-blocking output for one socket. A message is written at once when the socket
 * has room; otherwise its unsent bytes are copied into a queue that drains as the event loop
 * reports the socket writable. The fds of a message belong to the writer from `write` on and
 * are closed once they have gone out (the kernel gave the peer its own copies) or when the
 * writer closes. The event loop must never block on a peer that is slow to read — it may be
 * waiting for us (a test client in this process, QEMU's iothread).
 *
 * The queue is the peer's to drain, so it keeps running totals (bytes, messages, fds held) that
 * the reader checks in O(1) after each message to stop taking requests from a peer that does
 * not read its replies (`congested`), and `onDrained` says when to start again.
 */
import { EAGAIN, type FdWatch, SyscallError, closeQuietly } from './native/libc.ts';
import { type FdSender } from './native/fd-messages.ts';

interface Pending {
  readonly parts: Uint8Array[];
  readonly total: number;
  sent: number;
  fds: readonly number[];
}

/** Bounds on what the queue may hold before the writer reports itself congested. */
export interface QueueBounds {
  readonly maxBytes: number;
  readonly maxMessages: number;
  readonly maxFds: number;
}

const UNBOUNDED: QueueBounds = { maxBytes: Infinity, maxMessages: Infinity, maxFds: Infinity };

export class MessageWriter {
  private readonly queue: Pending[] = [];
  private closed = false;
  private bytes = 0;
  private fdsHeld = 0;
  /** Called when the queue has become empty (the peer read everything). */
  onDrained: (() => void) | null = null;
  /**
   * While set, a small message without fds is held (staged in the sender) instead of sent: the
   * channel sends it together with its wait for the next request (request-ring.ts). Any other
   * output first sends what is held, so the order of messages never changes.
   */
  holdNext = false;
  /** Length of the message held, 0 when none. */
  private heldLength = 0;

  constructor(
    private readonly fd: number,
    private readonly sender: FdSender,
    /** The socket's event-loop watch: asked for writability while output is queued. */
    private readonly watch: () => FdWatch | null,
    /** A fatal write error (the peer is gone). */
    private readonly onError: (err: Error) => void,
    private readonly bounds: QueueBounds = UNBOUNDED,
  ) {}

  /** Bytes waiting in the queue. */
  get queuedBytes(): number {
    return this.bytes;
  }

  get queuedMessages(): number {
    return this.queue.length;
  }

  /** Descriptors held by queued messages. */
  get queuedFds(): number {
    return this.fdsHeld;
  }

  /** The queue has passed one of its bounds: its reader should stop producing output. */
  get congested(): boolean {
    return this.bytes > this.bounds.maxBytes || this.queue.length > this.bounds.maxMessages || this.fdsHeld > this.bounds.maxFds;
  }

  /** Writes one message; `parts` may be reused by the caller as soon as this returns. */
  write(parts: readonly Uint8Array[], fds: readonly number[]): void {
    if (this.closed) {
      closeQuietly(fds);
      return;
    }
    if (this.heldLength > 0) {
      this.sendHeld();
      if (this.closed) {
        closeQuietly(fds);
        return;
      }
    }
    if (this.holdNext && this.queue.length === 0 && fds.length === 0) {
      this.heldLength = this.sender.stage(parts);
      if (this.heldLength > 0) return;
    }
    let total = 0;
    for (let i = 0; i < parts.length; i++) total += parts[i]!.byteLength;
    let sent = 0;
    if (this.queue.length === 0) {
      try {
        sent = this.sender.sendSome(this.fd, parts, fds);
      } catch (err) {
        closeQuietly(fds);
        this.onError(err as Error);
        return;
      }
      if (sent > 0) closeQuietly(fds);
      if (sent === total) return;
    }
    // Keep a private copy of what is left: callers reuse their buffers.
    const rest = concatFrom(parts, sent);
    const held = sent > 0 ? [] : fds;
    this.queue.push({ parts: [rest], total: rest.byteLength, sent: 0, fds: held });
    this.bytes += rest.byteLength;
    this.fdsHeld += held.length;
    this.watch()?.wantWritable(true);
  }

  /** Hands the held message to the caller to send (its length; 0 when none is held). */
  takeHeld(): number {
    const n = this.heldLength;
    this.heldLength = 0;
    return n;
  }

  /**
   * What became of a held message of `length` bytes that the caller sent: `result` bytes went
   * out, or -errno. The rest is queued (a full socket), or the error is fatal.
   */
  heldSent(length: number, result: number): void {
    if (result === length || this.closed) return;
    if (result < 0 && result !== -EAGAIN) {
      this.onError(new SyscallError('sendmsg', -result));
      return;
    }
    const rest = this.sender.stagedCopy(Math.max(result, 0), length);
    this.queue.push({ parts: [rest], total: rest.byteLength, sent: 0, fds: [] });
    this.bytes += rest.byteLength;
    this.watch()?.wantWritable(true);
  }

  /** Sends the held message now, if there is one. */
  sendHeld(): void {
    const length = this.takeHeld();
    if (length === 0) return;
    let result: number;
    try {
      result = this.sender.sendStaged(this.fd);
    } catch (err) {
      this.onError(err as Error);
      return;
    }
    this.heldSent(length, result === 0 ? -EAGAIN : result);
  }

  /** The socket became writable: send what fits. */
  flush(): void {
    if (this.heldLength > 0) this.sendHeld();
    while (this.queue.length > 0 && !this.closed) {
      const head = this.queue[0]!;
      let n: number;
      try {
        n = this.sender.sendSome(this.fd, head.parts, head.fds, head.sent);
      } catch (err) {
        this.onError(err as Error);
        return;
      }
      if (n === 0) return;
      if (head.fds.length) {
        closeQuietly(head.fds);
        this.fdsHeld -= head.fds.length;
        head.fds = [];
      }
      head.sent += n;
      this.bytes -= n;
      if (head.sent < head.total) return;
      this.queue.shift();
    }
    if (this.closed) return;
    this.watch()?.wantWritable(false);
    this.onDrained?.();
  }

  /** Drops queued output and closes the fds it still holds. */
  close(): void {
    this.closed = true;
    this.heldLength = 0;
    for (const p of this.queue.splice(0)) closeQuietly(p.fds);
    this.bytes = 0;
    this.fdsHeld = 0;
  }
}

function concatFrom(parts: readonly Uint8Array[], skip: number): Uint8Array {
  const total = parts.reduce((n, p) => n + p.byteLength, 0);
  const out = new Uint8Array(total - skip);
  let at = 0;
  for (const p of parts) {
    if (skip >= p.byteLength) {
      skip -= p.byteLength;
      continue;
    }
    out.set(p.subarray(skip), at);
    at += p.byteLength - skip;
    skip = 0;
  }
  return out;
}
