/**
 * Messages with file descriptors over a Unix stream socket: recvmsg/sendmsg with SCM_RIGHTS,
 * their native control blocks laid out by hand (x86_64 and aarch64 share the layout), and the
 * rules that keep fds paired with the bytes they came with. The calls themselves come from
 * libc.ts, the one file that talks to koffi.
 */
import { constants as osConstants } from 'node:os';
import {
  EAGAIN,
  EINTR,
  MSG_CMSG_CLOEXEC,
  MSG_CTRUNC,
  MSG_DONTWAIT,
  MSG_NOSIGNAL,
  SCM_RIGHTS,
  SOL_SOCKET,
  SyscallError,
  closeQuietly,
  messageCalls,
  waitFd,
} from './libc.ts';

const { recvmsg, sendmsg, addressOf, errno: lastErrno } = messageCalls;

/** Messages up to this size are copied into one buffer to be sent (see FdSender.sendSome). */
const STAGING_SIZE = 4096;

const NO_FDS: readonly number[] = [];

const MSGHDR_SIZE = 56;
const IOVEC_SIZE = 16;
const CMSG_HEADER = 16;

/** Native control blocks for one direction of one socket: never shared between recv and send. */
class MsgBlock {
  readonly msghdr = Buffer.alloc(MSGHDR_SIZE);
  readonly iov: Buffer;
  readonly control: Buffer;
  constructor(maxIov: number, maxFds: number) {
    this.iov = Buffer.alloc(IOVEC_SIZE * maxIov);
    this.control = Buffer.alloc(CMSG_HEADER + ((maxFds * 4 + 7) & ~7));
    this.msghdr.writeBigUInt64LE(addressOf(this.iov), 16);
  }
}

export interface Received {
  /** Bytes read; 0 means the peer closed the connection. */
  readonly bytes: number;
  /** Descriptors that arrived with these bytes; the caller owns them. */
  readonly fds: number[];
}

/**
 * Reads what is available (never blocks: MSG_DONTWAIT) into buf[offset, offset+length).
 * Returns null when nothing is pending. Received fds are close-on-exec. If the kernel had to
 * drop descriptors (MSG_CTRUNC) the ones that did arrive are closed and an EMSGSIZE error is
 * thrown: the stream can no longer be trusted to pair fds with messages.
 */
export class FdReceiver {
  private readonly block: MsgBlock;
  private lastBuf: Buffer | null = null;
  private lastOffset = -1;
  private lastLength = -1;
  constructor(readonly maxFds: number) {
    this.block = new MsgBlock(1, maxFds);
    this.block.msghdr.writeBigUInt64LE(1n, 24);
    this.block.msghdr.writeBigUInt64LE(addressOf(this.block.control), 32);
  }

  /**
   * @param block wait for data (the socket must be blocking); with SO_RCVTIMEO set, returns
   *   null when that timeout passes. Default: never wait.
   */
  recv(fd: number, buf: Buffer, offset: number, length: number, block = false): Received | null {
    this.prepare(buf, offset, length);
    const n = Number(recvmsg(fd, this.block.msghdr, (block ? 0 : MSG_DONTWAIT) | MSG_CMSG_CLOEXEC));
    if (n < 0) {
      const errno = lastErrno();
      if (errno === EAGAIN || errno === EINTR) return null;
      throw new SyscallError('recvmsg', errno);
    }
    return this.finish(n);
  }

  /** The native msghdr every receive uses (request-ring.ts receives with it too). */
  get msghdr(): Buffer {
    return this.block.msghdr;
  }

  /** Points the msghdr at buf[offset, offset+length), ready for one receive. */
  prepare(buf: Buffer, offset: number, length: number): void {
    const { msghdr, iov, control } = this.block;
    if (buf !== this.lastBuf || offset !== this.lastOffset || length !== this.lastLength) {
      // Callers read into the same buffer again and again: its address (a BigInt from koffi)
      // is worked out once, not per message.
      iov.writeBigUInt64LE(addressOf(buf) + BigInt(offset), 0);
      iov.writeBigUInt64LE(BigInt(length), 8);
      this.lastBuf = buf;
      this.lastOffset = offset;
      this.lastLength = length;
    }
    // The kernel rewrites controllen and flags: both are set again before every call.
    msghdr.writeUInt32LE(control.length, 40);
    msghdr.writeUInt32LE(0, 44);
    msghdr.writeInt32LE(0, 48);
  }

