/**
 * One Unix socket carrying vfio-user messages with their fds, both ways: the one message
 * channel under the server's connection (connection.ts) and the client (client.ts).
 *
 * Reading: the event loop (libuv's epoll, through koffi's uv_poll binding) says the socket is
 * readable; the channel reads what is there with non-blocking recvmsg, frames it and hands each
 * message to its owner in order. With a wait window (request-wait.ts) it then sleeps for the
 * next request instead of going back to epoll. Where the kernel has io_uring, the reply to the
 * request just delivered is held back and one io_uring_enter sends it and waits
 * (native/request-ring.ts): one system call per request, and no wake-up when the peer reads
 * the reply. Elsewhere the reply goes out at once and the channel sleeps in recvmsg, made
 * blocking for that (libuv made it non-blocking; every call that must not block says
 * MSG_DONTWAIT itself) with the window as its receive timeout.
 *
 * Writing: ordered and non-blocking (message-writer.ts). When the owner's peer stops reading its
 * replies and the queue passes its bounds, the channel stops taking messages until the queue
 * drains (the rest of the read waits, copied): a client cannot make us hold unbounded output.
 */
import { type BadHeaderError, type Frame, FrameDecoder, type MessageSizeLimit } from './framing.ts';
import { type Header, encodeHeader } from './header.ts';
import { MessageWriter, type QueueBounds } from './message-writer.ts';
import { EAGAIN, EINTR, type FdWatch, SyscallError, closeQuietly, close as closeFd, peerPid, setNonBlocking, setReceiveTimeout, shutdownSocket, watchFd } from './native/libc.ts';
import { FdReceiver, FdSender, type Received } from './native/fd-messages.ts';
import { RequestRing } from './native/request-ring.ts';
import { RequestWait } from './request-wait.ts';
import { HEADER_SIZE } from './wire.ts';

export interface ChannelOwner {
  /** One whole message. Its body is a view of the receive buffer: valid until this returns. */
  onFrame(frame: Frame): void;
  /** A header the stream cannot get past; the owner answers it if it can, then closes. */
  onBadHeader(err: BadHeaderError): void;
  /** The peer's end of stream (it may still read: shutdown(SHUT_WR)); reading has stopped. */
  onEnd(): void;
  /** Reading or writing failed (the peer is gone, a bad fd message); the owner closes. */
  onFailure(reason: string): void;
  /** Reading stopped because the peer does not read its replies (for the owner's log). */
  onCongested?(): void;
}

export interface ChannelOptions {
  /** Largest acceptable message, header included; asked per message (it changes on VERSION). */
  readonly limit: MessageSizeLimit;
  /** Most fds accepted with one read (more is a fatal stream error: they cannot be paired). */
  readonly maxFds: number;
  /** Most fds sent with one message. */
  readonly maxSendFds?: number;
  /** Bounds on unsent output; past one, reading stops until the peer drains it. */
  readonly output?: QueueBounds;
  /** Longest sleep for the next request after a reply, in µs (0: never). */
  readonly waitMicros?: number;
  /** How to sleep: with io_uring where the kernel has it (the default), or in recvmsg. */
  readonly waitWith?: WaitMechanism;
  /**
   * The server's warm-up, whose client is this very thread: with io_uring its waits take only a
   * request already there (the ring's path runs, nothing blocks); without, it does not wait.
   */
  readonly rehearsal?: boolean;
  /** Read into the buffer every such channel of this thread shares (the server's connections). */
  readonly sharedReceiveBuffer?: boolean;
}

export type WaitMechanism = 'io_uring' | 'recvmsg';

/** The shared buffer: a read takes up to this much (a large message is assembled across reads). */
const RECEIVE_BUFFER = 256 * 1024;
/**
 * A channel's own buffer (clients, nested reads): smaller, so it comes from malloc's heap rather
 * than a mapping of its own, and a process with many clients does not hold 256 KiB for each.
 */
const OWN_RECEIVE_BUFFER = 64 * 1024;

