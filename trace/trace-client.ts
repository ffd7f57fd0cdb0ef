/**
 * A client for the trace channel (wire.ts): requests matched to replies by id, pushed events
 * delivered to listeners, an async iterator, and kept (the last HISTORY_LIMIT) so a test can
 * wait for an event that may already have arrived.
 */
import { type Socket, connect } from 'node:net';
import type { TracedEvent } from '../protocol/trace-bus.ts';
import {
  FrameDecoder,
  type RegisterState,
  type TraceDeviceInfo,
  type TraceEventType,
  type TraceStats,
  describeValue,
  encodeFrame,
} from './wire.ts';

/** Events kept for waitFor / received; older ones are forgotten. */
export const HISTORY_LIMIT = 10_000;

/** The server answered `ok: false`; the message is the server's. */
export class TraceRequestError extends Error {
  constructor(
    readonly op: string,
    message: string,
  ) {
    super(message);
  }
}

type EventListener = (event: TracedEvent) => void;

interface Pending {
  readonly op: string;
  resolve(result: unknown): void;
  reject(err: Error): void;
}

export class TraceClient {
  private readonly decoder = new FrameDecoder();
  private readonly pending = new Map<number, Pending>();
  private readonly listeners = new Set<EventListener>();
  private readonly closeListeners = new Set<(reason: string) => void>();
  private readonly history: TracedEvent[] = [];
  private nextId = 1;
  /** What the server said in its last `{ closing }` message, if anything. */
  private serverReason: string | null = null;
  private closedWith: string | null = null;
  /** Resolves with the reason once the connection has ended, whoever ended it. */
  readonly closed: Promise<string>;

  private constructor(private readonly socket: Socket) {
    let settle!: (reason: string) => void;
    this.closed = new Promise((resolve) => (settle = resolve));
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('error', (err) => (this.serverReason ??= err.message));
    socket.once('close', () => {
      const reason = this.closedWith ?? this.serverReason ?? 'the trace server closed the connection';
      this.closedWith = reason;
      for (const p of this.pending.values()) p.reject(new Error(`${p.op}: trace connection closed (${reason})`));
      this.pending.clear();
      for (const l of [...this.closeListeners]) l(reason);
      settle(reason);
    });
  }

  /** Connects to a trace socket; rejects with an error carrying `code` (ENOENT, ECONNREFUSED…). */
  static connect(path: string): Promise<TraceClient> {
    return new Promise((resolve, reject) => {
      const socket = connect(path);
      const failed = (err: NodeJS.ErrnoException) => {
        const e = new Error(`cannot connect to the trace socket ${path}: ${err.code ?? err.message}`) as NodeJS.ErrnoException;
        e.code = err.code;
        reject(e);
      };
      socket.once('error', failed);
      socket.once('connect', () => {
        socket.off('error', failed);
        resolve(new TraceClient(socket));
      });
    });
  }

  /** Why the connection ended, or null while it is open. */
  get closedReason(): string | null {
    return this.closedWith;
  }

  /** Events received so far (the last HISTORY_LIMIT), oldest first. */
  get received(): readonly TracedEvent[] {
    return this.history;
  }

  /** Forgets received events, so a later waitFor only sees new ones. */
  clearReceived(): void {
    this.history.length = 0;
  }