  /** What a receive of `n` bytes on the prepared msghdr brought: the bytes and their fds. */
  finish(n: number): Received {
    const fds = this.takeFds();
    if (this.block.msghdr.readInt32LE(48) & MSG_CTRUNC) {
      closeQuietly(fds);
      throw new SyscallError('recvmsg', osConstants.errno.EMSGSIZE, `more than ${this.maxFds} fds in one message`);
    }
    return { bytes: n, fds };
  }

  private takeFds(): number[] {
    const { msghdr, control } = this.block;
    const used = msghdr.readUInt32LE(40);
    const fds: number[] = [];
    if (used === 0) return fds;
    let at = 0;
    while (at + CMSG_HEADER <= used) {
      const len = Number(control.readBigUInt64LE(at));
      if (len < CMSG_HEADER) break;
      if (control.readInt32LE(at + 8) === SOL_SOCKET && control.readInt32LE(at + 12) === SCM_RIGHTS) {
        for (let p = at + CMSG_HEADER; p + 4 <= at + len; p += 4) fds.push(control.readInt32LE(p));
      }
      at += (len + 7) & ~7;
    }
    return fds;
  }
}

/**
 * Writes messages (several buffers, optionally with fds) to a stream socket. `sendSome` never
 * blocks, whatever the socket's mode (MSG_DONTWAIT): it writes what fits and says how much.
 */
export class FdSender {
  private readonly block: MsgBlock;
  private readonly staging = Buffer.alloc(STAGING_SIZE);
  private readonly stagingAddress: bigint = addressOf(this.staging);
  private readonly controlAddress: bigint;
  /** What the native blocks hold from the last call, so that a call like it rewrites only lengths. */
  private iovIsStaging = false;
  private controlAttached = true;
  constructor(
    readonly maxFds: number,
    private readonly maxIov = 4,
  ) {
    this.block = new MsgBlock(maxIov, maxFds);
    this.controlAddress = addressOf(this.block.control);
  }

  /**
   * Sends parts (skipping the first `skip` bytes, already sent) with `fds` attached to the
   * first byte that goes out. Returns the bytes written; 0 when the socket is full (EAGAIN),
   * in which case nothing, fds included, was sent. Throws for any other error (EPIPE: peer gone).
   */
  sendSome(fd: number, parts: readonly Uint8Array[], fds: readonly number[], skip = 0): number {
    if (fds.length > this.maxFds) {
      throw new SyscallError('sendmsg', osConstants.errno.EINVAL, `${fds.length} fds exceed ${this.maxFds}`);
    }
    if (parts.length > this.maxIov) {
      throw new SyscallError('sendmsg', osConstants.errno.EINVAL, `${parts.length} buffers exceed ${this.maxIov}`);
    }
    const { msghdr, iov } = this.block;
    let count = 0;
    let total = 0;
    for (let i = 0; i < parts.length; i++) total += parts[i]!.byteLength;
    if (total - skip <= STAGING_SIZE) {
      // Small messages (every register access and its reply) are copied into one buffer whose
      // address is known: no BigInt per part, and one iovec for the kernel to walk.
      this.copyToStaging(parts, skip);
      count = 1;
    } else {
      this.iovIsStaging = false;
      for (const part of parts) {
        if (skip >= part.byteLength) {
          skip -= part.byteLength;
          continue;
        }
        iov.writeBigUInt64LE(addressOf(part) + BigInt(skip), count * IOVEC_SIZE);
        iov.writeBigUInt64LE(BigInt(part.byteLength - skip), count * IOVEC_SIZE + 8);
        skip = 0;
        count++;
      }
    }
    msghdr.writeUInt32LE(count, 24);
    msghdr.writeUInt32LE(0, 28);
    this.attachFds(fds);
    return this.sendPrepared(fd);
  }

