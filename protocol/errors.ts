/**
 * Protocol errors. A handler throws VfioUserError(errno); exactly one place (the session's
 * reply path) turns it into a REPLY|ERROR message carrying the request id and that errno.
 */
import { constants } from 'node:os';

export const Errno = constants.errno;

export class VfioUserError extends Error {
  constructor(
    /** Positive errno sent to the peer. */
    readonly errno: number,
    message: string,
  ) {
    super(message);
  }
}

/** Throws EINVAL with a message; the common case for a malformed request. */
export function invalid(message: string): never {
  throw new VfioUserError(Errno.EINVAL, message);
}

/**
 * The host lacks something the configuration asks for (e.g. free huge pages). Not a bug: the
 * message says how to provide it, and a command line may present it as the user's to fix.
 */
export class HostResourceError extends Error {
  override name = 'HostResourceError';
}

/**
 * The stream itself can no longer be trusted (bad header, fds we cannot pair with a message):
 * the connection is closed after an error reply where one is possible.
 */
export class FatalStreamError extends Error {}
