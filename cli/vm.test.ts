/**
 * `vm` without booting anything: flag checks, the verdict's exit-code rules, reading a kernel
 * image's release, finding a modules_install tree, and the errors a user gets (exit 2).
 * tests/e2e/vm-cli.test.ts boots the real thing.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { gunzipSync, gzipSync } from 'node:zlib';
import {
  KernelInputError,
  concatInitramfs,
  customKernel,
  findHeadersInclude,
  findModulesTree,
  kernelImageRelease,
} from '../qemu-configs/custom-kernel.ts';
import { UsageError } from './flags.ts';
import { parseVmFlags } from './vm.ts';
import { vmHelp } from './vm-help.ts';
import { TEST_BEGIN, TEST_END, formatVerdict, judge } from './vm-report.ts';

const root = join(import.meta.dirname, '..');
const cli = (args: string[]) => [join(root, 'node_modules/tsx/dist/cli.mjs'), join(root, 'cli/main.ts'), ...args];

/** A file with a bzImage setup header whose kernel_version string says `release`. */
function fakeBzImage(release: string): Buffer {
  const image = Buffer.alloc(0x1000);
  image.write('HdrS', 0x202, 'latin1');
  image.writeUInt16LE(0x20f, 0x206); // boot protocol 2.15
  image.writeUInt16LE(0x300, 0x20e); // kernel_version at 0x200 + 0x300
  image.write(`${release} (dev@example) #1 SMP PREEMPT_DYNAMIC\0`, 0x500, 'latin1');
  return image;
}