  /** Copies parts (less `skip` bytes) into the staging buffer and points the one iovec at them. */
  private copyToStaging(parts: readonly Uint8Array[], skip: number): number {
    let at = 0;
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i]!;
      if (skip >= part.byteLength) {
        skip -= part.byteLength;
        continue;
      }
      this.staging.set(skip ? part.subarray(skip) : part, at);
      at += part.byteLength - skip;
      skip = 0;
    }
    const { iov } = this.block;
    if (!this.iovIsStaging) {
      iov.writeBigUInt64LE(this.stagingAddress, 0);
      iov.writeUInt32LE(0, 12);
      this.iovIsStaging = true;
    }
    iov.writeUInt32LE(at, 8);
    return at;
  }

  /** Attaches fds to the msghdr as SCM_RIGHTS, or detaches the control block when there are none. */
  private attachFds(fds: readonly number[]): void {
    const { msghdr, control } = this.block;
    if (fds.length > 0) {
      const len = CMSG_HEADER + fds.length * 4;
      control.writeUInt32LE(len, 0);
      control.writeUInt32LE(0, 4);
      control.writeInt32LE(SOL_SOCKET, 8);
      control.writeInt32LE(SCM_RIGHTS, 12);
      for (let i = 0; i < fds.length; i++) control.writeInt32LE(fds[i]!, CMSG_HEADER + i * 4);
      msghdr.writeBigUInt64LE(this.controlAddress, 32);
      msghdr.writeUInt32LE((len + 7) & ~7, 40);
      this.controlAttached = true;
    } else if (this.controlAttached) {
      msghdr.writeBigUInt64LE(0n, 32);
      msghdr.writeUInt32LE(0, 40);
      this.controlAttached = false;
    }
    msghdr.writeUInt32LE(0, 44);
  }

  /** sendmsg of the prepared msghdr, non-blocking: bytes written, 0 when the socket is full. */
  private sendPrepared(fd: number): number {
    const { msghdr } = this.block;
    for (;;) {
      const n = Number(sendmsg(fd, msghdr, MSG_NOSIGNAL | MSG_DONTWAIT));
      if (n >= 0) return n;
      const errno = lastErrno();
      if (errno === EINTR) continue;
      if (errno === EAGAIN) return 0;
      throw new SyscallError('sendmsg', errno);
    }
  }

  /** The native msghdr every send uses (request-ring.ts sends a staged message with it). */
  get msghdr(): Buffer {
    return this.block.msghdr;
  }

  /**
   * Copies a small message without fds into the staging buffer and prepares the msghdr to send
   * it, for a send made later (`sendStaged`, or request-ring.ts). Returns its length, or 0 when
   * it is larger than the staging buffer (send it with sendSome).
   */
  stage(parts: readonly Uint8Array[]): number {
    let total = 0;
    for (let i = 0; i < parts.length; i++) total += parts[i]!.byteLength;
    if (total === 0 || total > STAGING_SIZE) return 0;
    this.copyToStaging(parts, 0);
    this.block.msghdr.writeUInt32LE(1, 24);
    this.block.msghdr.writeUInt32LE(0, 28);
    this.attachFds(NO_FDS);
    return total;
  }

  /** Sends the staged message now (non-blocking): bytes written, 0 when the socket is full. */
  sendStaged(fd: number): number {
    return this.sendPrepared(fd);
  }

  /** A copy of the staged message's bytes [from, to): what is left of it to queue. */
  stagedCopy(from: number, to: number): Uint8Array {
    return this.staging.slice(from, to);
  }

  /**
   * Sends a whole message, blocking this thread while the socket is full (ETIMEDOUT after
   * timeoutMs). For synchronous callers only: the event loop must never wait on a peer.
   */
  sendAll(fd: number, parts: readonly Uint8Array[], fds: readonly number[] = [], timeoutMs = 5000): void {
    let total = 0;
    for (let i = 0; i < parts.length; i++) total += parts[i]!.byteLength;
    // The clock is read only once the socket is full: a message that fits (nearly all) costs none.
    let deadline = -1;
    let sent = 0;
    while (sent < total || (total === 0 && sent === 0 && fds.length > 0)) {
      const n = this.sendSome(fd, parts, sent === 0 ? fds : NO_FDS, sent);
      if (n > 0) {
        sent += n;
        continue;
      }
      if (deadline < 0) deadline = performance.now() + timeoutMs;
      if (!waitFd(fd, 'write', deadline - performance.now())) {
        throw new SyscallError('sendmsg', osConstants.errno.ETIMEDOUT, `socket stayed full for ${timeoutMs} ms`);
      }
    }
  }
}

