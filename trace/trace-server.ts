/**
 * The control and trace channel: a Unix stream socket (mode 0600) beside the vfio-user socket
 * where host-side tests and humans watch the device's events, read and write its shared
 * memory, and read its registers and counters, while QEMU drives the device. Messages are
 * described in wire.ts.
 *
 * Nothing here may hurt the device server: a bad frame or a vanished peer closes that trace
 * client only, every request error becomes an `ok: false` reply, and a subscriber that reads
 * too slowly loses events (and is told how many) instead of growing our memory.
 */
import { removeStaleSocket, withPrivateUmask } from '../protocol/socket-file.ts';
import { checksumMemory } from './offload.ts';
import { lstatSync, unlinkSync } from 'node:fs';
import { type Server, type Socket, createServer } from 'node:net';
import type { RegionDescription } from '../protocol/served-device.ts';
import type { Logger } from '../protocol/log.ts';
import type { VfioUserServer } from '../protocol/server.ts';
import type { TracedEvent } from '../protocol/trace-bus.ts';
import { commandName } from '../protocol/wire.ts';
import { irqName, regionName } from './format.ts';
import {
  FrameDecoder,
  FrameError,
  MAX_REGION_BYTES,
  type RequestId,
  type ServerMessage,
  TRACE_EVENT_TYPES,
  type TraceDeviceInfo,
  type TraceStats,
  describeValue,
  encodeFrame,
  toIndex,
} from './wire.ts';

/** A client whose unsent output exceeds this loses events, and we stop reading its requests. */
export const MAX_BACKLOG_BYTES = 8 << 20;
/**
 * Requests answered later (checksums run in a worker) one client may have outstanding: past it,
 * its further requests wait unread, so it cannot queue unbounded hashing work.
 */
export const MAX_IN_FLIGHT = 4;
/** More trace clients than any human or test needs; each costs a socket and a backlog. */
const MAX_CLIENTS = 32;
/** How long a client we hung up on may take to read our last message before we cut it. */
const CLOSE_GRACE_MS = 500;

const OPS = ['subscribe', 'unsubscribe', 'read-region', 'write-region', 'checksum-region', 'registers', 'stats', 'info'] as const;

export interface TraceServerOptions {
  readonly socketPath: string;
  readonly server: VfioUserServer;
  readonly log: Logger;
}

export interface TraceServer {
  readonly socketPath: string;
  /** Trace clients connected now. */
  readonly clientCount: number;
  /** Says goodbye to every trace client, stops listening and removes the socket file. */
  close(): Promise<void>;
}

/**
 * Listens on opts.socketPath. A stale socket file nobody listens on is replaced; a live one
 * is a SyscallError EADDRINUSE naming the path, and a non-socket file EEXIST.
 */
export async function startTraceServer(opts: TraceServerOptions): Promise<TraceServer> {
  removeStaleSocket(opts.socketPath, '--trace-socket', 'trace server');
  const channel = new TraceChannel(opts);
  await channel.listen();
  return channel;
}

class TraceChannel implements TraceServer {
  private readonly net: Server;
  private readonly clients = new Set<TraceConnection>();
  private nextClient = 1;
  private stopBus: (() => void) | null = null;
  private encodeFailures = 0;
  private closed = false;

  constructor(readonly opts: TraceServerOptions) {
    this.net = createServer((socket) => this.accept(socket));
    this.net.on('error', (err) => opts.log.error(`trace socket: ${err.message}`));
  }

  get socketPath(): string {
    return this.opts.socketPath;
  }

