/**
 * The wait for a client's next request, made with io_uring: one io_uring_enter sends the reply
 * to the last request and sleeps until the next request has been read.
 *
 * Why not recvmsg and sendmsg, as a blocking C server does: besides costing one system call
 * instead of two, the ring waits for the socket through a poll that only a readable socket
 * ends. A thread asleep in recvmsg is woken by *any* wake-up on the socket's queue, and the
 * kernel makes one each time the peer reads a reply (the reply's buffer is freed, which says
 * "writable"): the server wakes, finds nothing, and sleeps again, a context switch or an
 * inter-processor interrupt per request for nothing.
 *
 * The waits of a run (the requests answered back to back before the channel returns to the
 * event loop) are bounded together, by one timeout armed with the run's first wait: when it
 * expires, the receive in flight is cancelled and the channel goes back to the event loop.
 * `endRun` removes the timeout, so nothing is in flight while the event loop runs. A timer per
 * wait (io_uring_enter's own timeout) was measured: on a virtual machine, arming and cancelling
 * a high-resolution timer for every request cost more than everything else saved.
 *
 * The ring is this module's own: four fixed submission slots written once (send, receive,
 * the run's limit, and a stop that cancels the receive or removes the limit), their user_data
 * telling the completions apart. It needs Linux 6.1 (deferred task work, so that completions
 * are only posted while this thread waits for them); `open` returns null where io_uring is
 * missing, disabled or older, and the channel waits in recvmsg instead.
 */
import { constants as osConstants } from 'node:os';
import { SyscallError, munmap, close as closeFd, ringCalls } from './libc.ts';

const { EINTR, EINVAL, ECANCELED } = osConstants.errno;

const ENTRIES = 4;
const SQE_SIZE = 64;
const CQE_SIZE = 16;
const OFF_SQ_RING = 0n;
const OFF_SQES = 0x10000000n;
const SETUP_SINGLE_ISSUER = 1 << 12;
const SETUP_DEFER_TASKRUN = 1 << 13;
const FEAT_SINGLE_MMAP = 1;
const ENTER_GETEVENTS = 1;
const OP_SENDMSG = 9;
const OP_RECVMSG = 10;
const OP_TIMEOUT = 11;
const OP_TIMEOUT_REMOVE = 12;
const OP_ASYNC_CANCEL = 14;
const MSG_DONTWAIT = 0x40;
const MSG_NOSIGNAL = 0x4000;
const MSG_CMSG_CLOEXEC = 0x40000000;

/** Submission slots, and the user_data of what each submits. */
const SLOT_SEND = 0;
const SLOT_RECV = 1;
const SLOT_LIMIT = 2;
const SLOT_STOP = 3;
const UD_SEND = 1;
const UD_RECV = 2;
const UD_LIMIT = 3;
const UD_CANCEL = 4;
const UD_REMOVE = 5;

/** Why the last `open` returned null (for the server's log). */
let unavailableReason = '';

export class RequestRing {
  /** The last exchange's send: bytes written, or -errno. */
  sendResult = 0;
  /** The last exchange's receive: bytes read (0: the peer closed), or -errno. */
  recvResult = 0;
  private readonly ring: Uint32Array;
  private readonly ringSigned: Int32Array;
  private readonly sqes: Buffer;
  private readonly sqTail: number;
  private readonly sqMask: number;
  private readonly sqArray: number;
  private readonly cqHead: number;
  private readonly cqTail: number;
  private readonly cqMask: number;
  private readonly cqes: number;
  /** The run's limit, where the kernel reads it (kept alive with the ring). */
  private readonly limit = Buffer.alloc(16);
  private tail: number;
  private unpublished = 0;
  /** The run's limit is armed (its completion not reaped yet). */
  private limited = false;
  /** Submitted and not completed yet: what `reap` clears as their completions come. */
  private sending = false;
  private receiving = false;
  private cancelling = false;
  private removing = false;
  private closed = false;

