/**
 * How `serve` ends when it cannot serve, by whose fault: a wrong flag or the user's own
 * inconsistent device is exit 2 with what to do; a device or server that throws is exit 1,
 * naming the device and socket, with the stack only under EDU_PLUS_DEBUG=1.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, describe, it } from 'node:test';

const root = join(import.meta.dirname, '..');
const run = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  spawnSync(process.execPath, [join(root, 'bin/edu-plus.mjs'), 'serve', ...args], {
    encoding: 'utf8',
    cwd: root,
    env: { ...process.env, EDU_PLUS_DEBUG: '', ...env },
    timeout: 60_000,
  });

describe('serve: exit codes by whose fault a failure is', () => {
  const dir = mkdtempSync(join(tmpdir(), 'edu-plus-failures-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  // ES modules, as a user's device module in a "type": "module" package is.
  writeFileSync(join(dir, 'package.json'), '{ "type": "module" }\n');
  const deviceIndex = pathToFileURL(join(root, 'device/index.ts')).href;
  const module = (name: string, source: string) => {
    const path = join(dir, name);
    writeFileSync(path, source);
    return path;
  };
  // A device whose construction hits a bug: what a crash in a device's code looks like.
  const buggy = module('buggy-device.ts', 'export default function buildBuggyDevice() {\n  throw new TypeError("registers is undefined");\n}\n');
  // The user's own device declares vendor 0xffff: their declaration, theirs to fix.
  const inconsistent = module(
    'inconsistent-device.ts',
    `import { PciFunction } from '${deviceIndex}';\n` +
      `export default (host) => new PciFunction(host, { name: 'bad', vendorId: 0xffff, deviceId: 1, revision: 0, classCode: 0xff0000, bars: [] });\n`,
  );
  const throwsOnLoad = module('throws-on-load.ts', 'throw new Error("the module crashed while loading");\nexport default () => null;\n');
  const socket = (name: string) => `socket=${join(dir, name)}`;

  it('a wrong flag: exit 2, saying what to do', () => {
    const r = run(['--wait-us', 'lots']);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /--wait-us must be a number of microseconds/);
  });

  it("the user's device module declares an inconsistent device: exit 2, naming the field", () => {
    const r = run(['--device', `${inconsistent},${socket('bad.sock')},trace=none`]);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /--device .*inconsistent-device\.ts: vendorId: 0xffff means "no device"/);
  });

  it('a device that throws while it is built: exit 1, naming device and socket, no stack by default', () => {
    const r = run(['--device', `${buggy},${socket('buggy.sock')},trace=none`]);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /cannot serve .*buggy-device\.ts on .*buggy\.sock: TypeError: registers is undefined/);
    assert.match(r.stderr, /EDU_PLUS_DEBUG=1 shows the stack/);
    assert.doesNotMatch(r.stderr, /buildBuggyDevice/);
  });

  it('the same with EDU_PLUS_DEBUG=1: the stack, down to the device function', () => {
    const r = run(['--device', `${buggy},${socket('buggy.sock')},trace=none`], { EDU_PLUS_DEBUG: '1' });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /\n\s+at .*buildBuggyDevice .*buggy-device\.ts:2/);
  });

  it('a device module that crashes while loading: exit 1; a module path that does not exist: exit 2', () => {
    const crashed = run(['--device', `${throwsOnLoad},${socket('load.sock')}`]);
    assert.equal(crashed.status, 1, crashed.stderr);
    assert.match(crashed.stderr, /throws-on-load\.ts: the device module failed to load: the module crashed while loading/);
    const missing = run(['--device', `${join(dir, 'no-such-device.ts')},${socket('none.sock')}`]);
    assert.equal(missing.status, 2, missing.stderr);
    assert.match(missing.stderr, /no-such-device\.ts: cannot load the module/);
  });
});