  get clientCount(): number {
    return this.clients.size;
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      const failed = (err: NodeJS.ErrnoException) => reject(err);
      this.net.once('error', failed);
      // Node binds a path synchronously inside listen(): the file is born 0600.
      withPrivateUmask(() =>
        this.net.listen(this.opts.socketPath, () => {
          this.net.off('error', failed);
            this.opts.log.info(`trace channel listening on ${this.opts.socketPath}`);
          resolve();
        }),
      );
    });
  }

  private accept(socket: Socket): void {
    if (this.closed || this.clients.size >= MAX_CLIENTS) {
      const why = this.closed ? 'trace server shutting down' : `too many trace clients (limit ${MAX_CLIENTS})`;
      this.opts.log.warn(`refusing a trace client: ${why}`);
      socket.on('error', () => {});
      socket.end(encodeFrame({ closing: why } satisfies ServerMessage));
      setTimeout(() => socket.destroy(), CLOSE_GRACE_MS).unref();
      return;
    }
    const client = new TraceConnection(this.nextClient++, socket, this, this.opts.log);
    this.clients.add(client);
    socket.once('close', () => {
      this.clients.delete(client);
      this.updateBus();
      this.opts.log.info(`trace client ${client.id} gone`);
    });
    this.opts.log.info(`trace client ${client.id} connected`);
  }

  /** Listens to the bus only while someone is subscribed, so an idle channel costs nothing. */
  updateBus(): void {
    const wanted = [...this.clients].some((c) => c.subscribed);
    if (wanted && !this.stopBus) this.stopBus = this.opts.server.trace.subscribe((e) => this.broadcast(e));
    else if (!wanted && this.stopBus) {
      this.stopBus();
      this.stopBus = null;
    }
  }

  /** Encodes each event once, for every client that wants it. */
  private broadcast(event: TracedEvent): void {
    let frame: Buffer | undefined;
    for (const client of this.clients) {
      if (!client.wants(event.type)) continue;
      if (!frame) {
        try {
          frame = encodeFrame({ event } satisfies ServerMessage);
        } catch (err) {
          // A bug in whoever built the event; say so once in a while, never throw into the device.
          if (this.encodeFailures++ % 1000 === 0) this.opts.log.error(`cannot encode a ${event.type} event: ${(err as Error).message}`);
          return;
        }
      }
      client.deliver(event, frame);
    }
  }

  /** One request's result; throws an Error whose message becomes the `ok: false` reply. */
  run(client: TraceConnection, op: string, req: Record<string, unknown>): unknown {
    const { server } = this.opts;
    switch (op) {
      case 'subscribe': {
        const types = parseTypes(req.types);
        client.subscribe(types);
        this.updateBus();
        return { types: [...types] };
      }
      case 'unsubscribe':
        client.unsubscribe();
        this.updateBus();
        return null;
      case 'read-region': {
        const length = toIndex(req.length, 'length');
        const { memory, offset } = this.sharedRange(req, length);
        // A zero-copy view: it is packed (copied) into the reply before anything else runs.
        return memory.bytes(offset, length);
      }
      case 'write-region': {
        const data = req.data;
        if (!(data instanceof Uint8Array)) throw new TypeError(`data must be bytes (msgpack bin), got ${describeValue(data)}`);
        const { memory, offset } = this.sharedRange(req, data.length, true);
        memory.bytes(offset, data.length).set(data);
        return data.length;
      }
      case 'checksum-region': {
        // Any length: the hash runs in a worker thread (offload.ts), so the device
        // keeps answering its client meanwhile. Resolves later; the reply waits for it.
        const length = toIndex(req.length, 'length');
        const { memory, offset } = this.sharedRange(req, length, false, false);
        const algorithm = typeof req.algorithm === 'string' ? req.algorithm : 'sha256';
        return checksumMemory(memory, offset, length, algorithm).then((digest) => ({ algorithm, digest }));
      }
      case 'registers': {
        const device = server.device;
        if (!device.registerState) throw new Error(`${device.name} offers no register dump (its device model has no registerState())`);
        return device.registerState();
      }
      case 'stats':
        return this.stats();
      case 'info':
        return this.info();
      default:
        throw new Error(`unknown op ${describeValue(op)}; ops: ${OPS.join(', ')}`);
    }
  }

  /** Checks region, offset and length for read-region/write-region (no u64 overflow: bigint). */
  private sharedRange(req: Record<string, unknown>, length: number, write = false, limited = true): { memory: NonNullable<RegionDescription['memory']>; offset: number } {
    const device = this.opts.server.device;
    const index = toIndex(req.region, 'region');
    const offset = toIndex(req.offset, 'offset');
    const shared = device.regions.filter((r) => r.memory && r.size > 0n);
    const sharedList = shared.length ? shared.map((r) => `${r.index} (${regionName(r.index)})`).join(', ') : 'none';
    const region = device.regions.find((r) => r.index === index && r.size > 0n);
    const label = `region ${index} (${regionName(index)})`;
    if (!region) throw new RangeError(`${label} does not exist on ${device.name}; shared-memory regions: ${sharedList}`);
    if (!region.memory) throw new RangeError(`${label} traps every access and is not shared memory; read-region and write-region reach shared-memory regions only: ${sharedList}`);
    if (write ? !region.writable : !region.readable) throw new RangeError(`${label} is not ${write ? 'writable' : 'readable'}`);
    if (limited && length > MAX_REGION_BYTES) throw new RangeError(`${length} bytes exceeds the limit of ${MAX_REGION_BYTES} (16 MiB) per request; split it`);
    if (BigInt(offset) + BigInt(length) > region.size) {
      throw new RangeError(`[0x${offset.toString(16)}, +${length}) is outside ${label}, which is 0x${region.size.toString(16)} bytes (${sizeText(region.size)})`);
    }
    return { memory: region.memory, offset };
  }

  private stats(): TraceStats {
    const { server } = this.opts;
    const current = server.currentSession;
    const session = current ?? server.lastSession;
    const byKey = (m: Iterable<[number, number]> | undefined, name: (k: number) => string) =>
      Object.fromEntries([...(m ?? [])].map(([k, n]) => [name(k), n]));
    return {
      connected: current !== null,
      sessions: server.clientsServed,
      commands: byKey(session?.stats.commands, commandName),
      regionReads: byKey(session?.stats.regionReads, String),
      regionWrites: byKey(session?.stats.regionWrites, String),
      errors: session?.stats.errors ?? 0,
    };
  }

  private info(): TraceDeviceInfo {
    const d = this.opts.server.device;
    return {
      name: d.name,
      numRegions: d.numRegions,
      numIrqs: d.numIrqs,
      regions: d.regions.map((r) => ({
        index: r.index,
        name: regionName(r.index),
        size: r.size,
        readable: r.readable,
        writable: r.writable,
        shared: r.memory !== undefined,
      })),
      irqs: d.irqs.map((q) => ({ index: q.index, name: irqName(q.index), count: q.count, flags: q.flags })),
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stopBus?.();
    this.stopBus = null;
    const stopped = new Promise<void>((resolve) => this.net.close(() => resolve()));
    for (const c of this.clients) c.hangUp('server shutting down');
    await stopped;
    // libuv unlinks the socket when it closes the listener; this covers a file it left behind.
    try {
      if (lstatSync(this.opts.socketPath).isSocket()) unlinkSync(this.opts.socketPath);
    } catch {
      // Already gone.
    }
    this.opts.log.info('trace channel closed');
  }
}

