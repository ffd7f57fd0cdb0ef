import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Errno } from '../protocol/errors.ts';
import { SyscallError } from '../protocol/native/libc.ts';
import { CommandFailure, reportFailure, wantsStack } from './failures.ts';
import { UsageError } from './flags.ts';

function report(err: unknown, showStack = false) {
  const lines: string[] = [];
  const code = reportFailure(err, showStack, (l) => lines.push(l));
  return { code, text: lines.join('\n') };
}

describe('reportFailure', () => {
  it('a usage error: exit 2, its message alone', () => {
    assert.deepEqual(report(new UsageError('--x needs a value')), { code: 2, text: 'edu-plus: --x needs a value' });
  });

  it('a failed system call: exit 1, what failed, no hint of a bug', () => {
    const r = report(new CommandFailure('cannot serve gpu on /s.sock', new SyscallError('bind', Errno.EADDRINUSE, 'another server is listening on /s.sock')));
    assert.equal(r.code, 1);
    assert.match(r.text, /^edu-plus: cannot serve gpu on \/s\.sock: bind \(another server is listening on \/s\.sock\) failed: EADDRINUSE$/);
  });

  it('a bug: exit 1, the error class, and how to get the stack; the stack itself when asked', () => {
    const bug = new CommandFailure('cannot serve gpu on /s.sock', new TypeError('x is undefined'));
    const plain = report(bug);
    assert.equal(plain.code, 1);
    assert.match(plain.text, /cannot serve gpu on \/s\.sock: TypeError: x is undefined\n.*EDU_PLUS_DEBUG=1 shows the stack/);
    const debug = report(bug, true);
    assert.match(debug.text, /TypeError: x is undefined\n\s+at /);
  });

  it('an unclassified error: exit 1 with its message', () => {
    assert.equal(report(new Error('disk full')).code, 1);
    assert.match(report(new Error('disk full')).text, /^edu-plus: disk full\n/);
  });

  it('shows stacks for EDU_PLUS_DEBUG=1 or --verbose only', () => {
    assert.equal(wantsStack([], {}), false);
    assert.equal(wantsStack([], { EDU_PLUS_DEBUG: '1' }), true);
    assert.equal(wantsStack(['vm', '--verbose'], {}), true);
  });
});
