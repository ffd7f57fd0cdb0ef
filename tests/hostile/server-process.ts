/**
 * The server under attack, as users run it: `cli/main.ts serve` in a child process, so an
 * attack that kills or wedges it shows as a dead or silent process instead of taking the test
 * runner down with it. Its descriptors, mappings, RSS and CPU time are read from /proc, and
 * its log (stderr) is kept for the checks on log volume.
 *
 * EDU_PLUS_SERVER_ROOT points the suite at another checkout (an older commit, to show what an
 * attack did before a fix); the default is this repository.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VfioUserClient } from '../../protocol/client.ts';
import { PciRegion } from '../../protocol/wire.ts';

const ROOT = process.env.EDU_PLUS_SERVER_ROOT ?? join(import.meta.dirname, '..', '..');
export const EDU_ID = 0x010000ed;
/** Clock ticks per second of /proc/PID/stat's utime and stime (USER_HZ on Linux). */
const USER_HZ = 100;

export interface Footprint {
  readonly fds: number;
  /** Lines of /proc/PID/maps. */
  readonly maps: number;
  readonly rssKiB: number;
  /** The part of rssKiB that is shared memory: BAR1's pages once touched (64 MiB at most). */
  readonly shmemKiB: number;
  /** User plus system CPU time so far, in seconds. */
  readonly cpuSeconds: number;
}

export class ServerProcess {
  readonly dir: string;
  readonly socketPath: string;
  readonly tracePath: string;
  private readonly child: ChildProcess;
  private stderr: string[] = [];
  /** Bytes the server has logged so far. */
  logBytes = 0;
  exitCode: number | null = null;
  exitSignal: NodeJS.Signals | null = null;
  private readonly exited: Promise<void>;

  private constructor(args: readonly string[], opts: { umask?: number; env?: NodeJS.ProcessEnv }) {
    this.dir = mkdtempSync(join(tmpdir(), 'edu-plus-hostile-'));
    this.socketPath = join(this.dir, 'edu.sock');
    this.tracePath = `${this.socketPath}.trace`;
    const node = [process.execPath, '--import', 'tsx', join(ROOT, 'cli', 'main.ts'), 'serve', '--socket-path', this.socketPath, ...args];
    // A umask is the shell's to set: sh applies it and execs node in the same process.
    const argv = opts.umask === undefined ? node : ['sh', '-c', `umask ${opts.umask.toString(8)} && exec "$@"`, 'sh', ...node];
    this.child = spawn(argv[0]!, argv.slice(1), { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env });
    this.child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      this.logBytes += Buffer.byteLength(chunk);
      // Keep the tail only: a flooding server must not flood the test runner's memory too.
      this.stderr.push(chunk);
      if (this.stderr.length > 2000) this.stderr = this.stderr.slice(-1000);
    });
    this.exited = new Promise((resolve) =>
      this.child.once('exit', (code, signal) => {
        this.exitCode = code;
        this.exitSignal = signal;
        resolve();
      }),
    );
  }

  /** Starts a server and waits until it serves (it prints its attach line). */
  static async start(args: readonly string[] = [], opts: { umask?: number; env?: NodeJS.ProcessEnv } = {}): Promise<ServerProcess> {
    const s = new ServerProcess(args, opts);
    let out = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the server did not start within 30 s; its log:\n${s.log}`)), 30_000);
      s.child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
        out += chunk;
        if (out.includes('edu-plus is serving')) {
          clearTimeout(timer);
          resolve();
        }
      });
      s.child.once('exit', () => {
        clearTimeout(timer);
        reject(new Error(`the server exited while starting (code ${s.exitCode}); its log:\n${s.log}`));
      });
    });
    return s;
  }

  get pid(): number {
    return this.child.pid!;
  }

  get alive(): boolean {
    return this.exitCode === null && this.exitSignal === null;
  }

  /** The last part of the server's log. */
  get log(): string {
    return this.stderr.join('');
  }

  /** Forgets the log so far (a check can then count what one attack logged). */
  clearLog(): void {
    this.stderr = [];
    this.logBytes = 0;
  }

  footprint(): Footprint {
    const status = readFileSync(`/proc/${this.pid}/status`, 'utf8');
    const stat = readFileSync(`/proc/${this.pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start at field 3: utime is 14, stime 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return {
      fds: readdirSync(`/proc/${this.pid}/fd`).length,
      maps: readFileSync(`/proc/${this.pid}/maps`, 'utf8').split('\n').filter(Boolean).length,
      rssKiB: Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0),
      shmemKiB: Number(/RssShmem:\s+(\d+)/.exec(status)?.[1] ?? 0),
      cpuSeconds: (Number(fields[11]) + Number(fields[12])) / USER_HZ,
    };
  }

  /**
   * A fresh client: VERSION, then BAR0[0]. Retries while the previous client is still being
   * released (EBUSY or a closed connection), for up to `timeoutMs`. Returns the value read.
   */
  async probe(timeoutMs = 15_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    let last: unknown;
    while (Date.now() < deadline) {
      if (!this.alive) throw new Error(`the server died (code ${this.exitCode}, signal ${this.exitSignal}); its log:\n${tail(this.log)}`);
      let c: VfioUserClient | null = null;
      try {
        c = VfioUserClient.connect(this.socketPath);
        await withTimeout(c.version(), 5000, 'VERSION reply');
        const id = await withTimeout(c.regionRead(PciRegion.BAR0, 0n, 4), 5000, 'BAR0 read reply');
        return Buffer.from(id).readUInt32LE(0);
      } catch (err) {
        last = err;
      } finally {
        c?.close();
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`no fresh client was served within ${timeoutMs} ms: ${(last as Error)?.message}; server log:\n${tail(this.log)}`);
  }

  /** SIGTERM, and the exit code (null: it had to be killed). */
  async stop(timeoutMs = 10_000): Promise<number | null> {
    if (this.alive) {
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
      await this.exited;
      clearTimeout(timer);
    }
    rmSync(this.dir, { recursive: true, force: true });
    return this.exitSignal === 'SIGKILL' ? null : this.exitCode;
  }

  async waitExit(): Promise<void> {
    await this.exited;
  }
}

function tail(text: string, lines = 30): string {
  return text.split('\n').slice(-lines).join('\n');
}

export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
