/**
 * The native boundary: the only module in the project that imports koffi.
 *
 * Node cannot pass file descriptors over a Unix socket, create memfds or map memory, and the
 * vfio-user protocol needs all three. Everything unsafe lives here and is exposed as small typed
 * functions that throw a SyscallError carrying the call's name and errno. Pointers (mmap
 * addresses) leave this module only as opaque bigints; `viewOf` is the one way to touch them.
 *
 * Hazard: a view over mapped memory stays valid only
 * while the mapping exists. Callers own a mapping in one place and never keep views past munmap.
 */
import koffi from 'koffi';
import { readlinkSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { assertSupportedPlatform } from './platform.ts';

// The struct layouts below are written for 64-bit Linux with glibc: refuse anything else
// before a wrong offset can do harm.
assertSupportedPlatform();
const libc = koffi.load('libc.so.6');
/** struct stat's st_mode: after st_nlink on x86_64, before it in the generic (aarch64) layout. */
const STAT_MODE_OFFSET = process.arch === 'arm64' ? 16 : 24;

const c = {
  socket: libc.func('int socket(int domain, int type, int protocol)'),
  socketpair: libc.func('int socketpair(int domain, int type, int protocol, _Out_ int *fds)'),
  bind: libc.func('int bind(int fd, void *addr, uint32_t addrlen)'),
  listen: libc.func('int listen(int fd, int backlog)'),
  accept4: libc.func('int accept4(int fd, void *addr, void *addrlen, int flags)'),
  connect: libc.func('int connect(int fd, void *addr, uint32_t addrlen)'),
  shutdown: libc.func('int shutdown(int fd, int how)'),
  close: libc.func('int close(int fd)'),
  recvmsg: libc.func('intptr_t recvmsg(int fd, void *msg, int flags)'),
  sendmsg: libc.func('intptr_t sendmsg(int fd, void *msg, int flags)'),
  read: libc.func('intptr_t read(int fd, void *buf, size_t count)'),
  write: libc.func('intptr_t write(int fd, void *buf, size_t count)'),
  memfd_create: libc.func('int memfd_create(const char *name, unsigned int flags)'),
  ftruncate: libc.func('int ftruncate(int fd, int64_t length)'),
  fstat: libc.func('int fstat(int fd, void *statbuf)'),
  mmap: libc.func('void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)'),
  munmap: libc.func('int munmap(void *addr, size_t length)'),
  eventfd: libc.func('int eventfd(unsigned int initval, int flags)'),
  fcntl: libc.func('int fcntl(int fd, int cmd, int arg)'),
  pread: libc.func('intptr_t pread(int fd, void *buf, size_t count, int64_t offset)'),
  pwrite: libc.func('intptr_t pwrite(int fd, void *buf, size_t count, int64_t offset)'),
  ppoll: libc.func('int ppoll(void *fds, unsigned long nfds, void *timeout, void *sigmask)'),
  setsockopt: libc.func('int setsockopt(int fd, int level, int name, void *value, uint32_t len)'),
  getsockopt: libc.func('int getsockopt(int fd, int level, int name, void *value, _Inout_ uint32_t *len)'),
  // glibc's syscall() is variadic; declared with six fixed integer arguments, which is how the
  // x86_64 and aarch64 calling conventions pass them either way (no floating-point argument).
  syscall: libc.func('long syscall(long number, long a, long b, long c, long d, long e, long f)'),
};

// Linux values, the same on x86_64 and aarch64. Node exposes errno numbers but not these.
const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SCM_RIGHTS = 1;
const MSG_DONTWAIT = 0x40;
const MSG_NOSIGNAL = 0x4000;
const MSG_CTRUNC = 0x8;
const MSG_CMSG_CLOEXEC = 0x40000000;
const MFD_CLOEXEC = 1;
const EFD_CLOEXEC = 0o2000000;
const EFD_NONBLOCK = 0o4000;
const F_GETFD = 1;
const F_GETFL = 3;
const F_SETFL = 4;
const O_NONBLOCK = 0o4000;
const F_DUPFD_CLOEXEC = 1030;
const F_ADD_SEALS = 1033;
const F_GET_SEALS = 1034;
const MFD_ALLOW_SEALING = 2;
/** memfd seals (linux/fcntl.h): F_SEAL_SHRINK forbids making the file smaller. */
export const Seal = { SEAL: 1, SHRINK: 2, GROW: 4, WRITE: 8 } as const;
/** The seals QEMU's memory-backend-memfd puts on guest RAM by default (its `seal` property). */
export const GUEST_RAM_SEALS = Seal.SHRINK | Seal.GROW | Seal.SEAL;
export const PROT_READ = 1;
export const PROT_WRITE = 2;
const MAP_SHARED = 1;
const MAP_FAILED = 0xffffffffffffffffn;

const errnoNames = new Map<number, string>(
  Object.entries(osConstants.errno).map(([name, value]) => [value, name]),
);

/** A failed system call: `syscall` names it, `errno` is the positive error number. */
export class SyscallError extends Error {
  readonly code: string;
  constructor(
    readonly syscall: string,
    readonly errno: number,
    detail?: string,
  ) {
    const code = errnoNames.get(errno) ?? `errno ${errno}`;
    super(`${syscall}${detail ? ` (${detail})` : ''} failed: ${code}`);
    this.code = code;
  }
}

export const EAGAIN = osConstants.errno.EAGAIN;
const EINTR = osConstants.errno.EINTR;

function fail(syscall: string, detail?: string): never {
  throw new SyscallError(syscall, koffi.errno(), detail);
}

// ---- sockets -------------------------------------------------------------------------------

function sockaddrUnix(path: string): Buffer {
  const encoded = Buffer.from(path);
  // sun_path is 108 bytes and must keep a terminating NUL.
  if (encoded.length > 107) {
    throw new SyscallError('bind', osConstants.errno.ENAMETOOLONG, `socket path longer than 107 bytes: ${path}`);
  }
  const addr = Buffer.alloc(110);
  addr.writeUInt16LE(AF_UNIX, 0);
  encoded.copy(addr, 2);
  return addr;
}

/** A listening AF_UNIX stream socket, non-blocking so a spurious wake-up cannot stall accept. */
export function listenUnix(path: string, backlog = 4): number {
  const fd = c.socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) fail('socket');
  const addr = sockaddrUnix(path);
  if (c.bind(fd, addr, addr.length) < 0) {
    const errno = koffi.errno();
    c.close(fd);
    throw new SyscallError('bind', errno, path);
  }
  if (c.listen(fd, backlog) < 0) {
    const errno = koffi.errno();
    c.close(fd);
    throw new SyscallError('listen', errno, path);
  }
  return fd;
}

