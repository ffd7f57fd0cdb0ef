// Runs one provisioning tool (apt-get, apt-cache, dpkg-deb, xz, qemu --version) as a child
// process. Every failure becomes an Error that names the command and quotes its last output
// lines, because "exit code 100" alone tells the user nothing about what to fix.

import { spawn } from 'node:child_process';

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Called with each line of stdout and stderr as it arrives (for condensed progress). */
  onLine?: (line: string) => void;
  /** How many trailing output lines an error message quotes. */
  tailLines?: number;
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

/** A short display form of a command line for error messages. */
export function describeCommand(file: string, args: readonly string[]): string {
  const shown = args.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`));
  return [file, ...shown].join(' ');
}

/** Splits a stream into lines, calling `sink` for each complete one. */
function lineSplitter(sink: (line: string) => void): { push(chunk: string): void; end(): void } {
  let pending = '';
  return {
    push(chunk: string): void {
      pending += chunk;
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        sink(pending.slice(0, nl).replace(/\r$/, ''));
        pending = pending.slice(nl + 1);
      }
    },
    end(): void {
      if (pending !== '') sink(pending);
      pending = '';
    },
  };
}

/**
 * Runs `file args` to completion. Resolves with its output when it exits 0; rejects with an
 * Error naming the command, its exit status and its last output lines otherwise (including
 * when the program cannot be started at all, e.g. not installed).
 */
export function runCommand(file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const tailLines = opts.tailLines ?? 15;
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const stdout: string[] = [];
    const stderr: string[] = [];
    const tail: string[] = [];
    const remember = (line: string): void => {
      tail.push(line);
      if (tail.length > tailLines) tail.shift();
      opts.onLine?.(line);
    };
    const outLines = lineSplitter(remember);
    const errLines = lineSplitter(remember);
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (c: string) => {
      stdout.push(c);
      outLines.push(c);
    });
    child.stderr.on('data', (c: string) => {
      stderr.push(c);
      errLines.push(c);
    });
    child.on('error', (err) => {
      reject(new Error(`could not start \`${describeCommand(file, args)}\`: ${err.message}`));
    });
    child.on('close', (code, signal) => {
      outLines.end();
      errLines.end();
      if (code === 0) {
        resolve({ stdout: stdout.join(''), stderr: stderr.join('') });
        return;
      }
      const status = signal !== null ? `was killed by ${signal}` : `exited with status ${code}`;
      const quoted = tail.length > 0 ? `\nlast output:\n  ${tail.join('\n  ')}` : ' (no output)';
      const err = new Error(`\`${describeCommand(file, args)}\` ${status}${quoted}`) as Error & {
        output?: string;
      };
      // Callers that retry (e.g. apt after a 404) look at the full output, not just the tail.
      err.output = stdout.join('') + stderr.join('');
      reject(err);
    });
  });
}

/** Runs `file args` and returns stdout as a Buffer (for binary output such as `xz -dc`). */
export function runCommandBinary(file: string, args: readonly string[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => chunks.push(c));
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (c: string) => {
      stderr += c;
    });
    child.on('error', (err) => {
      reject(new Error(`could not start \`${describeCommand(file, args)}\`: ${err.message}`));
    });
    child.on('close', (code) => {
      if (code === 0) resolve(Buffer.concat(chunks));
      else reject(new Error(`\`${describeCommand(file, args)}\` exited with status ${code}: ${stderr.trim()}`));
    });
  });
}
