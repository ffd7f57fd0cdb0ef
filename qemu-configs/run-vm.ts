// Boots a test VM and collects its serial console, under a hard wall-clock timeout: a KVM
// failure leaves QEMU paused rather than exiting, and a hung guest never powers off.

import { spawn } from 'node:child_process';
import { GUEST_DONE_SENTINEL, GUEST_INIT_SENTINEL } from './guest-init.ts';
import type { QemuInstall } from './provision-qemu.ts';

export { parseKtap, summariseKtap } from './ktap.ts';
export type { KtapReport, KtapResult } from './ktap.ts';

export interface RunVmOptions {
  qemu: QemuInstall;
  /** From qemuArgs(). */
  args: string[];
  timeoutMs: number;
  /** Each console line as it arrives (already without CR and terminal escapes). */
  onLine?: (line: string) => void;
  /** Each line QEMU writes to stderr (warnings, errors). Default: collected only. */
  onStderrLine?: (line: string) => void;
}

export interface RunVmResult {
  exitCode: number | null;
  /** Set when QEMU was killed by a signal (ours after a timeout, or someone else's). */
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  /** The guest console (QEMU's stdout), line by line. */
  lines: string[];
  /** QEMU's own stderr, line by line (e.g. "vfio-user: ..." errors). */
  stderrLines: string[];
  durationMs: number;
  /** First console line of any kind (firmware included), from QEMU's start. */
  firstGuestOutputMs?: number;
  /** The /init sentinel: kernel booted, userspace running. */
  initMs?: number;
  /** The done sentinel: /init ran all its commands. */
  doneMs?: number;
}

/** Grace period between SIGTERM and SIGKILL after a timeout. */
const KILL_GRACE_MS = 2000;

/**
 * Removes terminal control sequences: SeaBIOS and the kernel's early console write `ESC c`,
 * CSI sequences (line wrap off, clear screen, colours), OSC titles and charset selections, which would
 * otherwise stick to the start of lines and break parsing.
 */
export function stripTerminalEscapes(text: string): string {
  return text
    .replace(/\x1b\[[0-?]*[ -/]*[@-~]/g, '') // CSI ... final byte
    .replace(/\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)/g, '') // OSC ... BEL or ST
    .replace(/\x1b[()*+][0-9A-Za-z]/g, '') // charset designation
    .replace(/\x1b[0-~]/g, '') // other two-byte escapes (ESC c reset, ESC 7/8, ESC =, ...)
    .replace(/[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f]/g, ''); // stray control bytes (keep \t \n \r)
}

/** Splits a byte stream into clean lines (CRLF or LF; a lone trailing CR is dropped). */
export function consoleLineSplitter(sink: (line: string) => void): { push(chunk: string): void; end(): void } {
  let pending = '';
  const emit = (raw: string): void => {
    sink(stripTerminalEscapes(raw).replace(/\r+$/, '').replace(/^.*\r(?=.)/, ''));
  };
  return {
    push(chunk: string): void {
      pending += chunk;
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        emit(pending.slice(0, nl));
        pending = pending.slice(nl + 1);
      }
    },
    end(): void {
      if (pending !== '') emit(pending);
      pending = '';
    },
  };
}

/** Runs QEMU to completion (power-off, crash or timeout) and returns the console transcript. */
export function runVm(opts: RunVmOptions): Promise<RunVmResult> {
  const cmd = opts.qemu.command(opts.args);
  const started = performance.now();
  const since = (): number => Math.round(performance.now() - started);
  const result: RunVmResult = {
    exitCode: null, signal: null, timedOut: false, lines: [], stderrLines: [], durationMs: 0,
  };

  return new Promise((resolve, reject) => {
    // stdin is a pipe we never write: `-serial stdio` reads it, and /dev/null would hand the
    // guest an immediate EOF; a pipe also keeps QEMU from touching the caller's terminal.
    const child = spawn(cmd.file, cmd.args, { env: cmd.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let killTimer: NodeJS.Timeout | undefined;
    const timeout = setTimeout(() => {
      result.timedOut = true;
      child.kill('SIGTERM');
      killTimer = setTimeout(() => child.kill('SIGKILL'), KILL_GRACE_MS);
    }, opts.timeoutMs);

    const serial = consoleLineSplitter((line) => {
      const now = since();
      if (result.firstGuestOutputMs === undefined && line.trim() !== '') result.firstGuestOutputMs = now;
      if (result.initMs === undefined && line.includes(GUEST_INIT_SENTINEL)) result.initMs = now;
      if (result.doneMs === undefined && line.includes(GUEST_DONE_SENTINEL)) result.doneMs = now;
      result.lines.push(line);
      opts.onLine?.(line);
    });
    const stderr = consoleLineSplitter((line) => {
      result.stderrLines.push(line);
      opts.onStderrLine?.(line);
    });
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (c: string) => serial.push(c));
    child.stderr.on('data', (c: string) => stderr.push(c));
    child.stdin.on('error', () => undefined); // QEMU exiting closes the pipe; not our error

    child.on('error', (err) => {
      clearTimeout(timeout);
      if (killTimer !== undefined) clearTimeout(killTimer);
      reject(new Error(`could not start QEMU (${cmd.file}): ${err.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timeout);
      if (killTimer !== undefined) clearTimeout(killTimer);
      serial.end();
      stderr.end();
      result.exitCode = code;
      result.signal = signal;
      result.durationMs = since();
      resolve(result);
    });
  });
}
