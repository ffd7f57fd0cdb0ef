/**
 * `edu-plus trace` as a user runs it (a child process against an in-process server, so it is
 * always spawned asynchronously: a blocked event loop could not answer it), and the trace
 * socket that `edu-plus serve` opens by default.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createEduPlus } from '../device/edu-plus.ts';
import { silentLogger } from '../protocol/log.ts';
import { VfioUserServer } from '../protocol/server.ts';
import { TraceClient } from './trace-client.ts';
import { type TraceServer, startTraceServer } from './trace-server.ts';

const root = join(import.meta.dirname, '..');
const cliArgs = (args: string[]) => [join(root, 'node_modules/tsx/dist/cli.mjs'), join(root, 'cli/main.ts'), ...args];

/** A running CLI child whose output is collected line by line. */
class Cli {
  readonly stdout: string[] = [];
  readonly stderr: string[] = [];
  readonly exited: Promise<number | null>;
  private readonly child: ChildProcess;
  private waiters: (() => void)[] = [];

  constructor(args: string[]) {
    this.child = spawn(process.execPath, cliArgs(args), { stdio: ['ignore', 'pipe', 'pipe'] });
    this.collect(this.child.stdout!, this.stdout);
    this.collect(this.child.stderr!, this.stderr);
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
  }

  private collect(stream: NodeJS.ReadableStream, lines: string[]): void {
    let partial = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      const parts = (partial + chunk).split('\n');
      partial = parts.pop()!;
      lines.push(...parts);
      for (const w of this.waiters.splice(0)) w();
    });
  }

  /** The first line of `lines` matching `re`, waiting for it. */
  async line(lines: string[], re: RegExp, timeoutMs = 15_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = lines.find((l) => re.test(l));
      if (found !== undefined) return found;
      if (Date.now() > deadline) throw new Error(`no line matching ${re} in ${timeoutMs} ms; stdout: ${this.stdout.join('\n')}\nstderr: ${this.stderr.join('\n')}`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
  }

  kill(signal: NodeJS.Signals): void {
    this.child.kill(signal);
  }
}

async function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const cli = new Cli(args);
  const code = await cli.exited;
  // Streams may deliver their last chunk just after 'exit'.
  await new Promise((resolve) => setTimeout(resolve, 50));
  return { code, stdout: cli.stdout.join('\n'), stderr: cli.stderr.join('\n') };
}

