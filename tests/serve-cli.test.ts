/**
 * `npm start`'s command as a user runs it: a child process serving on a socket, driven by our
 * blocking client, stopped with SIGTERM; and the errors a wrong flag gets.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { VfioUserClient } from '../protocol/client.ts';
import { close as closeFd, listenUnix } from '../protocol/native/libc.ts';
import { PciRegion } from '../protocol/wire.ts';

const root = join(import.meta.dirname, '..');
const cli = (args: string[]) => [join(root, 'node_modules/tsx/dist/cli.mjs'), join(root, 'cli/main.ts'), ...args];

function startServe(socketPath: string): Promise<{ child: ChildProcess; stdout: string[] }> {
  const child = spawn(process.execPath, cli(['serve', '--socket-path', socketPath]), { stdio: ['ignore', 'pipe', 'pipe'] });
  const stdout: string[] = [];
  return new Promise((resolve, reject) => {
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      stdout.push(...chunk.split('\n'));
      if (stdout.some((l) => l.startsWith('Stop with'))) resolve({ child, stdout });
    });
    child.once('exit', (code) => reject(new Error(`serve exited early with ${code}`)));
  });
}

describe('edu-plus serve (the npm start command)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'edu-plus-cli-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('prints the attach option, serves a blocking client, and removes its socket on SIGTERM', async () => {
    const socketPath = join(dir, 'serve.sock');
    const { child, stdout } = await startServe(socketPath);
    assert.ok(stdout.some((l) => l.includes(`-device '{"driver":"vfio-user-pci","socket":{"type":"unix","path":"${socketPath}"}}'`)));
    const client = VfioUserClient.connect(socketPath);
    client.requestSync(1, Buffer.from([0, 0, 0, 0, ...Buffer.from('{}\0')]));
    const id = client.regionReadSync(PciRegion.BAR0, 0n, 4);
    assert.equal(Buffer.from(id).readUInt32LE(0), 0x010000ed);
    client.close();
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
    assert.equal(existsSync(socketPath), false, 'the socket file is removed on shutdown');
  });

  it('refuses a second server on a live socket, naming the path', async () => {
    const socketPath = join(dir, 'busy.sock');
    const { child } = await startServe(socketPath);
    const second = spawnSync(process.execPath, cli(['serve', '--socket-path', socketPath]), { encoding: 'utf8' });
    child.kill('SIGTERM');
    assert.equal(second.status, 1);
    assert.match(second.stderr, /another server is listening on .*busy\.sock/);
  });

  it('answers a wrong flag with exit code 2 and what to do', () => {
    const r = spawnSync(process.execPath, cli(['serve', '--sockets', 'x']), { encoding: 'utf8' });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /unknown option --sockets; known options: --socket-path/);
    const reset = spawnSync(process.execPath, cli(['serve', '--reset', 'bus']), { encoding: 'utf8' });
    assert.equal(reset.status, 2);
    assert.match(reset.stderr, /--reset must be none, flr, pm \(got "bus"\)/);
    const h = spawnSync(process.execPath, cli(['serve', '--help']), { encoding: 'utf8' });
    assert.equal(h.status, 0);
    assert.match(h.stdout, /--socket-path PATH/);
    assert.match(h.stdout, /--reset METHOD/);
  });
});

describe('edu-plus inspect', () => {
  it('prints the device a server offers, and refuses a busy server clearly', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'edu-plus-inspect-'));
    const socketPath = join(dir, 'inspect.sock');
    const { child } = await startServe(socketPath);
    try {
      const r = spawnSync(process.execPath, cli(['inspect', socketPath]), { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /PCI 1234:11e8 \(rev 10\), class 0x00ff00/);
      assert.match(r.stdout, /BAR0: 1 MiB memory, 32-bit/);
      assert.match(r.stdout, /BAR1: 64 MiB memory, 64-bit, prefetchable/);
      assert.match(r.stdout, /1 BAR1 +64 MiB +READ\|WRITE\|MMAP\|CAPS, fd passed, mmap areas 0x0\+64 MiB/);
      assert.match(r.stdout, /Capabilities: \[0x40\] MSI: 1 vector\(s\), 64-bit address/);
      const json = JSON.parse(spawnSync(process.execPath, cli(['inspect', socketPath, '--json']), { encoding: 'utf8' }).stdout);
      assert.equal(json.irqs[1].count, 1);
      const holder = VfioUserClient.connect(socketPath);
      holder.requestSync(1, Buffer.from([0, 0, 0, 0, ...Buffer.from('{}\0')]));
      const busy = spawnSync(process.execPath, cli(['inspect', socketPath]), { encoding: 'utf8' });
      holder.close();
      assert.equal(busy.status, 2);
      assert.match(busy.stderr, /refused a second client \(EBUSY\)/);
    } finally {
      child.kill('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the blocking client', () => {
  it('gives up with ETIMEDOUT when a server never answers', () => {
    const dir = mkdtempSync(join(tmpdir(), 'edu-plus-mute-'));
    const path = join(dir, 'mute.sock');
    // A listener that accepts but never replies (the kernel queues the connection).
    const mute = listenUnix(path);
    try {
      const client = VfioUserClient.connect(path);
      assert.throws(() => client.requestSync(1, Buffer.from([0, 0, 0, 0]), [], 300), /no reply within 300 ms/);
      client.close();
    } finally {
      closeFd(mute);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
