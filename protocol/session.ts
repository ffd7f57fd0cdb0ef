/**
 * One client's conversation with a device. A table maps each command to its handler
 * (protocol/handlers/); `handle` is the single place that turns a handler's result or error
 * into a reply (request id echoed, positive errno), honours NO_REPLY, and closes every
 * received fd that no handler took over. Replies from the client to our own requests
 * (DMA_READ/WRITE) are routed to whoever waits for them.
 */
import { decodeVersion, encodeVersion } from './codec.ts';
import { Errno, VfioUserError, invalid } from './errors.ts';
import type { Frame, Outgoing } from './framing.ts';
import { type Handler, type HandlerContext, type HandlerResult, SessionStats } from './handlers/context.ts';
import { dmaMap, dmaUnmap } from './handlers/dma.ts';
import { regionRead, regionWrite, regionWriteMulti } from './handlers/access.ts';
import { RegisterScratch } from './handlers/register-scratch.ts';
import { deviceFeature, deviceReset, migDataRead, migDataWrite } from './handlers/features.ts';
import { deviceInfo, irqInfo, regionInfo, regionIoFds } from './handlers/info.ts';
import { setIrqs } from './handlers/irqs.ts';
import type { Header } from './header.ts';
import { SyscallError, closeQuietly } from './native/libc.ts';
import { PeerRequests } from './peer-requests.ts';
import { negotiate, type Negotiated } from './version.ts';
import { Command, FLAG_ERROR, FLAG_NO_REPLY, HEADER_SIZE, MessageType, RegionAccess, TYPE_MASK, commandName } from './wire.ts';

export { SessionStats };

/** Commands whose requests may carry fds; any other request with fds is EINVAL. */
const TAKES_FDS = new Set<number>([Command.DMA_MAP, Command.DEVICE_SET_IRQS]);

/** Each command's handler, indexed by command number: looked up for every message. */
const HANDLERS: (Handler | undefined)[] = [];
for (const [command, handler] of [
  [Command.DMA_MAP, dmaMap],
  [Command.DMA_UNMAP, dmaUnmap],
  [Command.DEVICE_GET_INFO, deviceInfo],
  [Command.DEVICE_GET_REGION_INFO, regionInfo],
  [Command.DEVICE_GET_REGION_IO_FDS, regionIoFds],
  [Command.DEVICE_GET_IRQ_INFO, irqInfo],
  [Command.DEVICE_SET_IRQS, setIrqs],
  [Command.REGION_READ, regionRead],
  [Command.REGION_WRITE, regionWrite],
  [Command.REGION_WRITE_MULTI, regionWriteMulti],
  [Command.DEVICE_RESET, deviceReset],
  [Command.DEVICE_FEATURE, deviceFeature],
  [Command.MIG_DATA_READ, migDataRead],
  [Command.MIG_DATA_WRITE, migDataWrite],
] as const) {
  HANDLERS[command] = handler;
}

const EMPTY = new Uint8Array(0);

export type SessionResources = Omit<HandlerContext, 'stats' | 'negotiated' | 'registers'>;

export class Session {
  readonly stats = new SessionStats();
  /** Requests we send to the client (DMA_READ/WRITE) and their replies. */
  readonly peer: PeerRequests;
  private negotiatedWith: Negotiated | null = null;
  private readonly ctx: HandlerContext;

  constructor(res: SessionResources, send: (out: Outgoing) => void) {
    this.peer = new PeerRequests(send);
    this.ctx = {
      ...res,
      stats: this.stats,
      registers: new RegisterScratch(),
      negotiated: () => {
        if (!this.negotiatedWith) throw new Error('handler ran before VERSION');
        return this.negotiatedWith;
      },
    };
  }

  get negotiated(): Negotiated | null {
    return this.negotiatedWith;
  }

  /** Largest message we accept: a full data transfer plus the biggest fixed part. */
  maxMessageSize(): number {
    return HEADER_SIZE + RegionAccess.size + this.ctx.limits.maxDataXferSize;
  }

