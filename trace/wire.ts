/**
 * The trace channel's wire format, shared by trace-server.ts and trace-client.ts.
 *
 * A message is a 4-byte little-endian length followed by exactly that many bytes holding one
 * msgpack value. Length framing (rather than msgpack's self-delimiting stream) lets a reader
 * reject a hostile or corrupt frame before buffering it, and resynchronisation is never needed:
 * a bad frame ends that connection.
 *
 *   client → server   { id, op, ...args }                 id: number or string, echoed back
 *   server → client   { id, ok: true, result }            the reply to request `id`
 *                     { id, ok: false, error: "message" } (id null when the request had none)
 *                     { event: TracedEvent }              pushed after `subscribe`
 *                     { closing: "reason" }               last message before the server hangs up
 *
 * Integers: JS numbers travel as msgpack ints (≤ 32 bits) or float64 and decode as numbers;
 * bigints travel as int64/uint64 and decode as bigints (`int64AsType: 'bigint'`), so a value's
 * type survives the round trip whatever its size. A peer in another language that sends a
 * 64-bit int where we expect a number is accepted where it is a safe integer (see toIndex).
 * Byte arrays travel as msgpack bin and decode as (copied) Buffers, i.e. Uint8Arrays.
 */
import { Packr, Unpackr } from 'msgpackr';
import type { TraceEvent, TracedEvent } from '../protocol/trace-bus.ts';

/** Largest read-region / write-region payload per request. */
export const MAX_REGION_BYTES = 16 << 20;
/** Largest frame either side accepts: the largest payload plus room for the rest of the message. */
export const MAX_FRAME_BYTES = MAX_REGION_BYTES + (64 << 10);
const LENGTH_BYTES = 4;

/** Every TraceEvent type, for validating `subscribe` filters and `--types`. */
export const TRACE_EVENT_TYPES = [
  'client',
  'region-read',
  'region-write',
  'interrupt',
  'dma',
  'reset',
  'dma-map',
  'dma-unmap',
  'log',
] as const satisfies readonly TraceEvent['type'][];
export type TraceEventType = (typeof TRACE_EVENT_TYPES)[number];
// Fails to compile when TraceEvent gains a type this list lacks.
const everyTypeListed: Exclude<TraceEvent['type'], TraceEventType> extends never ? true : never = true;
void everyTypeListed;

/** Echoed as sent; a 64-bit integer id from another language arrives as a bigint. */
export type RequestId = number | string | bigint;

export type ServerMessage =
  | { readonly id: RequestId | null; readonly ok: true; readonly result: unknown }
  | { readonly id: RequestId | null; readonly ok: false; readonly error: string }
  | { readonly event: TracedEvent }
  | { readonly closing: string };

/** `stats`: the current client's counters, or the last client's when none is connected. */
export interface TraceStats {
  readonly connected: boolean;
  /** Clients served so far, the current one included. */
  readonly sessions: number;
  /** Requests received, by command name (e.g. REGION_WRITE). */
  readonly commands: Record<string, number>;
  /** Trapped and shared-memory accesses by region index (keys are the index as a string). */
  readonly regionReads: Record<string, number>;
  readonly regionWrites: Record<string, number>;
  readonly errors: number;
}

/** `info`: what the device describes (sizes as bigint). */
export interface TraceDeviceInfo {
  readonly name: string;
  readonly numRegions: number;
  readonly numIrqs: number;
  readonly regions: readonly { index: number; name: string; size: bigint; readable: boolean; writable: boolean; shared: boolean }[];
  readonly irqs: readonly { index: number; name: string; count: number; flags: number }[];
}

export type RegisterState = Record<string, number | bigint | boolean | string>;

/** A frame that cannot be trusted: the connection it came on is closed. */
export class FrameError extends Error {}

const packr = new Packr({ useRecords: false });
// copyBuffers: decoded byte arrays own their memory instead of viewing the received chunk.
const unpackr = new Unpackr({ useRecords: false, int64AsType: 'bigint', copyBuffers: true });

/** One message as a frame. The result owns its memory (pack() reuses its buffer). */
export function encodeFrame(value: unknown): Buffer {
  const packed = packr.pack(value);
  if (packed.length > MAX_FRAME_BYTES) throw new RangeError(`message of ${packed.length} bytes exceeds the ${MAX_FRAME_BYTES}-byte frame limit`);
  const frame = Buffer.allocUnsafe(LENGTH_BYTES + packed.length);
  frame.writeUInt32LE(packed.length, 0);
  packed.copy(frame, LENGTH_BYTES);
  return frame;
}

/**
 * Reassembles frames from stream chunks (split anywhere). `push` returns nothing; `next`
 * yields one decoded value at a time so a caller can stop pulling (back-pressure) and resume.
 * Throws FrameError for a length of 0 or above MAX_FRAME_BYTES, or a body that is not exactly
 * one msgpack value; after that the stream is unusable.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  /** Bytes received but not yet returned as a message. */
  get pending(): number {
    return this.buffered;
  }

  /** The next complete message, or `undefined` when more bytes are needed. */
  next(): { value: unknown } | undefined {
    if (this.buffered < LENGTH_BYTES) return undefined;
    const length = this.peek(LENGTH_BYTES).readUInt32LE(0);
    if (length === 0) throw new FrameError('frame of length 0 (a frame holds one msgpack value)');
    if (length > MAX_FRAME_BYTES) throw new FrameError(`frame length ${length} exceeds the limit of ${MAX_FRAME_BYTES}`);
    if (this.buffered < LENGTH_BYTES + length) return undefined;
    const body = this.take(LENGTH_BYTES + length).subarray(LENGTH_BYTES);
    try {
      return { value: unpackr.unpack(body) };
    } catch (err) {
      throw new FrameError(`frame of ${length} bytes is not one msgpack value: ${(err as Error).message}`);
    }
  }

  /** The first n buffered bytes (n ≤ buffered), without consuming them. */
  private peek(n: number): Buffer {
    if (this.chunks[0]!.length < n) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0]!;
  }

  /** Consumes the first n bytes (n ≤ buffered). */
  private take(n: number): Buffer {
    const head = this.peek(n);
    this.buffered -= n;
    if (head.length === n) {
      this.chunks.shift();
      return head;
    }
    this.chunks[0] = head.subarray(n);
    return head.subarray(0, n);
  }
}

/** A non-negative safe integer from a number or a bigint, or an error naming the field. */
export function toIndex(value: unknown, field: string): number {
  const n = typeof value === 'bigint' && value >= 0n && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) {
    throw new TypeError(`${field} must be a non-negative integer (got ${describeValue(value)})`);
  }
  return n;
}

/** A short description of a received value for error messages. */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (value instanceof Uint8Array) return `${value.length} bytes`;
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (typeof value === 'object') return 'a map';
  return `${typeof value} ${String(value)}`;
}
