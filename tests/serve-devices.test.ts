/**
 * `edu-plus serve --device …` as a user runs it: the example device, gpu and edu-plus from one
 * process, each on its own socket, each inspected with `edu-plus inspect` through the package's
 * bin; and what a wrong --device gets told.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';

const root = join(import.meta.dirname, '..');
/** The `edu-plus` command exactly as npx runs it (package.json "bin"). */
const bin = (args: string[]) => [join(root, 'bin/edu-plus.mjs'), ...args];
const run = (args: string[]) => spawnSync(process.execPath, bin(args), { encoding: 'utf8', cwd: root });

function startServe(args: string[]): Promise<{ child: ChildProcess; stdout: string[] }> {
  const child = spawn(process.execPath, bin(['serve', ...args]), { stdio: ['ignore', 'pipe', 'pipe'], cwd: root });
  const stdout: string[] = [];
  const stderr: string[] = [];
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => stderr.push(chunk));
  return new Promise((resolve, reject) => {
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      stdout.push(...chunk.split('\n'));
      if (stdout.some((l) => l.startsWith('Stop with'))) resolve({ child, stdout });
    });
    child.once('exit', (code) => reject(new Error(`serve exited early with ${code}: ${stderr.join('')}`)));
  });
}

describe('edu-plus serve --device (several devices, one process)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'edu-plus-devices-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('serves the example device, gpu and edu-plus on their own sockets; inspect sees each', async () => {
    const scratch = join(dir, 'scratch.sock');
    const gpu = join(dir, 'gpu.sock');
    const edu = join(dir, 'edu.sock');
    const { child, stdout } = await startServe([
      '--device', `examples/scratch-device.ts,socket=${scratch}`,
      '--device', `gpu,socket=${gpu},vram-size=2G`,
      '--device', `edu-plus,socket=${edu},reset=flr,trace=none`,
    ]);
    try {
      assert.ok(stdout.includes(`scratch-device is serving on ${scratch}`), stdout.join('\n'));
      assert.ok(stdout.includes(`  watch:  edu-plus trace ${gpu}.trace`));
      assert.equal(existsSync(`${edu}.trace`), false, 'trace=none: no trace socket');

      const s = run(['inspect', scratch]);
      assert.equal(s.status, 0, s.stderr);
      assert.match(s.stdout, /PCI 1234:5c7a \(rev 01\), class 0xff0000/);
      assert.match(s.stdout, /BAR2: 1 MiB memory, 64-bit, prefetchable/);
      assert.match(s.stdout, /Capabilities: \[0x50\] PCI Express/);

      const g = run(['inspect', gpu]);
      assert.equal(g.status, 0, g.stderr);
      assert.match(g.stdout, /PCI 1af4:10f0 \(rev 01\), class 0x030200/);
      assert.match(g.stdout, /2 BAR2 +2 GiB +READ\|WRITE\|MMAP\|CAPS, fd passed, mmap areas 0x0\+2 GiB/);
      assert.match(g.stdout, /4 BAR4 +4 KiB +READ\|WRITE, trapped/);
      assert.match(g.stdout, /2 MSI-X +16 vector\(s\)/);

      const e = run(['inspect', edu]);
      assert.equal(e.status, 0, e.stderr);
      assert.match(e.stdout, /PCI 1234:11e8/);
      assert.match(e.stdout, /Capabilities: \[0x50\] PCI Express/, 'reset=flr reached edu-plus');
    } finally {
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      child.kill('SIGTERM');
      assert.equal(await exited, 0);
    }
    for (const path of [scratch, gpu, edu, `${gpu}.trace`]) assert.equal(existsSync(path), false, `${path} removed on shutdown`);
  });

  it('tells a wrong --device what to do, with exit code 2', () => {
    for (const [args, message] of [
      [['--device', 'tpu'], /--device tpu: no such device; shipped devices: edu-plus, gpu, or give the path of a module/],
      [['--device', 'gpu,vram-size=3G'], /--device gpu,vram-size 3G: VRAM size 3221225472 must be a power of two from 1 GiB/],
      [['--device', 'gpu,colour=red'], /--device gpu: unknown option colour; gpu takes socket, trace, vram-size, hugepages/],
      [['--device', 'edu-plus,reset=bus'], /--device edu-plus,reset must be none, flr, pm \(got "bus"\)/],
      [['--device', 'edu-plus,bar1-size'], /--device edu-plus,bar1-size needs a value/],
      [['--device', 'gpu,socket=/tmp/x.sock', '--device', 'edu-plus,socket=/tmp/x.sock'], /two devices would listen on \/tmp\/x\.sock/],
      [['--device', 'gpu', '--bar1-size', '1G'], /--bar1-size applies to one device: with --device, put it in the spec, e.g. --device edu-plus,bar1-size=VALUE/],
      [['--device', 'examples/no-such-device.ts'], /--device examples\/no-such-device\.ts: cannot load the module/],
      [['--device', 'README.md/x.ts'], /cannot load the module/],
      [['--device'], /--device needs a device/],
    ] as const) {
      const r = run(['serve', ...args]);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
    }
  });

  it('documents the --device form in serve --help', () => {
    const r = run(['serve', '--help']);
    assert.equal(r.status, 0);
    assert.match(r.stdout, /--device SPEC/);
    assert.match(r.stdout, /gpu +a GPU-like function \(1af4:10f0\)/);
    assert.match(r.stdout, /vram-size/);
  });
});
