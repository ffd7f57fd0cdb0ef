/**
 * The kernel's VFIO selftests without a VM: the awk that finds the iommufd variants in a
 * harness listing (run here with the host's awk; the guest runs busybox's), the shell line
 * that runs a program with them excluded and declared skipped, and the edits that put
 * edu-plus's driver into a scratch copy of the selftests' library.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { DECLARED_SKIP } from './guest-init.ts';
import { IOMMUFD_VARIANTS_AWK, NO_IOMMUFD_REASON, hugePageArgs, selftestCommand } from './selftests.ts';
import { SelftestsInputError, selftestPrograms, withDriverInLibvfioMk, withDriverInTable } from './selftests-build.ts';

/** A listing in the harness's -l layout: "%-20s %-25s %s" rows, fixtures split by dashes. */
function listing(fixtures: { name: string; variants: string[]; tests: string[] }[]): string {
  const row = (f: string, v: string, t: string) => `${f.padEnd(20)} ${v.padEnd(25)} ${t}`;
  const out = [row('# FIXTURE', 'VARIANT', 'TEST')];
  fixtures.forEach((fx, i) => {
    if (i > 0) out.push('-'.repeat(80));
    for (let r = 0; r < Math.max(fx.variants.length, fx.tests.length, 1); r++) out.push(row(r === 0 ? fx.name : '', fx.variants[r] ?? '', fx.tests[r] ?? ''));
  });
  return `${out.join('\n')}\n`;
}

function runAwk(input: string): string[] {
  const r = spawnSync('awk', [IOMMUFD_VARIANTS_AWK], { input, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim().split('\n').filter((l) => l !== '');
}

describe('finding the iommufd variants in a harness listing', () => {
  it('names every case of every iommufd variant, once per variant for -V, fixtures long and short', () => {
    const out = runAwk(listing([
      { name: 'global', variants: [], tests: [] },
      { name: 'a_fixture_name_longer_than_twenty', variants: ['vfio_type1_iommu_anonymous', 'iommufd_compat_type1_anonymous_hugetlb_2mb', 'iommufd'], tests: ['map'] },
      { name: 'short', variants: ['vfio_type1v2_iommu', 'iommufd'], tests: ['one', 'two', 'three'] },
      { name: 'no_variants_at_all', variants: [], tests: ['plain'] },
    ]));
    assert.deepEqual(out, [
      'V iommufd_compat_type1_anonymous_hugetlb_2mb',
      'C a_fixture_name_longer_than_twenty.iommufd_compat_type1_anonymous_hugetlb_2mb.map',
      'V iommufd',
      'C a_fixture_name_longer_than_twenty.iommufd.map',
      'C short.iommufd.one',
      'C short.iommufd.two',
      'C short.iommufd.three',
    ]);
  });

  it('finds nothing in a program without iommufd variants', () => {
    assert.deepEqual(runAwk(listing([{ name: 'vfio_pci_device_test', variants: [], tests: ['config_space_read_write', 'reset'] }, { name: 'vfio_pci_irq_test', variants: ['msi', 'msix'], tests: ['enable'] }])), []);
  });
});

describe('running a selftest in the guest', () => {
  it('without /dev/iommu: lists, declares the iommufd cases skipped, excludes them with -V before the user\'s options', () => {
    const cmd = selftestCommand('vfio_dma_mapping_test', '-v vfio_type1_iommu_anonymous');
    assert.match(cmd, /^if \[ -e \/dev\/iommu \]; then \/selftests\/vfio_dma_mapping_test -v vfio_type1_iommu_anonymous; else /);
    assert.match(cmd, /\/selftests\/vfio_dma_mapping_test -l 2>&1 >\/dev\/null \| awk /);
    assert.ok(cmd.includes(`${DECLARED_SKIP} \\1 ${NO_IOMMUFD_REASON.replace(/\//g, '\\/')}`));
    assert.match(cmd, /\/selftests\/vfio_dma_mapping_test \$\(sed -n 's\/\^V \/-V \/p' \/tmp\/vfio_dma_mapping_test\.iommufd\) -v vfio_type1_iommu_anonymous; fi; s=\$\?; killall -q -9 vfio_dma_mapping_test 2>\/dev\/null; exit \$s$/);
  });

  it('the declared-skip sed turns the awk\'s case lines into verdict lines', () => {
    const sedScript = /sed -n '([^']+)' \/tmp/.exec(selftestCommand('x'))![1]!;
    const r = spawnSync('sed', ['-n', sedScript], { input: 'V iommufd\nC f.iommufd.t\n', encoding: 'utf8' });
    assert.equal(r.stdout, `${DECLARED_SKIP} f.iommufd.t ${NO_IOMMUFD_REASON}\n`);
  });

  it('a program about iommufd itself is skipped whole (KTAP 1..0 # SKIP, exit 4) without /dev/iommu', () => {
    assert.equal(selftestCommand('vfio_iommufd_setup_test'),
      `if [ -e /dev/iommu ]; then /selftests/vfio_iommufd_setup_test; else echo '1..0 # SKIP ${NO_IOMMUFD_REASON}'; (exit 4); fi; ` +
      's=$?; killall -q -9 vfio_iommufd_setup_test 2>/dev/null; exit $s');
  });

  it('reserves a 1 GiB huge page only when the guest has room for it', () => {
    assert.equal(hugePageArgs(4096), 'hugepagesz=1G hugepages=1 hugepagesz=2M hugepages=8');
    assert.equal(hugePageArgs(1024), 'hugepagesz=2M hugepages=8');
  });
});

describe('edu-plus\'s driver in the selftests library', () => {
  const mk = 'LIBVFIO_C := iommu.c\nLIBVFIO_C += drivers/ioat/ioat.c\n\nLIBVFIO_OUTPUT := $(OUTPUT)/libvfio\nLIBVFIO_O := x\n';
  const table = '#include <libvfio.h>\n\nstatic struct vfio_pci_driver_ops *driver_ops[] = {\n\t&ioat_ops,\n};\n';

  it('is listed in libvfio.mk before the object list is derived, and first in the driver table', () => {
    const newMk = withDriverInLibvfioMk(mk);
    assert.ok(newMk.indexOf('LIBVFIO_C += drivers/edu_plus/edu_plus.c') < newMk.indexOf('LIBVFIO_OUTPUT :='));
    assert.ok(newMk.startsWith(mk.slice(0, mk.indexOf('LIBVFIO_OUTPUT'))));
    const newTable = withDriverInTable(table);
    assert.match(newTable, /extern struct vfio_pci_driver_ops edu_plus_ops;\n\nstatic struct vfio_pci_driver_ops \*driver_ops\[\] = \{\n\t&edu_plus_ops,\n\t&ioat_ops,\n\};/);
  });

  it('refuses a library it does not recognise rather than building without the driver', () => {
    assert.throws(() => withDriverInLibvfioMk('SRCS := a.c\n'), SelftestsInputError);
    assert.throws(() => withDriverInTable('int main(void) {}\n'), /no driver_ops\[\] table/);
  });

  it('reads the program list from the Makefile', () => {
    assert.deepEqual(selftestPrograms('CFLAGS = x\nTEST_GEN_PROGS += a_test\nTEST_GEN_PROGS += b_test\nTEST_FILES += s.sh\n'), ['a_test', 'b_test']);
  });
});
