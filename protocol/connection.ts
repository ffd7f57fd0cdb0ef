/**
 * One accepted socket: reads with fds, frames, hands each message to the session in order and
 * writes its reply.
 *
 * Event-loop design (measured on a 2-vCPU VM): the main thread waits with
 * libuv's epoll through koffi's uv_poll binding and then drains the socket with non-blocking
 * recvmsg calls — ~4.8 µs per round trip, against ~10.7 µs (and a parked threadpool thread per
 * pending call) for koffi's `.async` calls. After a burst it keeps polling for `spinMicros`
 * before going back to epoll, because clients (a vCPU doing MMIO, a benchmark) tend to send the
 * next request within microseconds, and an epoll wake-up plus a thread wake-up on this kind of
 * VM costs far more than a few non-blocking recvmsg calls.
 */
import { type BadHeaderError, type Frame, FrameDecoder, type Outgoing } from './framing.ts';
import { encodeHeader } from './header.ts';
import type { Logger } from './log.ts';
import { MessageWriter, type QueueBounds } from './message-writer.ts';
import { FdReceiver, FdSender, type FdWatch, closeQuietly, shutdownSocket, close as closeFd, watchFd } from './native/libc.ts';
import { HEADER_SIZE } from './wire.ts';

export interface ConnectionHandlers {
  /** Handles one message and returns the reply to send, if any. */
  onFrame(frame: Frame): Outgoing | null;
  /** A header the stream cannot get past: an error reply to send before closing, if any. */
  onBadHeader(err: BadHeaderError): Outgoing | null;
  /** Called once, after the socket is closed. */
  onClose(reason: string): void;
}

export interface ConnectionOptions {
  readonly maxMessageSize: () => number;
  /** Most fds accepted in one read; more is a fatal stream error (they cannot be paired). */
  readonly maxFds: number;
  /** Most fds we send with one message. */
  readonly maxSendFds?: number;
  /** Busy-poll window after each burst, in microseconds (0 disables). */
  readonly spinMicros?: number;
  /** Bounds on unsent output: past one, requests are not read until the peer drains it. */
  readonly output?: QueueBounds;
  /** A peer that half-closed has this long to read its last replies (default 5 s). */
  readonly lingerMs?: number;
  readonly log: Logger;
}

const RECEIVE_BUFFER = 256 * 1024;

export class Connection {
  private readonly receiver: FdReceiver;
  private readonly writer: MessageWriter;
  private readonly buffer = Buffer.alloc(RECEIVE_BUFFER);
  private readonly header = Buffer.alloc(HEADER_SIZE);
  private readonly decoder: FrameDecoder;
  private readonly spinNanos: bigint;
  private watch: FdWatch | null = null;
  private closed = false;
  /** Reading stopped because our replies backed up; these frames were decoded but not handled. */
  private paused = false;
  private held: Frame[] = [];
  private heldError: BadHeaderError | undefined;
  /** The peer half-closed: its last replies are being delivered, then we close. */
  private ending = false;
  private lingerTimer: NodeJS.Timeout | null = null;