  /**
   * A ring for `socketFd` whose sends use `sendMsghdr` and receives `recvMsghdr` (native
   * msghdrs that live as long as the ring), a run of waits lasting at most `runMicros`; null
   * when the kernel offers no usable io_uring (`RequestRing.unavailable` says why).
   */
  static open(socketFd: number, sendMsghdr: Buffer, recvMsghdr: Buffer, runMicros: number): RequestRing | null {
    const params = Buffer.alloc(120);
    params.writeUInt32LE(SETUP_SINGLE_ISSUER | SETUP_DEFER_TASKRUN, 8);
    const fd = ringCalls.setup(ENTRIES, params);
    if (fd < 0) {
      const errno = ringCalls.errno();
      unavailableReason =
        errno === EINVAL ? 'io_uring without deferred task work (Linux before 6.1)' : new SyscallError('io_uring_setup', errno).message;
      return null;
    }
    if (!(params.readUInt32LE(20) & FEAT_SINGLE_MMAP)) {
      closeFd(fd);
      unavailableReason = 'io_uring without single-mmap rings';
      return null;
    }
    try {
      return new RequestRing(fd, params, socketFd, sendMsghdr, recvMsghdr, runMicros);
    } catch (err) {
      closeFd(fd);
      unavailableReason = (err as Error).message;
      return null;
    }
  }

  static get unavailable(): string {
    return unavailableReason;
  }

  private readonly mappings: { address: bigint; length: number }[] = [];

  private constructor(
    private readonly fd: number,
    params: Buffer,
    socketFd: number,
    sendMsghdr: Buffer,
    recvMsghdr: Buffer,
    runMicros: number,
  ) {
    const sqEntries = params.readUInt32LE(0);
    const cqEntries = params.readUInt32LE(4);
    // io_uring_params' offset tables. Submission (at 40): head, tail, ring_mask, ring_entries,
    // flags, dropped, array. Completion (at 80): head, tail, ring_mask, ring_entries, overflow, cqes.
    const sqOff = (field: number) => params.readUInt32LE(40 + 4 * field);
    const cqOff = (field: number) => params.readUInt32LE(80 + 4 * field);
    // One mapping holds both rings (FEAT_SINGLE_MMAP); the submission entries are another.
    const ringLength = Math.max(sqOff(6) + sqEntries * 4, cqOff(5) + cqEntries * CQE_SIZE);
    const rings = this.map(ringLength, OFF_SQ_RING);
    this.ring = new Uint32Array(rings);
    this.ringSigned = new Int32Array(rings);
    this.sqTail = sqOff(1) >> 2;
    this.sqMask = this.ring[sqOff(2) >> 2]!;
    this.sqArray = sqOff(6) >> 2;
    this.cqHead = cqOff(0) >> 2;
    this.cqTail = cqOff(1) >> 2;
    this.cqMask = this.ring[cqOff(2) >> 2]!;
    this.cqes = cqOff(5) >> 2;
    this.tail = this.ring[this.sqTail]!;
    this.sqes = Buffer.from(this.map(sqEntries * SQE_SIZE, OFF_SQES));
    this.sqes.fill(0);
    this.limit.writeBigInt64LE(BigInt(Math.floor(runMicros / 1e6)), 0);
    this.limit.writeBigInt64LE(BigInt(Math.round((runMicros % 1e6) * 1000)), 8);
    this.slot(SLOT_SEND, OP_SENDMSG, socketFd, ringCalls.addressOf(sendMsghdr), MSG_NOSIGNAL | MSG_DONTWAIT, UD_SEND);
    this.slot(SLOT_RECV, OP_RECVMSG, socketFd, ringCalls.addressOf(recvMsghdr), MSG_CMSG_CLOEXEC, UD_RECV);
    // A relative timeout with no completion count (off = 0): it completes when it expires.
    this.slot(SLOT_LIMIT, OP_TIMEOUT, -1, ringCalls.addressOf(this.limit), 0, UD_LIMIT);
    this.sqes.writeUInt32LE(1, SLOT_LIMIT * SQE_SIZE + 24);
  }

  private map(length: number, offset: bigint): ArrayBuffer {
    const { address, view } = ringCalls.map(this.fd, length, offset);
    this.mappings.push({ address, length });
    return view;
  }

  /** Writes a submission slot: opcode, fd, addr, the op's flags word and user_data. */
  private slot(index: number, opcode: number, fd: number, addr: bigint, opFlags: number, userData: number): void {
    const at = index * SQE_SIZE;
    this.sqes.fill(0, at, at + SQE_SIZE);
    this.sqes.writeUInt8(opcode, at);
    this.sqes.writeInt32LE(fd, at + 4);
    this.sqes.writeBigUInt64LE(addr, at + 16);
    this.sqes.writeUInt32LE(opFlags, at + 28);
    this.sqes.writeUInt32LE(userData, at + 32);
  }

