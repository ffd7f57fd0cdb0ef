/**
 * How a command ends when something fails, decided by whose fault it is:
 *
 *   UsageError (flags.ts)  the user asked for something wrong (a flag, a device option, a
 *                          device declaration of their own): exit 2, the message says what
 *                          to do instead.
 *   CommandFailure         what the command tried failed — a system call (a socket in use, no
 *                          memory) or a bug in the server or a device: exit 1, the message
 *                          names what failed (which device, which socket).
 *   anything else          an error nobody classified: exit 1 with its message.
 *
 * A stack means nothing to a user and everything to whoever fixes the bug, so it is printed
 * only on request: EDU_PLUS_DEBUG=1 in the environment, or a command's --verbose.
 */
import { SyscallError } from '../protocol/native/libc.ts';
import { UsageError } from './flags.ts';

export class CommandFailure extends Error {
  constructor(
    /** What was being done, naming the device and socket, e.g. "cannot serve gpu on /run/x.sock". */
    what: string,
    cause: unknown,
    /** True when the cause is a bug (ours or a device's), not the environment. */
    readonly internal = !(cause instanceof SyscallError),
  ) {
    super(`${what}: ${describe(cause)}`, { cause });
    this.name = 'CommandFailure';
  }
}

/** An error's message, with its class when that says something (TypeError, RangeError…). */
function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  return err.name === 'Error' || err instanceof SyscallError ? err.message : `${err.name}: ${err.message}`;
}

/** Whether to print stacks: EDU_PLUS_DEBUG=1, or --verbose among the command's arguments. */
export function wantsStack(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): boolean {
  return env.EDU_PLUS_DEBUG === '1' || argv.includes('--verbose');
}

/** Writes what failed (and the stack when asked) and returns the exit code. */
export function reportFailure(err: unknown, showStack: boolean, write: (line: string) => void = (l) => console.error(l)): number {
  if (err instanceof UsageError) {
    write(`edu-plus: ${err.message}`);
    return 2;
  }
  const internal = err instanceof CommandFailure ? err.internal : !(err instanceof SyscallError);
  write(`edu-plus: ${err instanceof CommandFailure ? err.message : describe(err)}`);
  const origin = err instanceof CommandFailure ? err.cause : err;
  if (showStack && origin instanceof Error && origin.stack) write(origin.stack);
  else if (internal) write('edu-plus: this is a failure inside edu-plus or the device, not in how it was run; EDU_PLUS_DEBUG=1 shows the stack');
  return 1;
}