/** Accepts one connection (blocking socket), or returns null when none is pending. */
export function accept(listenFd: number): number | null {
  const fd = c.accept4(listenFd, null, null, SOCK_CLOEXEC);
  if (fd < 0) {
    const errno = koffi.errno();
    if (errno === EAGAIN || errno === EINTR) return null;
    throw new SyscallError('accept4', errno);
  }
  return fd;
}

/** Two connected Unix stream sockets (blocking, close-on-exec). */
export function socketPair(): [number, number] {
  const fds = [0, 0];
  if (c.socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0) fail('socketpair');
  return [fds[0]!, fds[1]!];
}

export function connectUnix(path: string): number {
  const fd = c.socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fail('socket');
  const addr = sockaddrUnix(path);
  if (c.connect(fd, addr, addr.length) < 0) {
    const errno = koffi.errno();
    c.close(fd);
    throw new SyscallError('connect', errno, path);
  }
  return fd;
}

const SO_RCVTIMEO = 20;
const timeval = Buffer.alloc(16);

/** Bounds how long a blocking receive waits (it then returns null, as for EAGAIN). */
export function setReceiveTimeout(fd: number, micros: number): void {
  timeval.writeBigInt64LE(BigInt(Math.floor(micros / 1e6)), 0);
  timeval.writeBigInt64LE(BigInt(Math.floor(micros % 1e6)), 8);
  if (c.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, timeval, 16) < 0) fail('setsockopt', 'SO_RCVTIMEO');
}