  private push(slot: number): void {
    this.ring[this.sqArray + (this.tail & this.sqMask)] = slot;
    this.tail = (this.tail + 1) >>> 0;
    this.unpublished++;
  }

  /** Makes the pushed slots visible to the kernel; returns how many to submit. */
  private publish(): number {
    Atomics.store(this.ring, this.sqTail, this.tail);
    const n = this.unpublished;
    this.unpublished = 0;
    return n;
  }

  /**
   * Submits `submit` slots and waits until `wait` completions are posted. False when a signal
   * interrupted it before anything was submitted (the caller submits them again).
   */
  private enter(submit: number, wait: number): boolean {
    if (ringCalls.enter(this.fd, submit, wait, ENTER_GETEVENTS) >= 0) return true;
    const errno = ringCalls.errno();
    if (errno === EINTR) return false;
    throw new SyscallError('io_uring_enter', errno);
  }

  /**
   * Sends the message the sender's msghdr describes (when `send`), then receives into the
   * receiver's msghdr, waiting until a request comes or the run's limit expires. True when the
   * receive completed (`recvResult`: bytes, 0 at end of stream, or -errno), false when the
   * limit expired and the receive was cancelled. `sendResult` holds the send's outcome.
   * Without `block`, only a request already there is taken (the server's warm-up, whose
   * client is its own thread, runs the path that way).
   */
  exchange(send: boolean, block = true): boolean {
    if (send) this.push(SLOT_SEND);
    this.push(SLOT_RECV);
    if (!this.limited) {
      this.push(SLOT_LIMIT);
      this.limited = true;
    }
    let submit = this.publish();
    this.sending = send;
    this.receiving = true;
    let cancelSent = false;
    for (;;) {
      // The limit's completion (or, not blocking, none at all) means the run's time is up.
      const expired = !block || !this.limited;
      // Not blocking, the first call only submits (and collects what completed at once).
      const wait = (this.sending ? 1 : 0) + (this.receiving && (!expired || cancelSent) ? 1 : 0) + (this.cancelling ? 1 : 0);
      if (wait === 0 && submit === 0) break;
      if (this.enter(submit, wait)) submit = 0;
      this.reap();
      // Time is up: cancel the receive. A cancel that misses it (its completion is under way)
      // leaves it to complete by itself, with the request that came.
      if (this.receiving && !cancelSent && (!block || !this.limited)) {
        this.slot(SLOT_STOP, OP_ASYNC_CANCEL, -1, BigInt(UD_RECV), 0, UD_CANCEL);
        this.push(SLOT_STOP);
        submit += this.publish();
        cancelSent = true;
        this.cancelling = true;
      }
    }
    // A request that came in while the receive was being cancelled is still a request.
    return this.recvResult !== -ECANCELED;
  }

  /** Ends a run of waits: removes the run's limit, so that nothing is left in flight. */
  endRun(): void {
    if (!this.limited) return;
    this.slot(SLOT_STOP, OP_TIMEOUT_REMOVE, -1, BigInt(UD_LIMIT), 0, UD_REMOVE);
    this.push(SLOT_STOP);
    let submit = this.publish();
    // Both completions come: the limit's (removed, or expired just before) and the removal's.
    this.removing = true;
    while (this.limited || this.removing) {
      if (this.enter(submit, 1)) submit = 0;
      this.reap();
    }
  }

  /** Takes every posted completion, recording results and what is no longer in flight. */
  private reap(): void {
    let head = this.ring[this.cqHead]!;
    const tail = Atomics.load(this.ring, this.cqTail);
    while (head !== tail) {
      const at = this.cqes + (head & this.cqMask) * (CQE_SIZE >> 2);
      const res = this.ringSigned[at + 2]!;
      switch (this.ring[at]) {
        case UD_SEND:
          this.sendResult = res;
          this.sending = false;
          break;
        case UD_RECV:
          this.recvResult = res;
          this.receiving = false;
          break;
        case UD_LIMIT:
          this.limited = false;
          break;
        case UD_CANCEL:
          this.cancelling = false;
          break;
        case UD_REMOVE:
          this.removing = false;
          break;
      }
      head = (head + 1) >>> 0;
    }
    Atomics.store(this.ring, this.cqHead, head);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const m of this.mappings.splice(0)) munmap(m.address, BigInt(m.length));
    closeFd(this.fd);
  }
}