  /**
   * Handles one message and returns the reply to send (null with NO_REPLY, and for replies to
   * our own requests). Never throws for a bad message.
   */
  handle(frame: Frame): Outgoing | null {
    const h = frame.header;
    this.stats.commands.add(h.command);
    if ((h.flags & TYPE_MASK) === MessageType.REPLY) {
      if (!this.peer.accept(frame)) {
        this.stats.errors++;
        this.ctx.log.warn(`dropped an unsolicited reply (id ${h.id}, ${commandName(h.command)})`);
      }
      return null;
    }
    let result: HandlerResult;
    try {
      result = this.dispatch(frame);
    } catch (err) {
      closeQuietly(frame.fds);
      return this.errorReply(h, err);
    }
    closeQuietly(frame.fds);
    if (h.flags & FLAG_NO_REPLY) {
      closeQuietly(result.fds ?? []);
      return null;
    }
    return {
      header: { id: h.id, command: h.command, size: HEADER_SIZE + result.body.byteLength, flags: MessageType.REPLY, error: 0 },
      body: result.body,
      fds: result.fds ?? [],
    };
  }

  private dispatch(frame: Frame): HandlerResult {
    const h = frame.header;
    if ((h.flags & TYPE_MASK) !== MessageType.COMMAND) invalid(`message type ${h.flags & TYPE_MASK} is neither command nor reply`);
    if (h.flags & ~(TYPE_MASK | FLAG_NO_REPLY | FLAG_ERROR)) invalid(`unknown header flags 0x${h.flags.toString(16)}`);
    if (h.command === Command.VERSION) return this.version(frame);
    const handler = HANDLERS[h.command];
    if (!handler) throw new VfioUserError(Errno.ENOSYS, `${commandName(h.command)} is not a command a client sends`);
    if (!this.negotiatedWith) invalid(`${commandName(h.command)} before VERSION`);
    if (frame.fds.length > 0 && !TAKES_FDS.has(h.command)) {
      invalid(`${commandName(h.command)} does not take file descriptors (${frame.fds.length} attached)`);
    }
    return handler(this.ctx, frame);
  }

  /** The one place an error becomes a reply: request id echoed, positive errno. */
  errorReply(h: Header, err: unknown): Outgoing | null {
    this.stats.errors++;
    // A failed system call (EMFILE, ENOMEM...) is that request's errno, not a bug in the server.
    const errno = err instanceof VfioUserError || err instanceof SyscallError ? err.errno : Errno.EINVAL;
    const what = err instanceof Error ? err.message : String(err);
    if (err instanceof VfioUserError || err instanceof SyscallError) this.ctx.log.warn(`${commandName(h.command)} (id ${h.id}) refused: ${what}`);
    else this.ctx.log.error(`${commandName(h.command)} (id ${h.id}) failed unexpectedly: ${err instanceof Error ? err.stack : what}`);
    if (h.flags & FLAG_NO_REPLY) return null;
    return {
      header: { id: h.id, command: h.command, size: HEADER_SIZE, flags: MessageType.REPLY | FLAG_ERROR, error: errno },
      body: EMPTY,
      fds: [],
    };
  }

  private version(frame: Frame): HandlerResult {
    if (this.negotiatedWith) invalid('VERSION sent twice');
    if (frame.fds.length) invalid('VERSION does not take file descriptors');
    const req = decodeVersion(frame.body);
    const { reply, negotiated } = negotiate(req, this.ctx.limits);
    this.negotiatedWith = negotiated;
    this.ctx.log.info(
      `client speaks ${req.major}.${req.minor}; client limits: max_msg_fds ${negotiated.clientMaxMsgFds}, max_data_xfer_size ${negotiated.clientMaxDataXferSize}`,
    );
    return { body: encodeVersion(reply) };
  }

  /** The client is gone: fail every request we were waiting on. */
  close(reason: string): void {
    this.peer.close(reason);
  }
}