/** One trace client: its socket, its request stream and its subscription. */
class TraceConnection {
  private readonly decoder = new FrameDecoder();
  private types: ReadonlySet<string> | null = null;
  /** Events not sent while the client's backlog was full, and the last of them. */
  private dropped = 0;
  private lastDropped: TracedEvent | null = null;
  private paused = false;
  /** Requests whose replies wait on a worker (checksums). */
  private inFlight = 0;
  private ending = false;

  constructor(
    readonly id: number,
    private readonly socket: Socket,
    private readonly channel: TraceChannel,
    private readonly log: Logger,
  ) {
    socket.on('data', (chunk: Buffer) => {
      if (this.ending) return;
      this.decoder.push(chunk);
      this.pump();
    });
    socket.on('drain', () => {
      this.reportDrops();
      if (this.paused) {
        this.paused = false;
        socket.resume();
        this.pump();
      }
    });
    // A reset peer is an ordinary way for a client to leave; 'close' follows.
    socket.on('error', (err) => log.debug(`trace client ${id}: ${err.message}`));
  }

  get subscribed(): boolean {
    return this.types !== null && !this.ending;
  }

  wants(type: string): boolean {
    return this.subscribed && this.types!.has(type);
  }

  subscribe(types: ReadonlySet<string>): void {
    this.types = types;
  }

  unsubscribe(): void {
    this.types = null;
  }

  /** Sends an event frame, or counts it as dropped while the backlog is full. */
  deliver(event: TracedEvent, frame: Buffer): void {
    if (this.socket.writableLength > MAX_BACKLOG_BYTES) {
      this.dropped++;
      this.lastDropped = event;
      return;
    }
    this.reportDrops();
    this.socket.write(frame);
  }

  /**
   * Tells the client once how many events it lost. The notice borrows the seq and time of the
   * last dropped event: the client never saw that seq, so the numbering stays unique.
   */
  private reportDrops(): void {
    if (this.dropped === 0 || !this.lastDropped || this.ending) return;
    const { seq, timeNs } = this.lastDropped;
    const notice: TracedEvent = { type: 'log', level: 'warn', message: `${this.dropped} events dropped`, seq, timeNs };
    this.log.warn(`trace client ${this.id}: ${this.dropped} events dropped (it reads too slowly)`);
    this.dropped = 0;
    this.lastDropped = null;
    this.socket.write(encodeFrame({ event: notice } satisfies ServerMessage));
  }

