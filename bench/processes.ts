/**
 * Child processes for the host suite: CPU pinning with taskset, servers that say "ready",
 * clients that run to completion, and the C program built on the spot.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';

/** CPUs this process may run on, and whether taskset exists to pin children to one of them. */
export interface Pinning {
  readonly taskset: boolean;
  readonly cpus: readonly number[];
}

/** Reads our own affinity list with `taskset -pc` ("pid N's current affinity list: 0,2-3"). */
export function detectPinning(): Pinning {
  const r = spawnSync('taskset', ['-pc', String(process.pid)], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return { taskset: false, cpus: [] };
  const list = /affinity list:\s*(\S+)/.exec(r.stdout)?.[1] ?? '';
  const cpus: number[] = [];
  for (const part of list.split(',')) {
    const [lo, hi] = part.split('-').map(Number);
    if (lo === undefined || !Number.isInteger(lo)) continue;
    for (let c = lo; c <= (hi ?? lo); c++) cpus.push(c);
  }
  return { taskset: cpus.length > 0, cpus };
}

/** argv prefixed with `taskset -c CPU` (unchanged when cpu is null: unpinned). */
export function pinned(cpu: number | null, argv: readonly string[]): string[] {
  return cpu === null ? [...argv] : ['taskset', '-c', String(cpu), ...argv];
}

/** Builds bench/c-echo.c with the host gcc into dir; returns the binary's path. */
export function buildCEcho(source: string, dir: string): { binary: string; compiler: string } {
  const binary = join(dir, 'c-echo');
  const r = spawnSync('gcc', ['-O2', '-Wall', '-Wextra', '-o', binary, source], { encoding: 'utf8' });
  if ((r.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') {
    throw new Error('gcc not found on PATH: the host suite compiles bench/c-echo.c as its C floor. Install gcc (Debian: apt-get install gcc) and rerun.');
  }
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`gcc failed to build ${source}:\n${r.stderr}`);
  const version = spawnSync('gcc', ['-dumpfullversion'], { encoding: 'utf8' }).stdout.trim();
  return { binary, compiler: `gcc ${version} -O2` };
}

export interface RunningServer {
  readonly child: ChildProcess;
  stderr(): string;
}

/** Starts a server and resolves once it prints the line `readyLine` on stdout. */
export function startServer(argv: readonly string[], cwd: string, timeoutMs = 20_000, readyLine = 'ready'): Promise<RunningServer> {
  const child = spawn(argv[0]!, argv.slice(1), { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  let out = '';
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (err += s));
  const server: RunningServer = { child, stderr: () => err };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${argv.join(' ')} did not print "${readyLine}" within ${timeoutMs} ms:\n${err}`));
    }, timeoutMs);
    child.stdout!.setEncoding('utf8').on('data', (s: string) => {
      out += s;
      if (out.split('\n').includes(readyLine)) {
        clearTimeout(timer);
        resolve(server);
      }
    });
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${argv.join(' ')} exited (${signal ?? code}) before it was ready:\n${err}`));
    });
  });
}

/** Stops a server (SIGTERM unless it already left on its own) and waits for it. */
export async function stopServer(server: RunningServer): Promise<void> {
  const { child } = server;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

/** Runs a client to completion; a non-zero exit or a timeout rejects with its stderr. */
export function runClient(argv: readonly string[], cwd: string, timeoutMs: number): Promise<void> {
  const child = spawn(argv[0]!, argv.slice(1), { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (err += s));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`${argv.join(' ')} failed (${signal === 'SIGKILL' ? `killed after ${timeoutMs} ms` : (signal ?? `exit ${code}`)}):\n${err}`));
    });
  });
}
