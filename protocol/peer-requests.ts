/**
 * Requests the server sends to the client (DMA_READ / DMA_WRITE) and the matching of their
 * replies by id. Replies nobody waits for are dropped with a warning; on disconnect every
 * waiter is rejected.
 */
import { Errno, VfioUserError } from './errors.ts';
import type { Frame, Outgoing } from './framing.ts';
import { isError } from './header.ts';
import { closeQuietly } from './native/libc.ts';
import { HEADER_SIZE, MessageType, commandName } from './wire.ts';

interface Waiter {
  readonly command: number;
  resolve(body: Uint8Array): void;
  reject(err: Error): void;
}

export class PeerRequests {
  private nextId = 0x8000;
  private readonly waiting = new Map<number, Waiter>();
  private closedReason: string | null = null;

  constructor(private readonly send: (out: Outgoing) => void) {}

  get outstanding(): number {
    return this.waiting.size;
  }

  /** Sends a request; resolves with the reply body, rejects with the client's errno. */
  request(command: number, body: Uint8Array): Promise<Uint8Array> {
    if (this.closedReason) return Promise.reject(new VfioUserError(Errno.ENOTCONN, `no client: ${this.closedReason}`));
    let id = this.nextId;
    while (this.waiting.has(id)) id = (id + 1) & 0xffff;
    this.nextId = (id + 1) & 0xffff;
    const done = new Promise<Uint8Array>((resolve, reject) => this.waiting.set(id, { command, resolve, reject }));
    this.send({ header: { id, command, size: HEADER_SIZE + body.byteLength, flags: MessageType.COMMAND, error: 0 }, body, fds: [] });
    return done;
  }

  /** Takes a reply from the client. False when nobody asked for it (an unsolicited reply). */
  accept(frame: Frame): boolean {
    closeQuietly(frame.fds);
    const w = this.waiting.get(frame.header.id);
    if (!w || w.command !== frame.header.command) return false;
    this.waiting.delete(frame.header.id);
    if (isError(frame.header)) {
      w.reject(new VfioUserError(frame.header.error, `client refused ${commandName(w.command)}: errno ${frame.header.error}`));
    } else {
      // A copy (new Uint8Array(view) copies; Buffer#slice would not): the body is a view of
      // the receive buffer, reused by the next read.
      w.resolve(new Uint8Array(frame.body));
    }
    return true;
  }

  close(reason: string): void {
    this.closedReason = reason;
    for (const w of this.waiting.values()) w.reject(new VfioUserError(Errno.ENOTCONN, `client gone: ${reason}`));
    this.waiting.clear();
  }
}
