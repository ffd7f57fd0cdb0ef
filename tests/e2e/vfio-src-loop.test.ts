/**
 * The out-of-tree vfio-pci loop end to end, through the real `vm --vfio-src` code path: Debian's
 * linux-source of the guest kernel's release (provisionLinuxSource, cached read-only), a working
 * tree made from it with a change of ours in drivers/vfio/pci (a module parameter whose name
 * carries a token fresh for each run, so only this run's build can show it) and in the VFIO
 * UAPI header, then a real boot. The guest must run the changed module: out of tree, the built
 * file's build ID, the parameter in /sys/module/vfio_pci/parameters; and the tests must pass.
 * A compile error in the tree must fail with the compiler's own message, before any boot.
 *
 * Cost: the first run provisions linux-source (~170 MB) and the kbuild toolchain (~70 MB) once;
 * later runs rebuild only vfio_pci.c and boot once (about a minute under TCG).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { describe, it } from 'node:test';
import { checkoutCacheDir } from '../../qemu-configs/cache.ts';
import { provisionKernel } from '../../qemu-configs/provision-kernel.ts';
import { provisionLinuxSource } from '../../qemu-configs/provision-linux-source.ts';
import { assertPassed, explain, runVmCli } from './cli-run.ts';

/**
 * A developer's tree without copying 1.8 GB: symbolic links to the pristine tree, except the
 * paths to `copied` files and directories, which are real copies (mtimes kept) that the test
 * may change. Made once per `dir` and `copied` (a marker records them).
 */
function workingTree(pristine: string, dir: string, copied: string[]): void {
  const marker = join(dir, '.edu-plus-working-tree');
  const wanted = JSON.stringify({ pristine, copied });
  if (existsSync(marker) && readFileSync(marker, 'utf8') === wanted) return;
  rmSync(dir, { recursive: true, force: true });
  const link = (rel: string): void => {
    const inside = copied.filter((c) => c === rel || c.startsWith(`${rel}/`));
    const target = join(dir, rel);
    if (inside.length === 0) {
      symlinkSync(join(pristine, rel), target);
    } else if (inside.includes(rel)) {
      cpSync(join(pristine, rel), target, { recursive: true, preserveTimestamps: true });
    } else {
      mkdirSync(target, { recursive: true });
      for (const entry of readdirSync(join(pristine, rel))) link(rel === '' ? entry : `${rel}/${entry}`);
    }
  };
  mkdirSync(dir, { recursive: true });
  for (const entry of readdirSync(pristine)) link(entry);
  writeFileSync(marker, wanted);
}

/** `text` with `before` replaced by `after`; fails loudly if the anchor moved. */
function changed(text: string, before: string, after: string): string {
  assert.ok(text.includes(before), `the pristine tree no longer contains ${JSON.stringify(before)}: adjust the test's change`);
  return text.replace(before, after);
}

/**
 * Gives the working tree's copy of `rel` the pristine content, changed by `change`, writing it
 * only when it differs: an untouched file keeps its mtime, so the loop's rebuild stays
 * incremental across runs (the tree lives at a fixed place in the cache, and so does the
 * loop's build directory, keyed by the tree's path).
 */
function setFile(pristine: string, dir: string, rel: string, change: (text: string) => string = (t) => t): void {
  const want = change(readFileSync(join(pristine, rel), 'utf8'));
  if (readFileSync(join(dir, rel), 'utf8') !== want) writeFileSync(join(dir, rel), want);
}

