/**
 * The server's side of one accepted socket: hands each message to the session in order and
 * sends its reply, over the message channel (channel.ts). What is the server's own lives here:
 * a peer that half-closed gets its last replies before we close, and every way the connection
 * ends is reported once, with its reason.
 */
import { type BadHeaderError, type Frame, type MessageSizeLimit, type Outgoing } from './framing.ts';
import type { Logger } from './log.ts';
import { MessageChannel, type WaitMechanism } from './channel.ts';
import type { QueueBounds } from './message-writer.ts';

export interface ConnectionHandlers {
  /** Handles one message and returns the reply to send, if any. */
  onFrame(frame: Frame): Outgoing | null;
  /** A header the stream cannot get past: an error reply to send before closing, if any. */
  onBadHeader(err: BadHeaderError): Outgoing | null;
  /** Called once, after the socket is closed. */
  onClose(reason: string): void;
}

export interface ConnectionOptions {
  /** Bounds each message (the session: its limit changes with VERSION). */
  readonly limit: MessageSizeLimit;
  /** Most fds accepted in one read; more is a fatal stream error (they cannot be paired). */
  readonly maxFds: number;
  /** Most fds we send with one message. */
  readonly maxSendFds?: number;
  /** Longest sleep for the client's next request, in µs (request-wait.ts; 0: never). */
  readonly waitMicros?: number;
  /** How to sleep (channel.ts): io_uring where the kernel has it (default), or recvmsg. */
  readonly waitWith?: WaitMechanism;
  /** The server's warm-up drives this connection from its own thread (channel.ts). */
  readonly rehearsal?: boolean;
  /** Bounds on unsent output: past one, requests are not read until the peer drains it. */
  readonly output?: QueueBounds;
  /** A peer that half-closed has this long to read its last replies (default 5 s). */
  readonly lingerMs?: number;
  readonly log: Logger;
}

export class Connection {
  private readonly channel: MessageChannel;
  private closed = false;
  private lingerTimer: NodeJS.Timeout | null = null;

  constructor(
    readonly fd: number,
    private readonly handlers: ConnectionHandlers,
    private readonly opts: ConnectionOptions,
  ) {
    this.channel = new MessageChannel(
      fd,
      {
        onFrame: (frame) => {
          const reply = handlers.onFrame(frame);
          if (reply) this.send(reply);
        },
        onBadHeader: (err) => {
          const reply = handlers.onBadHeader(err);
          if (reply) this.send(reply);
          this.close(`bad message header: ${err.message}`);
        },
        onEnd: () => this.endOfStream(),
        onFailure: (reason) => this.close(reason),
        onCongested: () =>
          opts.log.warn(
            `client is not reading its replies (${this.channel.queuedMessages} queued, ${this.channel.queuedBytes} bytes, ${this.channel.queuedFds} fds): its requests wait until it does`,
          ),
      },
      {
        limit: opts.limit,
        maxFds: opts.maxFds,
        maxSendFds: opts.maxSendFds,
        output: opts.output,
        waitMicros: opts.waitMicros,
        waitWith: opts.waitWith,
        rehearsal: opts.rehearsal,
        sharedReceiveBuffer: true,
      },
    );
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  /** Waits for the next request that were answered / timed out (see request-wait.ts). */
  get waitStats(): { readonly answered: number; readonly wasted: number } {
    return this.channel.waitStats;
  }

  start(): void {
    this.channel.start();
  }

  /** How the connection waits for requests ('none': no window, or a client in this process). */
  get waitMechanism(): WaitMechanism | 'none' {
    return this.channel.waitMechanism;
  }

  /** The same in words, for the log (why not io_uring, when it could not be used). */
  describeWait(): string {
    return this.channel.describeWait();
  }

  /** The warm-up's client, sending its next request as the connection waits (channel.ts). */
  rehearseWith(client: (() => void) | null): void {
    this.channel.beforeWait = client;
  }

  /** Handles what the socket holds now, without the event loop (the server's warm-up). */
  pump(): boolean {
    return this.channel.pump();
  }

  /**
   * Writes one message (queued if the socket is full; never blocks). Its fds are closed once
   * sent. A failed write (peer gone) closes the connection.
   */
  send(out: Outgoing): void {
    this.channel.send(out.header, out.body, out.fds);
  }

  /**
   * End of the peer's stream. It may only have shut down its sending side (shutdown(SHUT_WR))
   * and still be reading: what is queued for it is delivered first, for at most lingerMs.
   */
  private endOfStream(): void {
    const pending = this.channel.partialBytes;
    const reason = pending > 0 ? `client disconnected in the middle of a message (${pending} bytes pending)` : 'client disconnected';
    if (this.channel.queuedMessages === 0) {
      this.close(reason);
      return;
    }
    this.channel.onceDrained = () => this.close(`${reason} (after reading its last replies)`);
    const linger = this.opts.lingerMs ?? 5000;
    this.lingerTimer = setTimeout(() => this.close(`${reason}; its last replies were not read within ${linger} ms`), linger);
    this.lingerTimer.unref();
  }

  /** Closes the socket (idempotent), releasing any fds of an unfinished message. */
  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    try {
      this.channel.close();
    } catch (err) {
      this.opts.log.warn(`closing socket fd ${this.fd}: ${(err as Error).message}`);
    }
    this.handlers.onClose(reason);
  }
}