/**
 * The receive buffer the server's channels share. A read is framed and delivered before the
 * next read, and whatever outlives a delivery (an unfinished tail, held frames) is copied, so
 * one buffer per thread serves every connection: 32 devices with a client each would otherwise
 * hold 32 × 256 KiB. A read on a shared-buffer channel during another one's delivery (a nested
 * read) gets a buffer of its own.
 */
let sharedBuffer: Buffer | null = null;
let sharedBufferBusy = false;

export class MessageChannel {
  private readonly receiver: FdReceiver;
  private readonly sender: FdSender;
  private readonly writer: MessageWriter;
  private readonly decoder: FrameDecoder;
  private readonly shared: boolean;
  private ownBuffer: Buffer | null = null;
  /** The header of the message being sent (encoded here: no allocation per message). */
  private readonly header = Buffer.alloc(HEADER_SIZE);
  private readonly headerOnly: Uint8Array[] = [this.header];
  private readonly headerAndBody: Uint8Array[] = [this.header, this.header];
  private readonly wait: RequestWait;
  private readonly rehearsal: boolean;
  private watch: FdWatch | null = null;
  private readonly waitWith: WaitMechanism;
  /** The wait's io_uring (null: waits are made in recvmsg, or not at all). */
  private ring: RequestRing | null = null;
  private closed = false;
  /** Reading stopped: replies backed up (held frames wait), or the peer ended its stream. */
  private congested = false;
  private ended = false;
  private held: Frame[] = [];
  private heldError: BadHeaderError | undefined;

  constructor(
    readonly fd: number,
    private readonly owner: ChannelOwner,
    opts: ChannelOptions,
  ) {
    this.receiver = new FdReceiver(opts.maxFds);
    this.sender = new FdSender(opts.maxSendFds ?? 16);
    this.writer = new MessageWriter(fd, this.sender, () => this.watch, (err) => this.owner.onFailure(`send failed: ${err.message}`), opts.output);
    this.writer.onDrained = () => this.drained();
    this.decoder = new FrameDecoder(opts.limit);
    this.shared = opts.sharedReceiveBuffer ?? false;
    this.rehearsal = opts.rehearsal ?? false;
    this.waitWith = opts.waitWith ?? 'io_uring';
    // A peer in this very process (a test, a tool) cannot send while we sleep: never wait for
    // it, but in the warm-up's rehearsal, whose waits do not block.
    const wait = new RequestWait(opts.waitMicros && (this.rehearsal || peerPid(fd) !== process.pid) ? opts.waitMicros : 0);
    if (wait.enabled && this.waitWith === 'io_uring') {
      this.ring = RequestRing.open(fd, this.sender.msghdr, this.receiver.msghdr, wait.sliceMicros);
    }
    this.wait = this.rehearsal && !this.ring ? new RequestWait(0) : wait;
  }

  /** How this channel waits for requests: 'none' until it started, or with no window. */
  get waitMechanism(): WaitMechanism | 'none' {
    if (!this.wait.enabled || !this.watch) return 'none';
    return this.ring ? 'io_uring' : 'recvmsg';
  }

  /** waitMechanism in words, with the reason io_uring was not used when it was asked for. */
  describeWait(): string {
    const how = this.waitMechanism;
    if (how === 'none') return 'no wait for requests';
    if (how === 'io_uring') return 'waits for requests with io_uring';
    if (this.waitWith === 'recvmsg') return 'waits for requests in recvmsg';
    return `waits for requests in recvmsg (io_uring unusable: ${RequestRing.unavailable})`;
  }

  get isWatched(): boolean {
    return this.watch !== null;
  }

  /** Replies the peer has not read yet, and what they hold. */
  get queuedMessages(): number {
    return this.writer.queuedMessages;
  }

  get queuedBytes(): number {
    return this.writer.queuedBytes;
  }

  get queuedFds(): number {
    return this.writer.queuedFds;
  }

  /** Bytes of an unfinished message read so far. */
  get partialBytes(): number {
    return this.decoder.buffered;
  }

  /** Waits for the next request that were answered / timed out. */
  get waitStats(): { readonly answered: number; readonly wasted: number } {
    return { answered: this.wait.hits, wasted: this.wait.misses };
  }

