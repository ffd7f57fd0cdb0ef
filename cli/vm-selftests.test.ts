/**
 * `vm --selftests` without a VM: the option's forms, --tests entries with harness options, and
 * how the verdict reads what the selftests print — a declared skip for an excluded iommufd
 * case, a whole program skipped with `1..0 # SKIP`, kselftest's exit 4 when nothing else ran.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DECLARED_SKIP } from '../qemu-configs/guest-init.ts';
import { UsageError } from './flags.ts';
import { junitXml } from './junit.ts';
import { parseVmFlags } from './vm.ts';
import { TEST_BEGIN, TEST_END, formatVerdict, judge } from './vm-report.ts';
import { SELFTESTS_TIMEOUT_S, checkSelftestsOption, splitTestEntries } from './vm-selftests.ts';

const program = (name: string, body: string[], status: number): string[] => [`${TEST_BEGIN} ${name}`, ...body, `${TEST_END} ${name} ${status}`];
const verdictOf = (lines: string[], tests: string[]) => judge({ lines, tests, exitStatusJudged: tests, timedOut: false, initSeen: true, doneSeen: true });

describe('--selftests', () => {
  it('takes an optional tree and brings its own memory and timeout defaults', () => {
    const debian = parseVmFlags(['--selftests']);
    assert.deepEqual([debian.selftests, debian.memoryMiB, debian.timeoutSeconds], ['', 4096, SELFTESTS_TIMEOUT_S]);
    const tree = parseVmFlags(['--selftests', '/src/linux', '--memory', '2048', '--timeout', '600']);
    assert.deepEqual([tree.selftests, tree.memoryMiB, tree.timeoutSeconds], ['/src/linux', 2048, 600]);
    assert.equal(parseVmFlags(['--selftests', '--verbose']).selftests, '', 'an option after it is not its tree');
    assert.equal(parseVmFlags([]).selftests, undefined);
  });

  it('--tests entries may carry harness options after a colon', () => {
    const { names, args } = splitTestEntries(['vfio_pci_driver_test:-v vfio_type1v2_iommu -t send_msi', 'vfio_dma_mapping_test']);
    assert.deepEqual(names, ['vfio_pci_driver_test', 'vfio_dma_mapping_test']);
    assert.deepEqual([...args], [['vfio_pci_driver_test', '-v vfio_type1v2_iommu -t send_msi']]);
  });

  it('refuses a tree without the VFIO selftests before building anything', () => {
    assert.throws(() => checkSelftestsOption('/nonexistent'), (e: unknown) => e instanceof UsageError && /has no tools\/testing\/selftests\/vfio\/Makefile/.test(e.message));
  });
});

describe('judging the selftests', () => {
  it('counts declared skips with their reason next to the harness\'s own results', () => {
    const v = verdictOf(program('vfio_dma_mapping_mmio_test', [
      `${DECLARED_SKIP} vfio_dma_mapping_mmio_test.iommufd.map_full_bar guest kernel has no IOMMUFD (CONFIG_IOMMUFD unset, no /dev/iommu)`,
      'TAP version 13', '1..1', 'ok 1 vfio_dma_mapping_mmio_test.vfio_type1_iommu.map_full_bar',
    ], 0), ['vfio_dma_mapping_mmio_test']);
    assert.deepEqual([v.exitCode, v.passed, v.skipped, v.programs[0]!.problems], [0, 1, 1, []]);
    assert.match(formatVerdict(v).join('\n'), /SKIP x1 guest kernel has no IOMMUFD \(CONFIG_IOMMUFD unset, no \/dev\/iommu\): vfio_dma_mapping_mmio_test\.iommufd\.map_full_bar/);
    assert.match(junitXml(v), /name="vfio_dma_mapping_mmio_test.iommufd.map_full_bar">\n\s+<skipped message="guest kernel has no IOMMUFD/);
  });

  it('a whole program skipped (1..0 # SKIP reason, exit 4) is one skip with that reason, not a failure', () => {
    const v = verdictOf(program('vfio_pci_sriov_uapi_test', ['1..0 # SKIP SR-IOV may not be supported by the PF: 0000:00:01.0'], 4), ['vfio_pci_sriov_uapi_test']);
    assert.deepEqual([v.exitCode, v.skipped, v.programs[0]!.problems], [4, 1, []]);
    assert.equal(v.programs[0]!.skips[0]!.directive, 'SKIP SR-IOV may not be supported by the PF: 0000:00:01.0');
  });

  it('a harness timeout or an assertion is a failure; a crash of a KTAP program says the signal', () => {
    const v = verdictOf(program('vfio_pci_driver_test', [
      'TAP version 13', '1..2', '# init_remove: Test terminated by timeout', 'not ok 1 vfio_pci_driver_test.vfio_type1_iommu.init_remove',
    ], 134), ['vfio_pci_driver_test']);
    assert.equal(v.exitCode, 1);
    assert.deepEqual(v.programs[0]!.problems, ['1 of 2 planned results missing', 'exited with status 134 (killed by signal 6)']);
  });
});