  /** Handles buffered requests until none is complete, or until our replies back up. */
  private pump(): void {
    while (!this.paused && !this.ending && this.inFlight < MAX_IN_FLIGHT) {
      let message: { value: unknown } | undefined;
      try {
        message = this.decoder.next();
      } catch (err) {
        const why = err instanceof FrameError ? `bad frame: ${err.message}` : `cannot read its stream: ${String(err)}`;
        this.log.warn(`trace client ${this.id}: ${why}; closing this trace client`);
        this.hangUp(why);
        return;
      }
      if (!message) return;
      this.handle(message.value);
      // Requests still arriving would pile up in the decoder: leave them in the socket.
      if (this.inFlight >= MAX_IN_FLIGHT) this.socket.pause();
      if (this.socket.writableLength > MAX_BACKLOG_BYTES) {
        // Stop reading requests until the client reads our replies: its memory, not ours.
        this.paused = true;
        this.socket.pause();
      }
    }
  }

  private handle(value: unknown): void {
    if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Uint8Array) {
      this.reply(null, { error: `a request is a map { id, op, ... }, got ${describeValue(value)}` });
      return;
    }
    const req = value as Record<string, unknown>;
    const id = req.id;
    if (typeof id !== 'number' && typeof id !== 'string' && typeof id !== 'bigint') {
      this.reply(null, { error: `a request needs an id (a number or string), got ${describeValue(id)}` });
      return;
    }
    if (typeof req.op !== 'string') {
      this.reply(id, { error: `a request needs an op (a string), got ${describeValue(req.op)}; ops: ${OPS.join(', ')}` });
      return;
    }
    let result: unknown;
    const fail = (err: unknown) => this.reply(id, { error: err instanceof Error ? err.message : String(err) });
    try {
      result = this.channel.run(this, req.op, req);
    } catch (err) {
      fail(err);
      return;
    }
    if (!(result instanceof Promise)) {
      this.reply(id, { result });
      return;
    }
    this.inFlight++;
    result
      .then((value) => this.reply(id, { result: value }), fail)
      .finally(() => {
        // A slot freed: requests that waited in the decoder (or the socket) go on.
        this.inFlight--;
        if (!this.paused && !this.ending) this.socket.resume();
        this.pump();
      });
  }

  private reply(id: RequestId | null, outcome: { result: unknown } | { error: string }): void {
    if (this.ending) return;
    let frame: Buffer;
    try {
      frame = encodeFrame('error' in outcome ? { id, ok: false, error: outcome.error } : { id, ok: true, result: outcome.result });
    } catch (err) {
      frame = encodeFrame({ id, ok: false, error: `the result cannot be encoded: ${(err as Error).message}` } satisfies ServerMessage);
    }
    this.socket.write(frame);
  }

  /** Sends a last `{ closing }` message and closes; a peer that does not read it is cut off. */
  hangUp(reason: string): void {
    if (this.ending) return;
    this.ending = true;
    this.types = null;
    this.channel.updateBus();
    this.socket.end(encodeFrame({ closing: reason } satisfies ServerMessage));
    setTimeout(() => this.socket.destroy(), CLOSE_GRACE_MS).unref();
  }
}

function parseTypes(value: unknown): ReadonlySet<string> {
  if (value === undefined || value === null) return new Set(TRACE_EVENT_TYPES);
  if (!Array.isArray(value) || value.length === 0) {
    throw new TypeError(`types must be a non-empty array of event types (omit it for all), got ${describeValue(value)}`);
  }
  for (const t of value) {
    if (typeof t !== 'string' || !(TRACE_EVENT_TYPES as readonly string[]).includes(t)) {
      throw new TypeError(`unknown event type ${describeValue(t)}; types: ${TRACE_EVENT_TYPES.join(', ')}`);
    }
  }
  return new Set(value as string[]);
}

function sizeText(n: bigint): string {
  for (const [shift, unit] of [[30n, 'GiB'], [20n, 'MiB'], [10n, 'KiB']] as const) {
    if (n >= 1n << shift && n % (1n << shift) === 0n) return `${n >> shift} ${unit}`;
  }
  return `${n} bytes`;
}