  constructor(
    readonly fd: number,
    private readonly handlers: ConnectionHandlers,
    private readonly opts: ConnectionOptions,
  ) {
    this.receiver = new FdReceiver(opts.maxFds);
    this.writer = new MessageWriter(
      fd,
      new FdSender(opts.maxSendFds ?? 16),
      () => this.watch,
      (err) => this.close(`send failed: ${err.message}`),
      opts.output,
    );
    this.writer.onDrained = () => this.resume();
    this.decoder = new FrameDecoder(opts.maxMessageSize);
    this.spinNanos = BigInt(Math.round((opts.spinMicros ?? 0) * 1000));
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  start(): void {
    this.watch = watchFd(
      this.fd,
      (ev) => {
        // koffi reports a hang-up with every flag clear. Reading tells when we read; while we
        // do not (replies backed up, or a half-closed peer), a write attempt tells (EPIPE).
        const quiet = !ev.readable && !ev.writable && !ev.hangup;
        if (ev.writable || (quiet && (this.paused || this.ending))) this.writer.flush();
        // Anything but pure writability drains.
        if (ev.readable || ev.hangup || !ev.writable) this.drain();
      },
      (err) => this.close(`internal error while serving: ${err.message}`),
    );
  }

  /**
   * Writes one message (queued if the socket is full; never blocks). Its fds are closed once
   * sent. A failed write (peer gone) closes the connection.
   */
  send(out: Outgoing): void {
    encodeHeader(out.header, this.header);
    this.writer.write(out.body.byteLength ? [this.header, out.body] : [this.header], out.fds);
  }

  private drain(): void {
    let spinUntil = 0n;
    while (!this.closed && !this.paused && !this.ending) {
      let got;
      try {
        got = this.receiver.recv(this.fd, this.buffer, 0, this.buffer.length);
      } catch (err) {
        this.close(`receive failed: ${(err as Error).message}`);
        return;
      }
      if (got === null) {
        if (spinUntil === 0n || process.hrtime.bigint() >= spinUntil) return;
        continue;
      }
      if (got.bytes === 0) {
        closeQuietly(got.fds);
        this.endOfStream();
        return;
      }
      const { frames, error } = this.decoder.push(this.buffer.subarray(0, got.bytes), got.fds);
      if (!this.handleFrames(frames, error)) return;
      if (this.spinNanos > 0n) spinUntil = process.hrtime.bigint() + this.spinNanos;
    }
  }

  /**
   * Handles frames in order; false when it had to stop: the connection closed, or the peer's
   * unread replies passed a bound (the rest wait, and reading stops, until it reads them).
   */
  private handleFrames(frames: Frame[], error: BadHeaderError | undefined): boolean {
    for (let i = 0; i < frames.length; i++) {
      const reply = this.handlers.onFrame(frames[i]!);
      if (reply) this.send(reply);
      if (this.closed) return false;
      if (this.writer.congested && !this.closed) {
        this.pause(frames, i + 1, error);
        return false;
      }
    }
    if (error) {
      const reply = this.handlers.onBadHeader(error);
      if (reply) this.send(reply);
      this.close(`bad message header: ${error.message}`);
      return false;
    }
    return true;
  }

  private pause(frames: Frame[], from: number, error: BadHeaderError | undefined): void {
    // The frames left wait with copies of their bodies: the receive buffer will be reused.
    this.held = frames.slice(from).map((f) => ({ header: f.header, body: f.body.slice(), fds: f.fds }));
    this.heldError = error;
    this.paused = true;
    this.watch?.wantReadable(false);
    this.opts.log.warn(
      `client is not reading its replies (${this.writer.queuedMessages} queued, ${this.writer.queuedBytes} bytes, ${this.writer.queuedFds} fds): its requests wait until it does`,
    );
  }

  /** The peer read everything we had queued: handle what was held, then read again. */
  private resume(): void {
    if (!this.paused || this.closed) return;
    this.paused = false;
    const held = this.held;
    const error = this.heldError;
    this.held = [];
    this.heldError = undefined;
    if (!this.handleFrames(held, error)) return;
    this.watch?.wantReadable(true);
    this.drain();
  }

  /**
   * End of the peer's stream. It may only have shut down its sending side (shutdown(SHUT_WR))
   * and still be reading: what is queued for it is delivered first, for at most lingerMs.
   */
  private endOfStream(): void {
    const reason = this.decoder.buffered > 0 ? `client disconnected in the middle of a message (${this.decoder.buffered} bytes pending)` : 'client disconnected';
    if (this.writer.queuedMessages === 0) {
      this.close(reason);
      return;
    }
    this.ending = true;
    this.watch?.wantReadable(false);
    this.writer.onDrained = () => this.close(`${reason} (after reading its last replies)`);
    const linger = this.opts.lingerMs ?? 5000;
    this.lingerTimer = setTimeout(() => this.close(`${reason}; its last replies were not read within ${linger} ms`), linger);
    this.lingerTimer.unref();
  }

  /** Closes the socket (idempotent), releasing any fds of an unfinished message. */
  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    this.watch?.stop();
    this.watch = null;
    this.writer.close();
    for (const f of this.held.splice(0)) closeQuietly(f.fds);
    closeQuietly(this.decoder.takeOrphanFds());
    shutdownSocket(this.fd);
    try {
      closeFd(this.fd);
    } catch (err) {
      this.opts.log.warn(`closing socket fd ${this.fd}: ${(err as Error).message}`);
    }
    this.handlers.onClose(reason);
  }
}