describe('edu-plus trace (the CLI)', () => {
  let dir: string;
  let server: VfioUserServer;
  let traceServer: TraceServer;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'edu-plus-trace-cli-'));
    server = VfioUserServer.listen({ socketPath: join(dir, 'dev.sock'), device: createEduPlus({ bar1Size: 1n << 20n }), log: silentLogger });
    traceServer = await startTraceServer({ socketPath: `${server.socketPath}.trace`, server, log: silentLogger });
  });

  after(async () => {
    await traceServer.close();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('--json prints one JSON line per event, bigints as decimal strings, and exits 0 on Ctrl-C', async () => {
    const cli = new Cli(['trace', traceServer.socketPath, '--json']);
    await cli.line(cli.stderr, /^tracing edu-plus on .*dev\.sock\.trace: client, region-read/);
    server.trace.emit({ type: 'dma-map', address: 1n << 40n, size: 0x1000n, withFd: true });
    const line = await cli.line(cli.stdout, /"dma-map"/);
    const event = JSON.parse(line);
    assert.deepEqual({ ...event, seq: 0, timeNs: '' }, { type: 'dma-map', address: String(1n << 40n), size: '4096', withFd: true, seq: 0, timeNs: '' });
    assert.match(event.timeNs, /^\d+$/);
    cli.kill('SIGINT');
    assert.equal(await cli.exited, 0);
  });

  it('prints readable lines for the types asked for only', async () => {
    const cli = new Cli(['trace', traceServer.socketPath, '--types', 'dma,client']);
    await cli.line(cli.stderr, /^tracing edu-plus on .*: dma, client \(Ctrl-C to stop\)/);
    server.trace.emit({ type: 'log', level: 'info', message: 'filtered out' });
    server.trace.emit({ type: 'dma', direction: 'to-device', guestAddress: 0x12345000n, deviceAddress: 0x40000n, length: 4096, ok: true, path: 'direct' });
    server.trace.emit({ type: 'client', event: 'connect' });
    await cli.line(cli.stdout, /client connect$/);
    assert.deepEqual(
      cli.stdout.filter(Boolean).map((l) => l.replace(/^\+ *\d+\.\d{3} ms {2}/, '')),
      ['dma to-device guest 0x12345000 → device 0x40000 4096 bytes (direct) ok', 'client connect'],
    );
    assert.match(cli.stdout[0]!, /^\+ +0\.000 ms {2}dma/);
    cli.kill('SIGTERM');
    assert.equal(await cli.exited, 0);
  });

  it('--registers prints the register dump once (or the device\'s plain refusal)', async () => {
    const r = await run(['trace', traceServer.socketPath, '--registers']);
    if (r.code === 0) assert.match(r.stdout, /^liveness +0x[0-9a-f]+ \(\d+\)$/m);
    else {
      assert.equal(r.code, 1);
      assert.match(r.stderr, /registers: edu-plus offers no register dump/);
    }
  });

  it('explains --help, a wrong type and a missing socket', async () => {
    const help = await run(['trace', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--types LIST +only these event types, comma-separated: client, region-read/);
    const wrong = await run(['trace', traceServer.socketPath, '--types', 'dma,bogus']);
    assert.equal(wrong.code, 2);
    assert.match(wrong.stderr, /--types: unknown event type "bogus"; types: client, /);
    const missing = await run(['trace', join(dir, 'nothing.trace')]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /cannot connect to the trace socket .*nothing\.trace: ENOENT \(is `edu-plus serve` running\?/);
  });
});

describe('edu-plus serve: its trace socket', () => {
  const dir = mkdtempSync(join(tmpdir(), 'edu-plus-serve-trace-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  async function startServe(args: string[]): Promise<Cli> {
    const cli = new Cli(['serve', ...args]);
    await cli.line(cli.stdout, /^Stop with/);
    return cli;
  }

  it('opens SOCKET.trace by default, says how to watch it, and removes it on shutdown', async () => {
    const socketPath = join(dir, 'a.sock');
    const serve = await startServe(['--socket-path', socketPath]);
    const tracePath = `${socketPath}.trace`;
    assert.ok(serve.stdout.includes(`Watch the device (events, registers) with: tsx cli/main.ts trace ${tracePath}`), serve.stdout.join('\n'));
    assert.equal(statSync(tracePath).mode & 0o777, 0o600);
    const client = await TraceClient.connect(tracePath);
    assert.equal((await client.info()).name, 'edu-plus');
    serve.kill('SIGTERM');
    assert.equal(await serve.exited, 0);
    assert.equal(await client.closed, 'server shutting down');
    assert.equal(existsSync(tracePath), false);
    assert.equal(existsSync(socketPath), false);
  });

  it('moves it with --trace-socket, drops it with --no-trace, and refuses both at once', async () => {
    const moved = join(dir, 'elsewhere.trace');
    const a = await startServe(['--socket-path', join(dir, 'b.sock'), '--trace-socket', moved]);
    assert.ok(existsSync(moved));
    a.kill('SIGTERM');
    assert.equal(await a.exited, 0);

    const socketPath = join(dir, 'c.sock');
    const b = await startServe(['--socket-path', socketPath, '--no-trace']);
    assert.equal(existsSync(`${socketPath}.trace`), false);
    assert.equal(b.stdout.some((l) => l.includes('cli/main.ts trace')), false);
    b.kill('SIGTERM');
    assert.equal(await b.exited, 0);

    const both = await run(['serve', '--socket-path', join(dir, 'd.sock'), '--no-trace', '--trace-socket', moved]);
    assert.equal(both.code, 2);
    assert.match(both.stderr, /--no-trace and --trace-socket contradict each other/);
  });
});
