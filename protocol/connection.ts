/**
 * One accepted socket: reads with fds, frames, hands each message to the session in order and
 * writes its reply.
 *
 * Event-loop design (numbers in ../shared/notes/koffi-and-node.md): the main thread waits with
 * libuv's epoll through koffi's uv_poll binding and then drains the socket with non-blocking
 * recvmsg calls — ~4.8 µs per round trip, against ~10.7 µs (and a parked threadpool thread per
 * pending call) for koffi's `.async` calls. After a burst it keeps polling for `spinMicros`
 * before going back to epoll, because clients (a vCPU doing MMIO, a benchmark) tend to send the
 * next request within microseconds, and an epoll wake-up plus a thread wake-up on this kind of
 * VM costs far more than a few non-blocking recvmsg calls.
 */
import { type BadHeaderError, type Frame, FrameDecoder } from './framing.ts';
import { encodeHeader } from './header.ts';
import type { Logger } from './log.ts';
import { MessageWriter } from './message-writer.ts';
import { FdReceiver, FdSender, type FdWatch, closeQuietly, shutdownSocket, close as closeFd, watchFd } from './native/libc.ts';
import type { Outgoing } from './session.ts';
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

  constructor(
    readonly fd: number,
    private readonly handlers: ConnectionHandlers,
    private readonly opts: ConnectionOptions,
  ) {
    this.receiver = new FdReceiver(opts.maxFds);
    this.writer = new MessageWriter(fd, new FdSender(opts.maxSendFds ?? 16), () => this.watch, (err) =>
      this.close(`send failed: ${err.message}`),
    );
    this.decoder = new FrameDecoder(opts.maxMessageSize);
    this.spinNanos = BigInt(Math.round((opts.spinMicros ?? 0) * 1000));
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  start(): void {
    this.watch = watchFd(this.fd, (ev) => {
      if (ev.writable) this.writer.flush();
      // koffi can report a hang-up with every flag clear: anything but pure writability drains.
      if (ev.readable || ev.hangup || !ev.writable) this.drain();
    });
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
    while (!this.closed) {
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
        this.close(this.decoder.buffered > 0 ? `client disconnected in the middle of a message (${this.decoder.buffered} bytes pending)` : 'client disconnected');
        return;
      }
      const { frames, error } = this.decoder.push(this.buffer.subarray(0, got.bytes), got.fds);
      for (const frame of frames) {
        const reply = this.handlers.onFrame(frame);
        if (reply) this.send(reply);
        if (this.closed) return;
      }
      if (error) {
        const reply = this.handlers.onBadHeader(error);
        if (reply) this.send(reply);
        this.close(`bad message header: ${error.message}`);
        return;
      }
      if (this.spinNanos > 0n) spinUntil = process.hrtime.bigint() + this.spinNanos;
    }
  }

  /** Closes the socket (idempotent), releasing any fds of an unfinished message. */
  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.watch?.stop();
    this.watch = null;
    this.writer.close();
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
