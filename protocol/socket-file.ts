/** The file of a listening Unix socket: what to do with one left behind. */
import { lstatSync, unlinkSync } from 'node:fs';
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
