import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GUEST_DONE_SENTINEL, GUEST_INIT_SENTINEL } from './guest-init.ts';
import type { QemuInstall } from './provision-qemu.ts';
import { consoleLineSplitter, runVm, stripTerminalEscapes } from './run-vm.ts';

/** A stand-in "QEMU" that runs a shell script, so timeouts and sentinels can be tested. */
function fakeQemu(script: string): QemuInstall {
  return {
    version: '0', prefix: '', source: 'env',
    command: () => ({ file: '/bin/sh', args: ['-c', script], env: process.env }),
  };
}

test('strips what SeaBIOS and the early console write to the serial line', () => {
  const raw = '\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.17.0)';
  assert.equal(stripTerminalEscapes(raw), 'SeaBIOS (version 1.17.0)');
  assert.equal(stripTerminalEscapes('\x1b]0;title\x07\x1b(Bok\x1b[1;32m 1\x1b[0m'), 'ok 1');
});

test('splits CRLF console output across chunk boundaries', () => {
  const lines: string[] = [];
  const s = consoleLineSplitter((l) => lines.push(l));
  for (const chunk of ['ok 1 a\r', '\nok 2', ' b\r\n\r\n', 'progress 10%\rprogress 100%\r\n', 'tail']) s.push(chunk);
  s.end();
  assert.deepEqual(lines, ['ok 1 a', 'ok 2 b', '', 'progress 100%', 'tail']);
});

test('records the sentinels and exit status of a VM that finishes', async () => {
  const seen: string[] = [];
  const r = await runVm({
    qemu: fakeQemu(`printf '\\033cSeaBIOS\\r\\n'; sleep 0.2; printf '${GUEST_INIT_SENTINEL}\\r\\nok 1 x\\r\\n'; ` +
      `sleep 0.2; printf '${GUEST_DONE_SENTINEL}\\r\\n'; echo oops >&2; exit 3`),
    args: [], timeoutMs: 10_000, onLine: (l) => seen.push(l),
  });
  assert.equal(r.timedOut, false);
  assert.equal(r.exitCode, 3);
  assert.deepEqual(r.lines, ['SeaBIOS', GUEST_INIT_SENTINEL, 'ok 1 x', GUEST_DONE_SENTINEL]);
  assert.deepEqual(seen, r.lines);
  assert.deepEqual(r.stderrLines, ['oops']);
  assert.ok(r.firstGuestOutputMs !== undefined && r.initMs !== undefined && r.doneMs !== undefined);
  assert.ok(r.firstGuestOutputMs <= r.initMs && r.initMs + 150 <= r.doneMs, JSON.stringify(r));
  assert.ok(r.doneMs <= r.durationMs);
});

test('kills a VM that hangs, even one that ignores SIGTERM', async () => {
  const started = performance.now();
  const r = await runVm({
    qemu: fakeQemu(`trap '' TERM; echo booting; while :; do sleep 0.1; done`),
    args: [], timeoutMs: 300,
  });
  const elapsed = performance.now() - started;
  assert.equal(r.timedOut, true);
  assert.equal(r.signal, 'SIGKILL');
  assert.deepEqual(r.lines, ['booting']);
  assert.equal(r.doneMs, undefined);
  assert.ok(elapsed < 5000, `took ${elapsed} ms`);
});

test('a QEMU that cannot start is an error, not a hang', async () => {
  const missing: QemuInstall = {
    version: '0', prefix: '', source: 'env',
    command: () => ({ file: '/nonexistent/qemu-system-x86_64', args: [], env: process.env }),
  };
  await assert.rejects(runVm({ qemu: missing, args: [], timeoutMs: 1000 }), /could not start QEMU/);
});