  /**
   * Rehearsal only: the warm-up's client, called as the channel sits down to wait for the next
   * request, sends it then, as a real client's request would arrive during the wait. The wait
   * then takes the path it takes in service: the request is there, the receive completes.
   */
  beforeWait: (() => void) | null = null;

  /** Called once when everything queued has been read by the peer (then cleared). */
  onceDrained: (() => void) | null = null;

  /** Joins the event loop: messages are delivered as they come. */
  start(): void {
    if (this.watch || this.closed) return;
    this.watch = watchFd(
      this.fd,
      (ev) => {
        // Every flag clear is libuv's error status (POLLERR: the peer reset the connection),
        // after which libuv has stopped watching: read until the socket says how it ended.
        // While we do not read (replies backed up, a half-closed peer), a write attempt tells
        // (EPIPE).
        const error = !ev.readable && !ev.writable && !ev.hangup;
        if (ev.writable || (error && (this.congested || this.ended))) this.writer.flush();
        if (ev.readable || ev.hangup || error) this.drain(error);
      },
      (err) => this.owner.onFailure(`internal error while serving: ${err.message}`),
    );
    if (this.wait.enabled && !this.ring) {
      // uv_poll made the socket non-blocking; the timed wait needs it blocking (every other
      // call passes MSG_DONTWAIT), with the window as its receive timeout.
      setNonBlocking(this.fd, false);
      setReceiveTimeout(this.fd, this.wait.windowMicros);
    }
  }

  /** Sends one message (queued if the socket is full; never blocks). Its fds are closed once sent. */
  send(header: Header, body: Uint8Array, fds: readonly number[]): void {
    encodeHeader(header, this.header);
    let parts = this.headerOnly;
    if (body.byteLength) {
      parts = this.headerAndBody;
      parts[1] = body;
    }
    this.writer.write(parts, fds);
    this.headerAndBody[1] = this.header;
  }

  /**
   * Sends one message now, blocking this thread while the socket is full (for a synchronous
   * caller that owns its thread). The caller's fds are sent as they are and stay the caller's.
   */
  sendNow(header: Header, body: Uint8Array, fds: readonly number[]): void {
    encodeHeader(header, this.header);
    this.writer.sendHeld();
    this.sender.sendAll(this.fd, body.byteLength ? [this.header, body] : this.headerOnly, fds);
  }

  /** Sends raw bytes now, framed or not (tests send malformed messages with this). */
  sendBytesNow(bytes: Uint8Array, fds: readonly number[]): void {
    this.writer.sendHeld();
    this.sender.sendAll(this.fd, [bytes], fds);
  }

  /**
   * One read and the delivery of its messages: non-blocking, or with `block` waiting up to the
   * socket's receive timeout. False when nothing came, reading stopped or the channel closed.
   */
  readOnce(block = false): boolean {
    if (this.closed || this.congested || this.ended) return false;
    const useShared = this.shared && !sharedBufferBusy;
    const buffer = useShared ? (sharedBuffer ??= Buffer.alloc(RECEIVE_BUFFER)) : (this.ownBuffer ??= Buffer.alloc(OWN_RECEIVE_BUFFER));
    let got;
    try {
      if (block && this.ring) {
        got = this.receiveWithRing(this.ring, buffer);
      } else {
        this.writer.sendHeld();
        got = this.receiver.recv(this.fd, buffer, 0, buffer.length, block);
      }
    } catch (err) {
      this.owner.onFailure(`receive failed: ${(err as Error).message}`);
      return false;
    }
    if (got === null) return false;
    if (got.bytes === 0) {
      closeQuietly(got.fds);
      this.ended = true;
      this.watch?.wantReadable(false);
      this.owner.onEnd();
      return false;
    }
    const { frames, error } = this.decoder.pushRead(buffer, got.bytes, got.fds);
    // With a ring, the reply is held for the wait that follows (or sent when drain stops).
    this.writer.holdNext = this.ring !== null;
    try {
      if (!useShared) return this.deliver(frames, 0, error);
      sharedBufferBusy = true;
      try {
        return this.deliver(frames, 0, error);
      } finally {
        sharedBufferBusy = false;
      }
    } finally {
      this.writer.holdNext = false;
    }
  }

