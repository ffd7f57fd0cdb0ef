/*
 * edu_functions.c - every BAR0 function of the edu device (1234:11e8)
 * through vfio-pci: identification, liveness, access-size rules, factorial,
 * interrupt status, MSI and INTx through eventfds, and DMA in both
 * directions through a type1 IOMMU mapping. The register map is in
 * edu_functions.h; how edu-plus behaves where edu is unsafe, and how the
 * e2e test compares the two, is in the section "The device" of the
 * repository's README.md.
 *
 * The same binary runs against QEMU's in-process `-device edu` (the
 * reference) and against edu-plus over vfio-user, and the host compares the
 * two result lists line by line. So: result lines never carry values that
 * legitimately differ between runs (addresses, timings, fds) -- those go in
 * "# ..." diagnostics -- and nothing here depends on BAR1.
 *
 * Diagnostics the host reads:
 *   # dma map iova=0x... size=0x...
 *   # dma xfer dir=to-device|to-ram src=0x... dst=0x... count=0x... cmd=0x...
 *     one per transfer the device is asked to do, before it is started;
 *   # bad-dma xfer ... / # bad-dma-done
 *     the deliberately out-of-bounds transfer, which a correct device
 *     refuses (QEMU's edu only logs it), and the point after which the
 *     device must have dealt with it.
 *
 * This file opens the device and cleans up, and lists the cases in KTAP
 * order; they live in edu_functions_regs.c (identification, liveness,
 * access sizes, factorial), edu_functions_irq.c (interrupt registers, MSI,
 * INTx) and edu_functions_dma.c (DMA), with the BAR0 access helpers and
 * the shared state in edu_functions_mmio.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/mman.h>

#include "edu_functions.h"
#include "ktap.h"

/* ---- cases: each returns NULL when it ran, or why it was skipped ---- */

static const char *open_device(void)
{
	struct vfio_region_info bar1;
	uint16_t cmd;
	void *p;

	if (vu_find_pci_device(EDU_VENDOR, EDU_DEVICE, ef.bdf) ||
	    vu_bind_vfio_pci(ef.bdf) || vu_open_device(ef.bdf, &ef.dev)) {
		ktap_fail("%s", vu_error());
		return NULL;
	}
	ef.opened = true;
	ktap_diag("BDF %s, iommu group %d, %s", ef.bdf, ef.dev.group_id,
		  ef.dev.iommu_type == VFIO_TYPE1v2_IOMMU ?
		  "VFIO_TYPE1v2_IOMMU" : "VFIO_TYPE1_IOMMU");
	/* Only a diagnostic: QEMU's edu has no BAR1, edu-plus has. */
	if (vu_region_info(ef.dev.device, VFIO_PCI_BAR1_REGION_INDEX,
			   &bar1) == 0)
		ktap_diag("BAR1 size 0x%" PRIx64 " (not used here)",
			  (uint64_t)bar1.size);

	if (vu_region_info(ef.dev.device, VFIO_PCI_BAR0_REGION_INDEX,
			   &ef.bar0)) {
		ktap_fail("%s", vu_error());
		return NULL;
	}
	ktap_diag("BAR0 size 0x%" PRIx64 ", flags 0x%x",
		  (uint64_t)ef.bar0.size, ef.bar0.flags);
	if (!ktap_expect(ef.bar0.size >= 0x100, "BAR0 is 0x%" PRIx64 " bytes, "
			 "too small for the registers", (uint64_t)ef.bar0.size))
		return NULL;
	p = vu_mmap_region(ef.dev.device, &ef.bar0, 0, ef.bar0.size);
	if (!p) {
		ktap_fail("%s", vu_error());
		return NULL;
	}
	ef.bar0_map = p;
	ef.bar0_map_len = ef.bar0.size;

	/* For DMA and MSI: vfio-pci leaves bus mastering to the user. */
	if (vu_enable_bus_master(ef.dev.device, &cmd))
		ktap_fail("%s", vu_error());
	else
		ktap_diag("PCI command 0x%04x, bus mastering enabled", cmd);
	return NULL;
}

static const char *cleanup(void)
{
	if (!ef.opened)
		return "needs open_device";
	if (ef.bar0_map) {
		/* No transfer may be in flight when the mapping goes. */
		ef_expect_clear("DMA idle", EDU_REG_DMA_CMD, EDU_DMA_RUN,
				DMA_TIMEOUT_MS);
		ef_ack_all();
		ef_wr32(EDU_REG_STATUS, 0);
	}
	if (ef.dma_mapped) {
		uint64_t unmapped = 0;

		if (vu_dma_unmap(ef.dev.container, DMA_IOVA, DMA_LEN,
				 &unmapped))
			ktap_fail("%s", vu_error());
		else
			ktap_expect_eq("VFIO_IOMMU_UNMAP_DMA size", DMA_LEN,
				       unmapped);
		ef.dma_mapped = false;
	}
	if (ef.buf) {
		munmap(ef.buf, DMA_LEN);
		ef.buf = NULL;
	}
	if (ef.bar0_map) {
		/* errno in its own statement: see source-checks.ts. */
		int ret = munmap((void *)ef.bar0_map, ef.bar0_map_len);
		int err = errno;

		ktap_expect(ret == 0, "munmap(BAR0): %s (errno %d)",
			    strerror(err), err);
		ef.bar0_map = NULL;
	}
	vu_close_device(&ef.dev);
	ef.opened = false;
	return NULL;
}

static const struct ktap_case cases[] = {
	{ "open_device", open_device },
	{ "identification_liveness", ef_case_identification_liveness },
	{ "access_wrong_size_below_0x80", ef_case_access_wrong_size_below_0x80 },
	{ "access_dma_regs_64bit", ef_case_access_dma_regs_64bit },
	{ "access_unhandled_offsets", ef_case_access_unhandled_offsets },
	{ "factorial_polled", ef_case_factorial_polled },
	{ "irq_status_raise_ack", ef_case_irq_status_raise_ack },
	{ "msi_eventfd", ef_case_msi_eventfd },
	{ "intx_eventfd", ef_case_intx_eventfd },
	{ "dma_roundtrip", ef_case_dma_roundtrip },
	{ "dma_done_msi", ef_case_dma_done_msi },
	{ "bad_dma_overrun", ef_case_bad_dma_overrun },
	{ "cleanup", cleanup },
};

int main(void)
{
	const size_t n = sizeof(cases) / sizeof(cases[0]);

	ktap_plan((int)n);
	ktap_diag("edu_functions: edu %04x:%04x BAR0 functions through "
		  "vfio-pci", EDU_VENDOR, EDU_DEVICE);
	ktap_run_cases(cases, n);
	/* cleanup normally did this; a no-op then. */
	if (ef.bar0_map)
		munmap((void *)ef.bar0_map, ef.bar0_map_len);
	vu_close_device(&ef.dev);
	return ktap_finish();
}