const SO_PEERCRED = 17;
/** struct ucred: pid, uid, gid (three 32-bit fields on every Linux architecture). */
const ucred = Buffer.alloc(12);

/** The pid of the process at the other end of a connected Unix socket (SO_PEERCRED). */
export function peerPid(fd: number): number {
  const len = [ucred.length];
  if (c.getsockopt(fd, SOL_SOCKET, SO_PEERCRED, ucred, len) < 0) fail('getsockopt', 'SO_PEERCRED');
  return ucred.readInt32LE(0);
}

/**
 * Stops both directions (or only ours with `how` 'write': the peer sees end-of-file but may
 * still send). Errors (already closed) are ignored.
 */
export function shutdownSocket(fd: number, how: 'both' | 'write' = 'both'): void {
  c.shutdown(fd, how === 'write' ? 1 : 2);
}

export function close(fd: number): void {
  if (c.close(fd) < 0) fail('close', `fd ${fd}`);
}

/** Closes fds that nobody took over, ignoring errors: used on every error path. */
export function closeQuietly(fds: Iterable<number>): void {
  for (const fd of fds) c.close(fd);
}

/** A second descriptor of the same open file (close-on-exec): for handing out an fd we keep. */
export function dup(fd: number): number {
  const copy = c.fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (copy < 0) fail('fcntl(F_DUPFD_CLOEXEC)', `fd ${fd}`);
  return copy;
}

/**
 * True when fd is an eventfd. Interrupt fds must be: we write counters into them and poll the
 * resample one, and libuv cannot poll some files at all (koffi then aborts the process, so a
 * client must never get such an fd into watchFd).
 */