  /** The held reply out and the next request in, with one io_uring_enter; null when none came. */
  private receiveWithRing(ring: RequestRing, buffer: Buffer): Received | null {
    this.receiver.prepare(buffer, 0, buffer.length);
    this.beforeWait?.();
    const held = this.writer.takeHeld();
    const came = ring.exchange(held > 0, !this.rehearsal);
    if (held > 0) this.writer.heldSent(held, ring.sendResult);
    if (!came) return null;
    const r = ring.recvResult;
    if (r === -EAGAIN || r === -EINTR) return null;
    if (r < 0) throw new SyscallError('recvmsg', -r);
    return this.receiver.finish(r);
  }

  /**
   * Delivers what one read brings, then (with a wait window) sleeps for the next request (in
   * the ring, sending the held reply, or in recvmsg). Whatever stays unread, epoll reports
   * again: its watch is level-triggered. After an error event (`toTheEnd`) it is not, and
   * everything is read until the socket is empty.
   */
  private drain(toTheEnd = false): boolean {
    let waiting = false;
    let delivered = false;
    for (;;) {
      if (!this.readOnce(waiting)) {
        // A rehearsal's wait takes only what is there: finding nothing wastes nothing.
        if (waiting && this.isReading && !this.rehearsal) this.wait.wasted();
        break;
      }
      delivered = true;
      if (waiting) this.wait.answered();
      const now = performance.now();
      RequestWait.noteRequest(this, now);
      waiting = this.wait.shouldWait(this, now);
      if (!waiting && !toTheEnd) break;
    }
    // Back to the event loop: nothing held, nothing in flight in the ring.
    this.writer.sendHeld();
    this.ring?.endRun();
    this.wait.yielded();
    return delivered;
  }

  /**
   * What the event loop does when the socket is readable, called directly (the server's
   * warm-up runs the path clients take without an event loop). True when messages came.
   */
  pump(): boolean {
    return this.drain(false);
  }

  private get isReading(): boolean {
    return !this.closed && !this.congested && !this.ended;
  }

  /**
   * Hands frames[from..] to the owner in order. False when it had to stop: the channel closed,
   * or the peer's unread replies passed a bound (the rest are held until it reads them).
   */
  private deliver(frames: Frame[], from: number, error: BadHeaderError | undefined): boolean {
    for (let i = from; i < frames.length; i++) {
      this.owner.onFrame(frames[i]!);
      if (this.closed) return false;
      if (this.writer.congested) {
        this.hold(frames, i + 1, error);
        return false;
      }
    }
    if (error) {
      this.owner.onBadHeader(error);
      return false;
    }
    return true;
  }

  private hold(frames: Frame[], from: number, error: BadHeaderError | undefined): void {
    // Copies of the bodies: the receive buffer will be reused.
    this.held = frames.slice(from).map((f) => ({ header: f.header, body: f.body.slice(), fds: f.fds }));
    this.heldError = error;
    this.congested = true;
    this.watch?.wantReadable(false);
    this.owner.onCongested?.();
  }

  /** The peer read everything queued: deliver what was held, then read again. */
  private drained(): void {
    const waiter = this.onceDrained;
    this.onceDrained = null;
    waiter?.();
    if (!this.congested || this.closed) return;
    this.congested = false;
    const held = this.held;
    const error = this.heldError;
    this.held = [];
    this.heldError = undefined;
    if (!this.deliver(held, 0, error)) return;
    this.watch?.wantReadable(true);
    this.drain();
  }

  /** Closes the socket (idempotent), dropping queued output and the fds of unfinished messages. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.watch?.stop();
    this.watch = null;
    this.ring?.close();
    this.ring = null;
    this.writer.close();
    for (const f of this.held.splice(0)) closeQuietly(f.fds);
    closeQuietly(this.decoder.takeOrphanFds());
    shutdownSocket(this.fd);
    closeFd(this.fd);
  }
}
