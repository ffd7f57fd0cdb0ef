/**
 * Turns a byte stream (plus the fds that arrived with it) into whole messages, framed by the
 * header's `size` field and nothing else: one read may carry several messages or a fraction
 * of one.
 *
 * Pairing fds with messages: Linux delivers a message's SCM_RIGHTS with the first recvmsg that
 * returns any byte of the sendmsg that carried them, and ends that recvmsg right after those
 * bytes' segment. So the fds of one read belong to the last message that *starts* in that read,
 * or, if none starts there, to the message already in progress.
 */
import { Errno, FatalStreamError } from './errors.ts';
import { decodeHeader, type Header } from './header.ts';
import { HEADER_SIZE } from './wire.ts';

export interface Frame {
  readonly header: Header;
  /**
   * The bytes after the header. May be a view into the receive buffer: valid only until the
   * next read, so whoever keeps it must copy it.
   */
  readonly body: Uint8Array;
  /** Descriptors that came with this message; the consumer owns (and must close) them. */
  readonly fds: number[];
}

/**
 * A message ready to send: the outgoing twin of Frame. It lives with the framing (not with the
 * session that builds most of them) so that every producer — session replies, the server's own
 * requests in peer-requests.ts — and the connection that writes them share one leaf module.
 */
export interface Outgoing {
  readonly header: Header;
  readonly body: Uint8Array;
  /** Descriptors to pass with the message; the sender closes them once sent. */
  readonly fds: readonly number[];
}

/** A header the stream cannot continue past; carries it so an error reply can echo the id. */
export class BadHeaderError extends FatalStreamError {
  constructor(
    readonly header: Header,
    /** EINVAL for a size below the header, E2BIG above the limit. */
    readonly errno: number,
    message: string,
  ) {
    super(message);
  }
}

/** Whatever bounds a stream's messages (a session, a client's fixed limit). */
export interface MessageSizeLimit {
  maxMessageSize(): number;
}

export class FrameDecoder {
  private partial: Buffer = Buffer.alloc(0);
  private partialLength = 0;
  private partialFds: number[] = [];

  /**
   * @param limit its maxMessageSize() is the largest acceptable `size` (header included), asked
   *   per message. An object rather than a closure: every session is one (Session's method),
   *   so the call site stays monomorphic across connections and compiled code is reused.
   */
  constructor(private readonly limit: MessageSizeLimit) {}

  /** Bytes of an unfinished message held back for the next read. */
  get buffered(): number {
    return this.partialLength;
  }

  /** Fds received for a message that never completed: the caller closes them on disconnect. */
  takeOrphanFds(): number[] {
    const fds = this.partialFds;
    this.partialFds = [];
    return fds;
  }

  /**
   * Feeds one read and returns the messages it completed, in order. A header announcing a size
   * below 16 or above the limit ends the stream: `error` carries it (nothing after it can be
   * framed) and every fd not yet handed out stays here for takeOrphanFds().
   */
  push(chunk: Uint8Array, fds: number[]): { frames: Frame[]; error?: BadHeaderError } {
    return this.pushRead(chunk, chunk.byteLength, fds);
  }

  /** push() of a read's first `length` bytes of `buffer` (no view of them made when one message came). */
  pushRead(buffer: Uint8Array, length: number, fds: number[]): { frames: Frame[]; error?: BadHeaderError } {
    const single = this.partialLength === 0 ? this.wholeMessage(buffer, length, fds) : null;
    if (single) return single;
    const chunk = length === buffer.byteLength ? buffer : buffer.subarray(0, length);
    const data = this.partialLength > 0 ? this.join(chunk) : chunk;
    const chunkStart = data.byteLength - chunk.byteLength;
    const starts: number[] = [];
    const headers: Header[] = [];
    let error: BadHeaderError | undefined;
    let pos = 0;
    while (data.byteLength - pos >= HEADER_SIZE) {
      const header = decodeHeader(data, pos);
      if (header.size < HEADER_SIZE || header.size > this.limit.maxMessageSize()) {
        error = new BadHeaderError(
          header,
          header.size < HEADER_SIZE ? Errno.EINVAL : Errno.E2BIG,
          header.size < HEADER_SIZE
            ? `message size ${header.size} is smaller than the ${HEADER_SIZE}-byte header`
            : `message size ${header.size} exceeds the limit of ${this.limit.maxMessageSize()} bytes`,
        );
        break;
      }
      if (data.byteLength - pos < header.size) break;
      starts.push(pos);
      headers.push(header);
      pos += header.size;
    }
    if (error) {
      // The messages before the bad header are whole and are served; its fds, and any that
      // came with this read, cannot be paired any more and become orphans.
      const frames = headers.map((header, i) => ({
        header,
        body: new Uint8Array(data.buffer, data.byteOffset + starts[i]! + HEADER_SIZE, header.size - HEADER_SIZE),
        fds: i === 0 && this.partialFds.length ? this.takeOrphanFds() : [],
      }));
      this.partialFds.push(...fds);
      this.partialLength = 0;
      return { frames, error };
    }
    // Index headers.length stands for the unfinished tail message, if any.
    const hasTail = pos < data.byteLength;
    if (hasTail) starts.push(pos);
    const fdsOf: number[][] = starts.map(() => []);
    if (starts.length > 0) {
      fdsOf[0]!.push(...this.partialFds);
      let owner = 0;
      for (let i = 0; i < starts.length; i++) if (starts[i]! >= chunkStart) owner = i;
      fdsOf[owner]!.push(...fds);
    }
    // Plain Uint8Array views: Buffer#subarray costs several times more on this hot path.
    const frames = headers.map((header, i) => ({
      header,
      body: new Uint8Array(data.buffer, data.byteOffset + starts[i]! + HEADER_SIZE, header.size - HEADER_SIZE),
      fds: fdsOf[i]!,
    }));
    this.partialFds = hasTail ? fdsOf[headers.length]! : [];
    this.keep(data, pos);
    return { frames };
  }

  /**
   * The common case, one read holding exactly one whole, acceptable message (a trapped access
   * and its reply are one each): framed without the bookkeeping of the general case. Null for
   * anything else.
   */
  private wholeMessage(chunk: Uint8Array, length: number, fds: number[]): { frames: Frame[] } | null {
    if (length < HEADER_SIZE) return null;
    const header = decodeHeader(chunk, 0);
    if (header.size !== length || header.size > this.limit.maxMessageSize()) return null;
    const body = new Uint8Array(chunk.buffer, chunk.byteOffset + HEADER_SIZE, header.size - HEADER_SIZE);
    return { frames: [{ header, body, fds }] };
  }

  private join(chunk: Uint8Array): Buffer {
    const need = this.partialLength + chunk.byteLength;
    if (need > this.partial.length) {
      const grown = Buffer.alloc(Math.max(need, this.partial.length * 2));
      this.partial.copy(grown, 0, 0, this.partialLength);
      this.partial = grown;
    }
    this.partial.set(chunk, this.partialLength);
    this.partialLength = need;
    return this.partial.subarray(0, need);
  }

  /** Holds back the unfinished tail (copied: the read buffer will be reused). */
  private keep(data: Uint8Array, pos: number): void {
    const tail = data.byteLength - pos;
    if (tail === 0) {
      this.partialLength = 0;
      return;
    }
    if (data.buffer === this.partial.buffer && data.byteOffset === this.partial.byteOffset) {
      this.partial.copyWithin(0, pos, pos + tail);
    } else {
      if (tail > this.partial.length) this.partial = Buffer.alloc(Math.max(tail, 256));
      this.partial.set(data.subarray(pos), 0);
    }
    this.partialLength = tail;
  }
}