export function isEventfd(fd: number): boolean {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`) === 'anon_inode:[eventfd]';
  } catch {
    return false;
  }
}

/**
 * Sets or clears O_NONBLOCK. The flag lives in the open file description, which a received fd
 * shares with the process that sent it: both see the change.
 */
export function setNonBlocking(fd: number, on: boolean): void {
  const flags = c.fcntl(fd, F_GETFL, 0);
  if (flags < 0) fail('fcntl(F_GETFL)', `fd ${fd}`);
  const want = on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK;
  if (want !== flags && c.fcntl(fd, F_SETFL, want) < 0) fail('fcntl(F_SETFL)', `fd ${fd}`);
}

/** True when O_NONBLOCK is set on fd's open file description. */
export function isNonBlocking(fd: number): boolean {
  const flags = c.fcntl(fd, F_GETFL, 0);
  if (flags < 0) fail('fcntl(F_GETFL)', `fd ${fd}`);
  return (flags & O_NONBLOCK) !== 0;
}

/** The file's seals (Seal bits); 0 for a file that cannot carry seals (not a memfd). */
export function fileSeals(fd: number): number {
  const seals = c.fcntl(fd, F_GET_SEALS, 0);
  return seals < 0 ? 0 : seals;
}

/** True when fd is an open descriptor of this process (used by tests to prove fds were closed). */
export function isOpenFd(fd: number): boolean {
  return c.fcntl(fd, F_GETFD, 0) >= 0;
}

// ---- for fd-messages.ts ----------------------------------------------------------------------

/**
 * What fd-messages.ts (recvmsg/sendmsg with SCM_RIGHTS) needs of the native side, so that koffi
 * stays in this one file: the two calls, a buffer's address, and errno read right after a call.
 */
export const messageCalls = {
  recvmsg: c.recvmsg as (fd: number, msghdr: Buffer, flags: number) => number | bigint,
  sendmsg: c.sendmsg as (fd: number, msghdr: Buffer, flags: number) => number | bigint,
  addressOf: (buf: Uint8Array): bigint => koffi.address(buf) as bigint,
  errno: (): number => koffi.errno(),
};
export { EINTR, MSG_CMSG_CLOEXEC, MSG_CTRUNC, MSG_DONTWAIT, MSG_NOSIGNAL, SCM_RIGHTS, SOL_SOCKET };

// ---- for request-ring.ts -----------------------------------------------------------------------

/**
 * io_uring's two system calls, which glibc does not wrap. They came after the architectures'
 * tables were unified: the same numbers on x86_64 and aarch64.
 */
const SYS_IO_URING_SETUP = 425;
const SYS_IO_URING_ENTER = 426;
/** MAP_POPULATE: the ring's pages are touched now rather than on the first request. */
const MAP_POPULATE = 0x8000;

/**
 * What request-ring.ts needs to drive an io_uring: setup, enter, its mappings (as views) and
 * errno. Each returns the raw result (negative on failure, errno then read with `errno`).
 */
export const ringCalls = {
  setup: (entries: number, params: Buffer): number => Number(c.syscall(SYS_IO_URING_SETUP, entries, koffi.address(params) as bigint, 0, 0, 0, 0)),
  enter: (ringFd: number, toSubmit: number, minComplete: number, flags: number): number =>
    Number(c.syscall(SYS_IO_URING_ENTER, ringFd, toSubmit, minComplete, flags, 0, 0)),
  /** Maps `length` bytes of the ring at `offset` (unmap it with munmap); throws SyscallError. */
  map: (ringFd: number, length: number, offset: bigint): { address: bigint; view: ArrayBuffer } => {
    const address = c.mmap(null, length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ringFd, offset) as bigint;
    if (address === MAP_FAILED || address === -1n) fail('mmap', `io_uring ring of fd ${ringFd}`);
    return { address, view: koffi.view(address, length) };
  },
  addressOf: (buf: Uint8Array): bigint => koffi.address(buf) as bigint,
  errno: (): number => koffi.errno(),
};

// ---- shared memory ---------------------------------------------------------------------------

const MFD_HUGETLB = 4;
/** MFD_HUGE_2MB: log2(2 MiB) in the flag's size field. */
const MFD_HUGE_2MB = 21 << 26;

/**
 * A memfd of `size` bytes (sparse: pages are allocated on first touch). With `hugePages` it is
 * backed by 2 MiB huge pages from the kernel's pool (which must hold enough free pages).
 */
export function memfdCreate(name: string, size: bigint, opts: { hugePages?: boolean; seals?: number } = {}): number {
  const sealing = opts.seals ? MFD_ALLOW_SEALING : 0;
  const fd = c.memfd_create(name, MFD_CLOEXEC | sealing | (opts.hugePages ? MFD_HUGETLB | MFD_HUGE_2MB : 0));
  if (fd < 0) fail('memfd_create', opts.hugePages ? `${name}, 2 MiB huge pages` : name);
  if (c.ftruncate(fd, size) < 0) {
    const errno = koffi.errno();
    c.close(fd);
    throw new SyscallError('ftruncate', errno, `${name} to ${size} bytes`);
  }
  // Sealed as QEMU's memory-backend-memfd seals guest RAM (shrink, grow, and the seals themselves).
  if (opts.seals && c.fcntl(fd, F_ADD_SEALS, opts.seals) < 0) {
    const errno = koffi.errno();
    c.close(fd);
    throw new SyscallError('fcntl(F_ADD_SEALS)', errno, name);
  }
  return fd;
}

/**
 * One positional transfer of all of `buf` (pread or pwrite: the file offset is not used),
 * retrying short counts and EINTR. Returns the bytes moved: fewer only at end of file (read).
 */
function positional(call: typeof c.pread, name: string, fd: number, buf: Uint8Array, offset: bigint): number {
  let done = 0;
  while (done < buf.byteLength) {
    const n = Number(call(fd, buf.subarray(done), buf.byteLength - done, offset + BigInt(done)));
    if (n < 0) {
      if (koffi.errno() === EINTR) continue;
      fail(name, `fd ${fd}`);
    }
    if (n === 0) break;
    done += n;
  }
  return done;
}

/**
 * Reads up to into.byteLength bytes of fd at `offset`; fewer at end of file. A copy through the
 * kernel, so a file that shrinks under us gives a short count, never a fault.
 */
export function pread(fd: number, into: Uint8Array, offset: bigint): number {
  return positional(c.pread, 'pread', fd, into, offset);
}

/** Writes all of `data` to fd at `offset` (a write that makes no progress is an error). */
export function pwrite(fd: number, data: Uint8Array, offset: bigint): void {
  if (positional(c.pwrite, 'pwrite', fd, data, offset) < data.byteLength) fail('pwrite', `fd ${fd} accepted no bytes`);
}

/** Maps `length` bytes of fd at `offset` shared. Returns the address as an opaque bigint. */
export function mmapShared(fd: number, length: bigint, offset: bigint, prot = PROT_READ | PROT_WRITE): bigint {
  const addr = c.mmap(null, length, prot, MAP_SHARED, fd, offset) as bigint;
  if (addr === MAP_FAILED || addr === -1n) fail('mmap', `fd ${fd}, ${length} bytes at ${offset}`);
  return addr;
}

export function munmap(addr: bigint, length: bigint): void {
  if (c.munmap(addr, length) < 0) fail('munmap');
}

/**
 * A zero-copy ArrayBuffer over mapped memory. It dies with the mapping: keep it no longer than
 * the owner of the mapping keeps the mapping.
 */
export function viewOf(addr: bigint, length: number): ArrayBuffer {
  return koffi.view(addr, length);
}

export interface FileIdentity {
  readonly dev: bigint;
  readonly ino: bigint;
  readonly size: bigint;
  readonly mode: number;
}

const statBuf = Buffer.alloc(144);

/** fstat's identity fields: the same (dev, ino) means the same file behind different fds. */
export function fstat(fd: number): FileIdentity {
  if (c.fstat(fd, statBuf) < 0) fail('fstat', `fd ${fd}`);
  return {
    dev: statBuf.readBigUInt64LE(0),
    ino: statBuf.readBigUInt64LE(8),
    mode: statBuf.readUInt32LE(STAT_MODE_OFFSET),
    size: statBuf.readBigInt64LE(48),
  };
}

// ---- eventfds --------------------------------------------------------------------------------

/** A non-blocking eventfd (or a blocking one, which tests use to play a careless client). */
export function eventfdCreate(opts: { blocking?: boolean } = {}): number {
  const fd = c.eventfd(0, EFD_CLOEXEC | (opts.blocking ? 0 : EFD_NONBLOCK));
  if (fd < 0) fail('eventfd');
  return fd;
}

const counterBuf = Buffer.alloc(8);

/**
 * Adds `value` to an eventfd counter (this is how an interrupt reaches QEMU) without ever
 * blocking: false when the counter is full (the edge is lost, as for a full vfio irqfd).
 *
 * A write to an eventfd blocks when the counter would overflow, unless O_NONBLOCK is set on its
 * open file description, which we share with the client that sent the fd: a client can hand us
 * a blocking one, or clear the flag later. So the flag is checked, and set again if needed,
 * right before every write (interrupts are rare next to MMIO: two fcntl calls cost ~0.3 µs).
 */
export function eventfdSignal(fd: number, value = 1n): boolean {
  setNonBlocking(fd, true);
  counterBuf.writeBigUInt64LE(value, 0);
  for (;;) {
    if (Number(c.write(fd, counterBuf, 8)) === 8) return true;
    const errno = koffi.errno();
    if (errno === EINTR) continue;
    if (errno === EAGAIN) return false;
    throw new SyscallError('write', errno, `eventfd ${fd}`);
  }
}

/** Reads and resets an eventfd counter; 0n when it was not signalled (non-blocking fds only). */
export function eventfdConsume(fd: number): bigint {
  const n = Number(c.read(fd, counterBuf, 8));
  if (n < 0) {
    if (koffi.errno() === EAGAIN) return 0n;
    fail('read', `eventfd ${fd}`);
  }
  return counterBuf.readBigUInt64LE(0);
}

// ---- readiness -------------------------------------------------------------------------------

export interface FdWatch {
  /** Also report writability (while output is queued), or stop doing so. */
  wantWritable(on: boolean): void;
  /**
   * Report readability and hang-ups (the default), or stop: a reader that must not read for a
   * while (its peer's replies are backed up) would otherwise be woken again and again.
   */
  wantReadable(on: boolean): void;
  stop(): void;
}

export interface FdEvents {
  readonly readable: boolean;
  readonly writable: boolean;
  readonly hangup: boolean;
}

/**
 * Calls `onEvent` from the Node event loop (libuv's epoll) when fd is readable, hung up, or
 * (after wantWritable(true)) writable. This is the cheap way to wait: no thread is parked per
 * pending call, unlike koffi's `.async` which costs a libuv threadpool thread and ~10 µs per
 * round trip. Note: libuv makes the fd non-blocking. One watch per fd.
 *
 * An exception thrown by `onEvent` never reaches the event loop: the watch stops and
 * `onFault` gets the error. Stopping is the point: a callback that threw may not have consumed
 * what made the fd ready, and left watched it would be called again at once, forever.
 */
export function watchFd(fd: number, onEvent: (ev: FdEvents) => void, onFault: (err: Error) => void = reportFault): FdWatch {
  let readable = true;
  let writable = false;
  let stopped = false;
  const callback = (_status: number, ev: { readable: boolean; writable: boolean; disconnect: boolean }) => {
    if (stopped) return;
    try {
      onEvent({ readable: ev.readable, writable: ev.writable, hangup: ev.disconnect });
    } catch (err) {
      watch.stop();
      try {
        onFault(err instanceof Error ? err : new Error(String(err)));
      } catch {
        // The fault handler's own failure has nowhere left to go.
      }
    }
  };
  const handle = koffi.node.poll(fd, { readable: true, disconnect: true }, callback as never);
  const restart = () => {
    if (readable || writable) handle.start({ readable, disconnect: readable, writable }, callback as never);
    else handle.stop();
  };
  const watch: FdWatch = {
    wantWritable(on: boolean) {
      if (stopped || on === writable) return;
      writable = on;
      restart();
    },
    wantReadable(on: boolean) {
      if (stopped || on === readable) return;
      readable = on;
      restart();
    },
    stop() {
      if (stopped) return;
      stopped = true;
      handle.stop();
      handle.close();
    },
  };
  return watch;
}

function reportFault(err: Error): void {
  process.stderr.write(`an fd watch callback failed and was stopped: ${err.stack ?? err.message}\n`);
}

/** watchFd for readers that never write through the event loop. */
export function watchReadable(fd: number, onReadable: () => void, onFault?: (err: Error) => void): FdWatch {
  return watchFd(fd, () => onReadable(), onFault);
}

const POLLIN = 0x1;
const POLLOUT = 0x4;
const pollFd = Buffer.alloc(8);
const pollTimespec = Buffer.alloc(16);

/**
 * Blocks this thread until fd is readable (or writable) or `timeoutMs` passes; true if ready.
 * Only for synchronous callers that own their thread (a blocking client, a benchmark).
 */
export function waitFd(fd: number, want: 'read' | 'write', timeoutMs: number): boolean {
  pollFd.writeInt32LE(fd, 0);
  pollFd.writeInt16LE(want === 'read' ? POLLIN : POLLOUT, 4);
  pollFd.writeInt16LE(0, 6);
  const ms = Math.max(0, timeoutMs);
  pollTimespec.writeBigInt64LE(BigInt(Math.floor(ms / 1000)), 0);
  pollTimespec.writeBigInt64LE(BigInt(Math.floor((ms % 1000) * 1e6)), 8);
  const n = c.ppoll(pollFd, 1, pollTimespec, null);
  if (n < 0 && koffi.errno() !== EINTR) fail('ppoll');
  return n > 0;
}