const dir = mkdtempSync(join(tmpdir(), 'edu-plus-vm-unit-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** make modules_install's shape: <root>/lib/modules/<release>/{kernel/,modules.order}. */
function modulesTree(name: string, releases: string[]): string {
  const tree = join(dir, name);
  for (const release of releases) {
    mkdirSync(join(tree, 'lib/modules', release, 'kernel/drivers/vfio'), { recursive: true });
    writeFileSync(join(tree, 'lib/modules', release, 'modules.order'), 'kernel/drivers/vfio/vfio.ko\n');
  }
  return tree;
}

describe('vm flags', () => {
  it('has defaults: all tests, intel-iommu, shared memory, 300 s, 1024 MiB, FLR', () => {
    const o = parseVmFlags([]);
    assert.equal(o.tests, undefined);
    assert.equal(o.iommu, 'intel');
    assert.equal(o.sharedMemory, true);
    assert.equal(o.timeoutSeconds, 300);
    assert.equal(o.memoryMiB, 1024);
    assert.equal(o.shell, false);
    assert.equal(o.reset, 'flr');
    assert.deepEqual(o.devices, ['edu-plus']);
  });

  it('parses every option', () => {
    const o = parseVmFlags(['--kernel', 'bz', '--modules=m', '--tests', 'a, b,a', '--iommu', 'virtio', '--no-shared-memory',
      '--timeout', '60', '--memory', '512', '--trace', '--verbose', '--headers', 'h', '--socket-path', 's', '--reset', 'none']);
    assert.equal(o.reset, 'none');
    assert.deepEqual(o.tests, ['a', 'b']);
    assert.equal(o.iommu, 'virtio');
    assert.equal(o.sharedMemory, false);
    assert.equal(o.timeoutSeconds, 60);
    assert.equal(o.memoryMiB, 512);
    assert.equal(o.kernel, 'bz');
    assert.equal(o.modules, 'm');
    assert.deepEqual(parseVmFlags(['--devices', 'gpu, edu-plus']).devices, ['gpu', 'edu-plus']);
    const byo = parseVmFlags(['--add', 'a', '--run', './a 1', '--add=b', '--run', './a 2', '--junit', join(dir, 'r.xml')]);
    assert.deepEqual([byo.add, byo.run, byo.junit], [['a', 'b'], ['./a 1', './a 2'], join(dir, 'r.xml')]);
  });

  it('refuses mistakes with what to do', () => {
    const bad: [string[], RegExp][] = [
      [['--iommu', 'amd'], /--iommu must be intel or virtio/],
      [['--timeout', '1.5'], /whole seconds/],
      [['--memory', '64'], /from 128 to 65536/],
      [['--tests', ','], /at least one test name/],
      [['--modules', 'x'], /--modules belongs to --kernel/],
      [['--kernel', 'x'], /--modules DIR .* --initrd FILE .* --modules none/],
      [['--shell', '--timeout', '9'], /--shell has no timeout/],
      [['--shared-memory', '--no-shared-memory'], /contradict/],
      [['bzImage'], /takes no arguments/],
      [['--reset', 'bus'], /--reset must be none, flr, pm/],
      [['--kernal', 'x'], /unknown option --kernal; known options: --kernel/],
      [['--devices', 'edu-plus,tpu'], /--devices: no device "tpu"; devices: edu-plus, gpu/],
      [['--devices', 'gpu,gpu'], /names a device twice/],
      [['--devices', 'edu-plus,gpu', '--socket-path', 's'], /--socket-path names one socket: with several --devices/],
      [['--shell', '--run', 'x'], /--shell gives you the prompt instead/],
      [['--junit', '/nonexistent-dir/r.xml'], /directory \/nonexistent-dir does not exist/],
      [['--run'], /--run needs a value/],
    ];
    for (const [argv, message] of bad) assert.throws(() => parseVmFlags(argv), (e: unknown) => e instanceof UsageError && message.test(e.message), argv.join(' '));
  });

  it('--help states the exit codes', () => {
    const help = vmHelp();
    for (const needle of ['--kernel FILE', '--modules DIR', '--initrd FILE', '--headers DIR', '--shell', '--iommu KIND', '--trace',
      '--print-cmdline', '--devices LIST', '--add PATH', '--run CMD', '--junit FILE', 'KSFT_SKIP', '--selftests [TREE]', 'CONFIG_IOMMUFD', 'poweroff -f', 'Ctrl-A X', '0  all pass', '1  any failure', '2  wrong usage', '4  everything skipped']) {
      assert.ok(help.includes(needle), `help mentions ${needle}`);
    }
  });
});

describe('vm verdict', () => {
  const program = (name: string, body: string[], status = 0): string[] => [`${TEST_BEGIN} ${name}`, ...body, `${TEST_END} ${name} ${status}`];
  const facts = (lines: string[], tests: string[], extra: Partial<Parameters<typeof judge>[0]> = {}) =>
    judge({ lines, tests, timedOut: false, initSeen: true, doneSeen: true, ...extra });

  it('0 when everything passed, skips allowed when something passed', () => {
    const v = facts([
      ...program('a', ['KTAP version 1', '1..2', 'ok 1 x', 'ok 2 y # SKIP needs a patched kernel']),
      ...program('b', ['KTAP version 1', '1..1', '[    3.1] some printk', 'ok 1 z']),
    ], ['a', 'b']);
    assert.equal(v.exitCode, 0);
    assert.deepEqual([v.passed, v.failed, v.skipped], [2, 0, 1]);
    assert.match(formatVerdict(v).join('\n'), /PASS  a\s+1 passed, 0 failed, 1 skipped\n\s+SKIP x1 needs a patched kernel: y[\s\S]*verdict: PASS \(exit 0\)/);
  });

  it('4 when everything was skipped', () => {
    const v = facts(program('a', ['1..2', 'ok 1 x # SKIP no', 'ok 2 y # SKIP no']), ['a']);
    assert.equal(v.exitCode, 4);
    assert.match(formatVerdict(v).at(-1)!, /ALL SKIPPED \(exit 4\)/);
  });

  it('1 for a failure, a missing result, a crash, a program that never ran, a timeout, a panic', () => {
    assert.equal(facts(program('a', ['1..2', 'ok 1 x', 'not ok 2 y # expected 1'], 1), ['a']).exitCode, 1);
    const missing = facts(program('a', ['1..3', 'ok 1 x', 'ok 2 y'], 1), ['a']);
    assert.equal(missing.exitCode, 1);
    assert.deepEqual(missing.programs[0]!.problems, ['1 of 3 planned results missing']);
    const crashed = facts(program('a', ['1..1', 'ok 1 x'], 139), ['a']);
    assert.match(crashed.programs[0]!.problems[0]!, /status 139 \(killed by signal 11\)/);
    const notRun = facts(program('a', ['1..1', 'ok 1 x']), ['a', 'b']);
    assert.equal(notRun.exitCode, 1);
    assert.match(notRun.programs[1]!.problems[0]!, /did not run/);
    const unfinished = facts([`${TEST_BEGIN} a`, '1..2', 'ok 1 x'], ['a'], { doneSeen: false, timedOut: true, timeoutSeconds: 5 });
    assert.equal(unfinished.exitCode, 1);
    assert.match(unfinished.problems[0]!, /timed out after 5 s/);
    const panic = facts([...program('a', ['1..1', 'ok 1 x']), '[ 9.1] Kernel panic - not syncing: Attempted to kill init!'], ['a']);
    assert.equal(panic.exitCode, 1);
    assert.match(panic.problems[0]!, /crashed: .*Kernel panic/);
    const noBoot = facts([], ['a'], { initSeen: false, doneSeen: false });
    assert.match(noBoot.problems.join('\n'), /never reached \/init/);
    assert.equal(facts(program('a', []), ['a']).exitCode, 1, 'no plan, no results');
  });
});

describe('a kernel of your own', () => {
  it('reads the release from a bzImage setup header and from a vmlinux banner', () => {
    assert.equal(kernelImageRelease(fakeBzImage('7.3.0-rc1-dmabuf+')), '7.3.0-rc1-dmabuf+');
    const elf = Buffer.concat([Buffer.from('\x7fELF', 'latin1'), Buffer.alloc(100), Buffer.from('Linux version 7.4.0 (me@host) (gcc) #2\0')]);
    assert.equal(kernelImageRelease(elf), '7.4.0');
  });

  it('finds lib/modules/<release> in a modules_install tree, a /usr-merged tree, lib/modules or the release dir', async () => {
    const tree = modulesTree('one', ['7.3.0-dev']);
    const expected = join(tree, 'lib/modules/7.3.0-dev');
    assert.deepEqual(await findModulesTree(tree, '7.3.0-dev'), { release: '7.3.0-dev', dir: expected });
    assert.deepEqual(await findModulesTree(join(tree, 'lib/modules'), undefined), { release: '7.3.0-dev', dir: expected });
    assert.deepEqual(await findModulesTree(expected, '7.3.0-dev'), { release: '7.3.0-dev', dir: expected });
    const usr = join(dir, 'usr-merged');
    mkdirSync(join(usr, 'usr/lib/modules/7.3.0-dev/kernel'), { recursive: true });
    assert.equal((await findModulesTree(usr, '7.3.0-dev')).dir, join(usr, 'usr/lib/modules/7.3.0-dev'));
  });

  it('says what is wrong: no tree, another release, several releases', async () => {
    await assert.rejects(findModulesTree(join(dir, 'nope'), '1.0'), (e: unknown) => e instanceof KernelInputError && /no such directory/.test(e.message));
    await assert.rejects(findModulesTree(dir, '1.0'), /has no lib\/modules\/<release>\/ directory/);
    await assert.rejects(findModulesTree(modulesTree('other', ['7.2.0']), '7.3.0-dev'), /release 7\.3\.0-dev, but .* has modules for 7\.2\.0 only/);
    await assert.rejects(findModulesTree(modulesTree('two', ['7.2.0', '7.3.0']), undefined), /several releases \(7\.2\.0, 7\.3\.0\)/);
    assert.equal((await findModulesTree(join(dir, 'two'), '7.3.0')).release, '7.3.0');
  });

  it('checks the image and pairs it with its modules', async () => {
    const image = join(dir, 'bzImage');
    writeFileSync(image, fakeBzImage('7.3.0-dev'));
    const k = await customKernel({ image, modules: modulesTree('mine', ['7.3.0-dev']) });
    assert.deepEqual(k.kernel, { version: '7.3.0-dev', vmlinuz: image, modulesDir: join(dir, 'mine/lib/modules/7.3.0-dev') });
    assert.equal(k.hasModules, true);
    await assert.rejects(customKernel({ image: join(dir, 'missing') }), /--kernel .*missing: no such file/);
    writeFileSync(join(dir, 'not-a-kernel'), 'hello');
    await assert.rejects(customKernel({ image: join(dir, 'not-a-kernel') }), /is not a Linux kernel image/);
  });

  it('finds the headers_install include dir', () => {
    const hdr = join(dir, 'hdr');
    mkdirSync(join(hdr, 'include/linux'), { recursive: true });
    writeFileSync(join(hdr, 'include/linux/vfio.h'), '');
    assert.equal(findHeadersInclude(hdr), join(hdr, 'include'));
    assert.equal(findHeadersInclude(join(hdr, 'include')), join(hdr, 'include'));
    assert.throws(() => findHeadersInclude(dir), /has no include\/linux\/vfio\.h/);
  });

  it('--initrd: the user archive, zero padding to 4 bytes, then ours', async () => {
    const theirs = join(dir, 'theirs.cpio');
    writeFileSync(theirs, Buffer.from('070701abc'));
    const ours = gzipSync(Buffer.from('ours'));
    const combined = await concatInitramfs(theirs, ours);
    assert.equal(combined.length, 12 + ours.length);
    assert.deepEqual(combined.subarray(9, 12), Buffer.alloc(3));
    assert.equal(gunzipSync(combined.subarray(12)).toString(), 'ours');
    await assert.rejects(concatInitramfs(join(dir, 'none'), ours), /--initrd .*none: no such file/);
  });
});

describe('vm as a command', () => {
  const run = (args: string[]) => spawnSync(process.execPath, cli(['vm', ...args]), { encoding: 'utf8', env: { ...process.env, EDU_PLUS_QUIET: '1' } });

  it('exits 2 with what to do for a wrong flag, a missing kernel, mismatched modules', () => {
    const wrong = run(['--kernal', 'bzImage']);
    assert.equal(wrong.status, 2);
    assert.match(wrong.stderr, /unknown option --kernal; known options: --kernel/);
    const missing = run(['--kernel', join(dir, 'no-bzImage'), '--modules', dir]);
    assert.equal(missing.status, 2);
    assert.match(missing.stderr, /no such file\. Pass the kernel image you built/);
    const image = join(dir, 'bzImage-mismatch');
    writeFileSync(image, fakeBzImage('7.9.9'));
    const mismatch = run(['--kernel', image, '--modules', modulesTree('mismatch', ['7.3.0-dev'])]);
    assert.equal(mismatch.status, 2);
    assert.match(mismatch.stderr, /release 7\.9\.9, but .* has modules for 7\.3\.0-dev only/);
  });

  it('--help exits 0 and `help vm` shows the same text', () => {
    const help = run(['--help']);
    assert.equal(help.status, 0);
    assert.match(help.stdout, /^Usage: npm run vm -- \[options\]/);
    const viaHelp = spawnSync(process.execPath, cli(['help', 'vm']), { encoding: 'utf8' });
    assert.equal(viaHelp.stdout, help.stdout);
  });
});
