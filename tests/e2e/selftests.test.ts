/**
 * The kernel's own VFIO selftests in the guest (`vm --selftests`), booted for real: Debian's
 * linux-source of the provisioned kernel, built statically with edu-plus's driver, run against
 * edu-plus. Every program runs; vfio_pci_driver_test — a 1 GiB pin per case, ~20 s each under
 * TCG, about 5 minutes in full — runs three cases of one IOMMU mode (memcpy through the DMA
 * engine, a refused DMA from an unmapped IOVA, an MSI on request), selected with the harness's
 * own filters, as are the 1 GiB hugetlb variants of vfio_dma_mapping_test; `npm run vm --
 * --selftests` runs all of them. Debian's 7.3 kernel has no
 * IOMMUFD: those variants must be skips with that reason, never failures.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { explain, runVmCli, summary } from './cli-run.ts';

const NO_IOMMUFD = 'guest kernel has no IOMMUFD (CONFIG_IOMMUFD unset, no /dev/iommu)';
const DRIVER_SUBSET = 'vfio_pci_driver_test:-V vfio_type1_iommu -t memcpy_success -t memcpy_from_unmapped_iova -t send_msi';
// The 1 GiB hugetlb variants (the guest clears a 1 GiB page under TCG within the harness's
// 30 s per case) run in the full --selftests; here a loaded machine could time them out.
const MAPPING_SUBSET = 'vfio_dma_mapping_test:-V vfio_type1_iommu_anonymous_hugetlb_1gb -V vfio_type1v2_iommu_anonymous_hugetlb_1gb';
const PROGRAMS = [MAPPING_SUBSET, 'vfio_dma_mapping_mmio_test', 'vfio_iommufd_setup_test', 'vfio_pci_device_test',
  'vfio_pci_device_init_perf_test', 'vfio_pci_sriov_uapi_test'];

describe('vm --selftests: the kernel\'s VFIO selftests against edu-plus', { timeout: 30 * 60_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'edu-plus-selftests-e2e-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('every program passes or skips with its reason; the driver test drives edu-plus\'s DMA engine and MSI', async (t) => {
    const junit = join(dir, 'selftests.xml');
    const r = await runVmCli(['--selftests', '--tests', [...PROGRAMS, DRIVER_SUBSET].join(','), '--junit', junit]);
    if (r.status !== 0) explain(t, r);
    assert.equal(r.status, 0);
    const s = summary(r.stdout);
    assert.deepEqual(Object.fromEntries(s.programs), {
      vfio_dma_mapping_test: 'PASS 10 passed, 0 failed, 18 skipped',
      vfio_dma_mapping_mmio_test: 'PASS 6 passed, 0 failed, 9 skipped',
      vfio_iommufd_setup_test: 'SKIP 0 passed, 0 failed, 1 skipped',
      vfio_pci_device_test: 'PASS 4 passed, 0 failed, 1 skipped',
      vfio_pci_device_init_perf_test: 'PASS 2 passed, 0 failed, 3 skipped',
      vfio_pci_driver_test: 'PASS 3 passed, 0 failed, 21 skipped',
      vfio_pci_sriov_uapi_test: 'SKIP 0 passed, 0 failed, 1 skipped',
    });
    // The hugetlb variants ran (huge pages reserved at boot), they did not skip.
    assert.match(r.stdout, /^ok \d+ vfio_dma_mapping_test\.vfio_type1v2_iommu_anonymous_hugetlb_2mb\.dma_map_unmap$/m);
    assert.match(r.stdout, /^ok \d+ vfio_pci_driver_test\.vfio_type1v2_iommu\.send_msi$/m, 'our driver raised the MSI');
    assert.match(r.stdout, /edu-plus: DMA refused: DMA_ERROR 4 \(guest range not DMA-mapped\)/, 'the refused DMA was reported by DMA_ERROR');
    // Every skip says why: the missing IOMMUFD, or what edu-plus lacks.
    assert.match(r.stdout, new RegExp(`^\\s+SKIP x21 ${NO_IOMMUFD.replace(/[()/]/g, '\\$&')}$`, 'm'));
    // vm offers FLR by default, so the kernel's own reset test runs against edu-plus and passes.
    assert.match(r.stdout, /^ok \d+ vfio_pci_device_test\.reset$/m);
    assert.match(r.stdout, /^\s+SKIP x1 MSI-x: not supported: vfio_pci_irq_test\.msix\.enable_trigger_disable$/m);
    assert.match(r.stdout, /^\s+SKIP x1 SR-IOV may not be supported by the PF: \S+: vfio_pci_sriov_uapi_test$/m);
    const xml = readFileSync(junit, 'utf8');
    assert.match(xml, /<testcase classname="vfio_pci_driver_test" name="vfio_pci_driver_test.vfio_type1v2_iommu.memcpy_success"\/>/);
    assert.match(xml, /<testcase classname="vfio_iommufd_setup_test" name="vfio_iommufd_setup_test">\n\s+<skipped message="guest kernel has no IOMMUFD/);
  });
});