describe('npm run vm -- --vfio-src: Debian\'s linux-source with a change of ours, built and run in the guest', { timeout: 40 * 60_000 }, () => {
  const tree = join(checkoutCacheDir(), 'test-trees', 'vfio-src-loop');
  const copied = ['drivers/vfio/pci', 'include/uapi/linux/vfio.h'];
  const token = `edu_plus_loop_${randomBytes(4).toString('hex')}`;

  /** The working tree: pristine drivers/vfio/pci except vfio_pci.c changed by `change`, and our UAPI define. */
  async function prepareTree(change: (text: string) => string): Promise<string> {
    const source = await provisionLinuxSource();
    workingTree(source.dir, tree, copied);
    for (const rel of readdirSync(join(source.dir, 'drivers/vfio/pci'), { recursive: true, encoding: 'utf8' })) {
      const path = `drivers/vfio/pci/${rel}`;
      if (statSync(join(source.dir, path)).isFile()) setFile(source.dir, tree, path, path === 'drivers/vfio/pci/vfio_pci.c' ? change : undefined);
    }
    // A UAPI change the guest tests must be compiled against (a new define changes no ABI).
    setFile(source.dir, tree, 'include/uapi/linux/vfio.h', (text) => changed(text, '#define VFIO_API_VERSION', '#define EDU_PLUS_LOOP_UAPI_MARK 1\n#define VFIO_API_VERSION'));
    return source.dir;
  }

  it('wrong input exits 2 saying what is wrong: not a kernel tree, another version, an ambiguous --modules tree', async (t) => {
    const source = await provisionLinuxSource();
    const kernel = await provisionKernel();
    const scratch = mkdtempSync(join(tmpdir(), 'edu-plus-loop-input-'));
    t.after(() => rmSync(scratch, { recursive: true, force: true }));
    const notTree = await runVmCli(['--vfio-src', join(source.dir, 'drivers/vfio/pci')]);
    assert.equal(notTree.status, 2);
    assert.match(notTree.stderr, /is not a Linux kernel tree .* not drivers\/vfio\/pci itself/);
    // The same tree claiming another sublevel: a symlinked copy with its own Makefile.
    const older = join(scratch, 'older');
    workingTree(source.dir, older, ['Makefile']);
    setFile(source.dir, older, 'Makefile', (text) => changed(text, '\nSUBLEVEL = 4\n', '\nSUBLEVEL = 1\n'));
    const mismatch = await runVmCli(['--vfio-src', older]);
    assert.equal(mismatch.status, 2);
    assert.match(mismatch.stderr, /is Linux 7\.3\.1, but the guest kernel is 7\.3\.4\S* \(Linux 7\.3\.4\)/);
    // A modules_install tree with vfio-pci twice in updates/ (.ko and .ko.xz).
    const release = join(scratch, 'mods/lib/modules', kernel.version);
    // Only the VFIO part of the stock tree (and its top-level files): resolution fails on
    // vfio_pci before anything else is read.
    const wanted = ['kernel/drivers/vfio', 'kernel/virt'];
    cpSync(kernel.modulesDir, release, {
      recursive: true,
      filter: (src) => {
        const rel = relative(kernel.modulesDir, src);
        return !rel.endsWith('vmlinuz.unsigned') && (!rel.startsWith('kernel') || wanted.some((w) => w.startsWith(rel) || rel.startsWith(w)));
      },
    });
    mkdirSync(join(release, 'updates'));
    cpSync(join(release, 'kernel/drivers/vfio/pci/vfio-pci.ko.xz'), join(release, 'updates/vfio-pci.ko.xz'));
    assert.equal(spawnSync('sh', ['-c', 'xz -dc "$0" > "$1"', join(release, 'updates/vfio-pci.ko.xz'), join(release, 'updates/vfio-pci.ko')]).status, 0);
    const ambiguous = await runVmCli(['--kernel', kernel.vmlinuz, '--modules', join(scratch, 'mods')]);
    if (ambiguous.status !== 2) explain(t, ambiguous);
    assert.equal(ambiguous.status, 2);
    assert.match(ambiguous.stderr, /module vfio_pci is ambiguous in .*: updates\/vfio-pci\.ko and updates\/vfio-pci\.ko\.xz have the same priority/);
  });

  it('a compile error in the tree fails with the compiler\'s message and no boot', async (t) => {
    await prepareTree((text) => changed(text, 'static bool nointxmask;', 'static bool nointxmask = not_declared_anywhere;'));
    const r = await runVmCli(['--vfio-src', tree, '--tests', 'edu_plus_basic']);
    if (r.status !== 1) explain(t, r);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /edu-plus: building drivers\/vfio\/pci of .* failed/);
    assert.match(r.stderr, /vfio_pci\.c:\d+:\d+: error: .not_declared_anywhere. undeclared/, 'the compiler\'s own words');
    assert.doesNotMatch(r.stderr, /booting/, 'no VM for a tree that does not compile');
  });

  it('the changed vfio-pci runs in the guest (out of tree, its build ID, our parameter) and the tests pass', async (t) => {
    const pristine = await prepareTree((text) => changed(text, 'static bool nointxmask;',
      `static bool nointxmask;\nstatic int ${token} = 1;\nmodule_param(${token}, int, 0444);\nMODULE_PARM_DESC(${token}, "edu-plus out-of-tree loop test marker");`));

    const started = performance.now();
    const r = await runVmCli(['--vfio-src', tree, '--tests', 'edu_plus_basic,edu_functions']);
    t.diagnostic(`vm --vfio-src (edit to verdict) took ${((performance.now() - started) / 1000).toFixed(1)} s`);
    assertPassed(t, r, { edu_plus_basic: 'PASS 13 passed, 0 failed, 0 skipped', edu_functions: 'PASS 13 passed, 0 failed, 0 skipped' });

    // Provenance: both rebuilt modules out of tree, from the loop's build, with our parameter.
    assert.match(r.stdout, /^vfio_pci\s+out-of-tree \(taint O\w*\)\s+updates\/edu-plus\/vfio-pci\.ko\s+<- built from /m);
    assert.match(r.stdout, /^vfio_pci_core\s+out-of-tree \(taint O\w*\)\s+updates\/edu-plus\/vfio-pci-core\.ko\s+<- built from /m);
    assert.match(r.stdout, /^vfio\s+in-tree \(taint -\)\s+kernel\/drivers\/vfio\/vfio\.ko\s+<- stock, /m, 'the rest stays stock');
    assert.match(r.stdout, new RegExp(`^\\s+parameters .*\\b${token}\\b`, 'm'), 'our parameter exists in /sys/module/vfio_pci/parameters');
    assert.doesNotMatch(r.stdout, /mlx5|virtio_vfio|nvgrace/, 'no stock variant driver on a rebuilt core');
    assert.match(r.stderr, /guest tests use the tree's UAPI: linux\/vfio\.h differ/);
    assert.doesNotMatch(readFileSync(join(pristine, 'drivers/vfio/pci/vfio_pci.c'), 'utf8'), /edu_plus_loop_/, 'the cached pristine tree is untouched');
  });
});
