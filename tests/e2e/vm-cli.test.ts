/**
 * `npm run vm` as a developer runs it, two real boots: the default (provisioned Debian 7.3)
 * kernel, and a kernel other than the provisioned one passed as --kernel/--modules — Debian's
 * cloud flavour, laid out like `make modules_install INSTALL_MOD_PATH=<dir>` output, with the
 * VFIO modules re-encoded as plain .ko and .ko.zst (what a developer's build installs). The
 * exit code must follow the printed verdict.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { provisionKernel } from '../../qemu-configs/provision-kernel.ts';
import { assertPassed, explain, runVmCli, summary } from './cli-run.ts';

describe('npm run vm: boots a guest with edu-plus and exits with the verdict', { timeout: 30 * 60_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'edu-plus-vm-e2e-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('the default kernel: edu_plus_basic and edu_functions pass, exit 0', async (t) => {
    const r = await runVmCli(['--tests', 'edu_plus_basic,edu_functions']);
    assertPassed(t, r, { edu_plus_basic: 'PASS 13 passed, 0 failed, 0 skipped', edu_functions: 'PASS 13 passed, 0 failed, 0 skipped' });
    assert.match(r.stdout, /^ok 13 bar1_mmap_page_pattern$/m, 'the KTAP lines are streamed');
    assert.match(r.stderr, /guest \/init started on kernel 7\.3\.\S+-amd64;/);
    assert.match(r.stderr, /\[edu-plus\] vm: booting \(/, 'progress on stderr');
  });

  it('--kernel/--modules with Debian\'s cloud flavour in a modules_install tree: every test, exit code = verdict', async (t) => {
    const cloud = await provisionKernel({ flavour: 'cloud-amd64' });
    // <dir>/lib/modules/<release>/..., as `make modules_install INSTALL_MOD_PATH=<dir>` leaves it.
    const tree = join(dir, 'modules-install');
    const release = join(tree, 'lib/modules', cloud.version);
    cpSync(cloud.modulesDir, release, { recursive: true, filter: (src) => !src.endsWith('vmlinuz.unsigned') });
    const vfio = join(release, 'kernel/drivers/vfio');
    assert.equal(spawnSync('xz', ['-d', join(vfio, 'vfio.ko.xz')]).status, 0);
    assert.equal(spawnSync('xz', ['-d', join(vfio, 'vfio_iommu_type1.ko.xz')]).status, 0);
    assert.equal(spawnSync('zstd', ['-q', '--rm', join(vfio, 'vfio_iommu_type1.ko')]).status, 0);
    assert.ok(existsSync(join(vfio, 'vfio.ko')) && existsSync(join(vfio, 'vfio_iommu_type1.ko.zst')));
    // Where `make M=drivers/vfio/pci modules_install` puts a rebuilt module: updates/ must win
    // over the stock kernel/ copy, as with modprobe.
    mkdirSync(join(release, 'updates'), { recursive: true });
    assert.equal(spawnSync('sh', ['-c', 'xz -dc "$0" > "$1"', join(vfio, 'pci/vfio-pci.ko.xz'), join(release, 'updates/vfio-pci.ko')]).status, 0);

    const r = await runVmCli(['--kernel', cloud.vmlinuz, '--modules', tree, '--trace']);
    const s = summary(r.stdout);
    if (r.status !== s.announced || s.programs.get('edu_plus_basic')?.startsWith('PASS') !== true) explain(t, r);
    assert.equal(r.status, s.announced, 'the exit code is the one the verdict announces');
    const programs = [...s.programs.values()];
    const expected = programs.some((p) => p.startsWith('FAIL')) ? 1 : programs.some((p) => p.startsWith('PASS')) ? 0 : 4;
    assert.equal(r.status, expected, `exit code follows the per-program results: ${programs.join('; ')}`);
    assert.equal(s.programs.get('edu_plus_basic'), 'PASS 13 passed, 0 failed, 0 skipped');
    assert.equal(s.programs.get('edu_functions'), 'PASS 13 passed, 0 failed, 0 skipped');
    assert.match(r.stderr, new RegExp(`guest /init started on kernel ${cloud.version.replace(/[.+]/g, '\\$&')};`), 'the cloud kernel booted');
    assert.match(r.stderr, /modules vfio vfio_iommu_type1 .*vfio_pci/, 'the modules came from the tree');
    assert.match(r.stdout, /^vfio_pci\s+in-tree \(taint -\)\s+updates\/vfio-pci\.ko\s+<- updates\/ of your --modules, /m,
      'the guest loaded updates/vfio-pci.ko, and the provenance says so');
    assert.match(r.stderr, /^trace \+\s+[\d.]+ ms {2}region-read BAR0\+0x0 4 bytes = 0x010000ed$/m, '--trace streams the device trace');
  });
});
