/** The file of a listening Unix socket: what to do with one left behind. */
import { lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import { Errno } from './errors.ts';
import { SyscallError, close, connectUnix } from './native/libc.ts';

/**
 * Removes a socket file left by a dead server, so a new one can bind there. Refuses (with a
 * message naming `option`, the flag that chooses the path) a file that is not a socket, and a
 * socket some `server` still listens on.
 */
export function removeStaleSocket(path: string, option: string, server = 'server'): void {
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return;
  }
  if (!st.isSocket()) {
    throw new SyscallError('bind', Errno.EEXIST, `${path} exists and is not a socket; choose another ${option}`);
  }
  try {
    close(connectUnix(path));
  } catch (err) {
    if (err instanceof SyscallError && err.code === 'ECONNREFUSED') {
      unlinkSync(path);
      return;
    }
    throw err;
  }
  throw new SyscallError('bind', Errno.EADDRINUSE, `another ${server} is listening on ${path}`);
}

/**
 * Runs `bind` (which creates a socket file) with umask 0177, so the file is born mode 0600: a
 * chmod after bind leaves a moment when another local user can connect. The umask is the
 * process's, and this thread is the only one that creates files while it is set.
 */
export function withPrivateUmask<T>(bind: () => T): T {
  const old = process.umask(0o177);
  try {
    return bind();
  } finally {
    process.umask(old);
  }
}

/**
 * A directory only this user can enter, for default socket paths outside $XDG_RUNTIME_DIR:
 * a well-known name in /tmp could be taken first by another user (we would fail to bind, and
 * QEMU would talk to their server). Created 0700 if missing; an existing one must be a real
 * directory (not a symlink) owned by us with no access for group or others.
 */
export function ensurePrivateDir(path: string): void {
  try {
    mkdirSync(path, { mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const st = lstatSync(path);
  const uid = process.getuid?.() ?? st.uid;
  const fix = `remove it or choose another --socket-path`;
  if (!st.isDirectory()) throw new SyscallError('mkdir', Errno.EEXIST, `${path} exists and is not a directory (a symlink?); ${fix}`);
  if (st.uid !== uid) throw new SyscallError('mkdir', Errno.EACCES, `${path} belongs to uid ${st.uid}, not to us (uid ${uid}); ${fix}`);
  if ((st.mode & 0o077) !== 0) {
    throw new SyscallError('mkdir', Errno.EACCES, `${path} is mode 0${(st.mode & 0o777).toString(8)}: others could reach our sockets; chmod 700 it, ${fix}`);
  }
}