  /** Sends `{ id, op, ...args }`; resolves with `result`, rejects with TraceRequestError. */
  request(op: string, args: Record<string, unknown> = {}): Promise<unknown> {
    if (this.closedWith !== null) return Promise.reject(new Error(`${op}: trace connection closed (${this.closedWith})`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { op, resolve, reject });
      this.socket.write(encodeFrame({ ...args, id, op }));
    });
  }

  /** Starts (or re-filters) the event stream; all types when `types` is omitted. */
  async subscribe(types?: readonly TraceEventType[]): Promise<{ types: TraceEventType[] }> {
    return (await this.request('subscribe', types ? { types } : {})) as { types: TraceEventType[] };
  }

  async unsubscribe(): Promise<void> {
    await this.request('unsubscribe');
  }

  /** Bytes of a shared-memory region (at most 16 MiB per call). */
  async readRegion(region: number, offset: number | bigint, length: number): Promise<Uint8Array> {
    return (await this.request('read-region', { region, offset, length })) as Uint8Array;
  }

  /** Writes into a shared-memory region; resolves with the number of bytes written. */
  async writeRegion(region: number, offset: number | bigint, data: Uint8Array): Promise<number> {
    return (await this.request('write-region', { region, offset, data })) as number;
  }

  /** The device's registers by name; rejects when the device offers no register dump. */
  /** A hash of a shared-memory range, computed off the device's message loop. */
  async checksumRegion(region: number, offset: number | bigint, length: number, algorithm = 'sha256'): Promise<{ algorithm: string; digest: string }> {
    return (await this.request('checksum-region', { region, offset, length, algorithm })) as { algorithm: string; digest: string };
  }

  async registers(): Promise<RegisterState> {
    return (await this.request('registers')) as RegisterState;
  }

  async stats(): Promise<TraceStats> {
    return (await this.request('stats')) as TraceStats;
  }

  async info(): Promise<TraceDeviceInfo> {
    return (await this.request('info')) as TraceDeviceInfo;
  }

  /** Calls `listener` for each event from now on; returns the function that stops it. */
  onEvent(listener: EventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private onClose(listener: (reason: string) => void): () => void {
    this.closeListeners.add(listener);
    return () => this.closeListeners.delete(listener);
  }

  /**
   * Events from the first `next()` on, until the connection closes. Unread events queue here
   * without limit: a consumer that stops reading should `return()` the iterator.
   */
  async *events(): AsyncGenerator<TracedEvent, void, undefined> {
    const queue: TracedEvent[] = [];
    let wake: (() => void) | null = null;
    const off = this.onEvent((e) => {
      queue.push(e);
      wake?.();
    });
    const offClose = this.onClose(() => wake?.());
    try {
      for (;;) {
        while (queue.length > 0) yield queue.shift()!;
        if (this.closedWith !== null) return;
        await new Promise<void>((resolve) => (wake = resolve));
        wake = null;
      }
    } finally {
      off();
      offClose();
    }
  }

  /**
   * The first event matching `predicate`, looking first at events already received (the last
   * HISTORY_LIMIT), then at new ones. Rejects after timeoutMs or when the connection closes.
   */
  waitFor<T extends TracedEvent>(predicate: (e: TracedEvent) => e is T, timeoutMs?: number): Promise<T>;
  waitFor(predicate: (e: TracedEvent) => boolean, timeoutMs?: number): Promise<TracedEvent>;
  waitFor(predicate: (e: TracedEvent) => boolean, timeoutMs = 5000): Promise<TracedEvent> {
    try {
      const seen = this.history.find(predicate);
      if (seen) return Promise.resolve(seen);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    if (this.closedWith !== null) return Promise.reject(new Error(`trace connection closed (${this.closedWith}) before a matching event`));
    return new Promise((resolve, reject) => {
      const finish = (outcome: () => void) => {
        clearTimeout(timer);
        off();
        offClose();
        outcome();
      };
      const timer = setTimeout(
        () => finish(() => reject(new Error(`no matching trace event within ${timeoutMs} ms (${this.history.length} events received)`))),
        timeoutMs,
      );
      const off = this.onEvent((e) => {
        let match: boolean;
        try {
          match = predicate(e);
        } catch (err) {
          finish(() => reject(err as Error));
          return;
        }
        if (match) finish(() => resolve(e));
      });
      const offClose = this.onClose((reason) => finish(() => reject(new Error(`trace connection closed (${reason}) before a matching event`))));
    });
  }

  /** Ends the connection; pending requests reject. */
  close(): void {
    if (this.closedWith !== null) return;
    this.closedWith = 'closed by this client';
    this.socket.end();
    // A server that never answers our FIN must not keep this process alive.
    setTimeout(() => this.socket.destroy(), 500).unref();
  }

  private receive(chunk: Buffer): void {
    this.decoder.push(chunk);
    for (;;) {
      let message: { value: unknown } | undefined;
      try {
        message = this.decoder.next();
      } catch (err) {
        this.fail(`bad frame from the trace server: ${(err as Error).message}`);
        return;
      }
      if (!message) return;
      this.dispatch(message.value);
    }
  }

  private dispatch(value: unknown): void {
    const m = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>;
    if ('event' in m && typeof m.event === 'object' && m.event !== null) {
      const event = m.event as TracedEvent;
      this.history.push(event);
      if (this.history.length > HISTORY_LIMIT) this.history.splice(0, this.history.length - HISTORY_LIMIT + HISTORY_LIMIT / 10);
      for (const l of [...this.listeners]) {
        try {
          l(event);
        } catch (err) {
          // The listener's bug, not the stream's: report it without losing the frames after it.
          queueMicrotask(() => {
            throw err;
          });
        }
      }
      return;
    }
    if ('closing' in m) {
      this.serverReason = String(m.closing);
      return;
    }
    if ('ok' in m && 'id' in m) {
      const p = typeof m.id === 'number' ? this.pending.get(m.id) : undefined;
      if (!p) return; // An answer to a request we never sent (or a server-side parse failure): nothing waits.
      this.pending.delete(m.id as number);
      if (m.ok === true) p.resolve(m.result);
      else p.reject(new TraceRequestError(p.op, typeof m.error === 'string' ? m.error : `failed (${describeValue(m.error)})`));
      return;
    }
    this.fail(`unexpected message from the trace server: ${describeValue(value)}`);
  }

  private fail(reason: string): void {
    this.closedWith ??= reason;
    this.socket.destroy();
  }
}
