/*
 * edu_functions.c - every BAR0 function of the edu device (1234:11e8)
 * through vfio-pci: identification, liveness, access-size rules, factorial,
 * interrupt status, MSI and INTx through eventfds, and DMA in both
 * directions through a type1 IOMMU mapping (register map:
 * /work/shared/notes/edu-plus-device.md).
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
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
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
	if (vu_region_info(ef.dev.device, VFIO_PCI_BAR1_REGION_INDEX, &bar1) == 0)
		ktap_diag("BAR1 size 0x%" PRIx64 " (not used here)",
			  (uint64_t)bar1.size);

	if (vu_region_info(ef.dev.device, VFIO_PCI_BAR0_REGION_INDEX, &ef.bar0)) {
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

static const char *identification_liveness(void)
{
	static const uint32_t values[] = {
		0, 0xffffffff, 0x12345678, 0xa5a5a5a5,
	};

	if (!ef.bar0_map)
		return "needs open_device";
	ef_expect_reg("identification", EDU_REG_ID, EDU_ID_VALUE);
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		uint32_t got;

		if (!ef_wr32(EDU_REG_LIVENESS, values[i]) ||
		    !ef_rd32(EDU_REG_LIVENESS, &got))
			return NULL;
		ktap_expect(got == ~values[i], "liveness: wrote 0x%08x, "
			    "expected 0x%08x, got 0x%08x", values[i],
			    ~values[i], got);
	}
	/* Reading it does not change it. */
	ef_expect_reg("liveness read twice", EDU_REG_LIVENESS, ~values[3]);
	return NULL;
}

/*
 * Below 0x80 only 4-byte accesses reach a register. An 8-byte access gets
 * to edu, which answers all ones and drops the write; a 2-byte one is
 * refused by QEMU's memory core (the region's valid.min_access_size is 4),
 * which answers 0 and drops the write before edu sees it.
 *
 * Every access here is naturally aligned: under TCG, QEMU splits an
 * unaligned load or store to MMIO into aligned pieces before any device
 * sees it (an 8-byte store at 0x04 becomes 4-byte stores to 0x04 and 0x08).
 */
static const char *access_wrong_size_below_0x80(void)
{
	const uint32_t live = 0x11223344;
	uint32_t fact;
	uint64_t v;

	if (!ef.bar0_map)
		return "needs open_device";
	/* A known factorial result to see whether a write starts another. */
	if (!ef_wr32(EDU_REG_STATUS, 0) || !ef_wr32(EDU_REG_FACTORIAL, 4) ||
	    !ef_expect_clear("4!", EDU_REG_STATUS, EDU_STATUS_COMPUTING,
			     FACT_TIMEOUT_MS) ||
	    !ef_rd32(EDU_REG_FACTORIAL, &fact) ||
	    !ktap_expect_eq("4!", 24, fact) ||
	    !ef_wr32(EDU_REG_LIVENESS, live))
		return NULL;

	if (ef_rd(EDU_REG_ID, 8, &v))
		ktap_expect_eq("8-byte read of 0x00", UINT64_MAX, v);
	if (ef_rd(EDU_REG_FACTORIAL, 8, &v))
		ktap_expect_eq("8-byte read of 0x08", UINT64_MAX, v);
	/* Covers 0x00-0x07: the liveness bytes must not take it. */
	if (ef_wr(EDU_REG_ID, 8, 0x0123456789abcdefull))
		ef_expect_reg("liveness after an 8-byte write to 0x00",
			      EDU_REG_LIVENESS, ~live);
	if (ef_wr(EDU_REG_FACTORIAL, 8, 5) &&
	    ef_expect_clear("factorial after an 8-byte write", EDU_REG_STATUS,
			    EDU_STATUS_COMPUTING, FACT_TIMEOUT_MS))
		ef_expect_reg("factorial after an 8-byte write to 0x08",
			      EDU_REG_FACTORIAL, 24);

	if (ef_rd(EDU_REG_ID, 2, &v)) {
		ktap_diag("2-byte read of 0x00: 0x%04" PRIx64, v);
		ktap_expect_eq("2-byte read of 0x00", 0, v);
	}
	if (ef_rd(EDU_REG_LIVENESS, 2, &v)) {
		ktap_diag("2-byte read of 0x04: 0x%04" PRIx64, v);
		ktap_expect_eq("2-byte read of 0x04", 0, v);
	}
	if (ef_wr(EDU_REG_LIVENESS, 2, 0xbeef))
		ef_expect_reg("liveness after a 2-byte write to 0x04",
			      EDU_REG_LIVENESS, ~live);
	if (ef_wr(EDU_REG_FACTORIAL, 2, 6) &&
	    ef_expect_clear("factorial after a 2-byte write", EDU_REG_STATUS,
			    EDU_STATUS_COMPUTING, FACT_TIMEOUT_MS))
		ef_expect_reg("factorial after a 2-byte write to 0x08",
			      EDU_REG_FACTORIAL, 24);
	ef_expect_reg("liveness at the end", EDU_REG_LIVENESS, ~live);
	return NULL;
}

/* From 0x80 up, 4 and 8 bytes both work: the DMA registers are u64. */
static const char *access_dma_regs_64bit(void)
{
	const uint64_t a = 0x0123456789abcdefull, b = 0xfedcba9876543210ull;
	uint64_t v;

	if (!ef.bar0_map)
		return "needs open_device";
	if (!ef_expect_clear("DMA idle", EDU_REG_DMA_CMD, EDU_DMA_RUN,
			     DMA_TIMEOUT_MS))
		return NULL;

	if (ef_wr(EDU_REG_DMA_SRC, 8, a) && ef_rd(EDU_REG_DMA_SRC, 8, &v))
		ktap_expect_eq("8-byte read of 0x80 after 8-byte write", a, v);
	if (ef_rd(EDU_REG_DMA_SRC, 4, &v))
		ktap_expect_eq("4-byte read of 0x80 (low half)",
			       (uint32_t)a, v);
	if (ef_wr(EDU_REG_DMA_DST, 8, b) && ef_rd(EDU_REG_DMA_DST, 8, &v))
		ktap_expect_eq("8-byte read of 0x88 after 8-byte write", b, v);
	/* A 4-byte write stores a whole (zero-extended) address. */
	if (ef_wr(EDU_REG_DMA_SRC, 4, 0x87654321) && ef_rd(EDU_REG_DMA_SRC, 8, &v))
		ktap_expect_eq("8-byte read of 0x80 after 4-byte write",
			       0x87654321, v);
	if (ef_wr(EDU_REG_DMA_COUNT, 8, 0x1000) && ef_rd(EDU_REG_DMA_COUNT, 8, &v))
		ktap_expect_eq("8-byte read of 0x90 after 8-byte write",
			       0x1000, v);

	/* Leave them harmless. */
	ef_wr(EDU_REG_DMA_SRC, 8, 0);
	ef_wr(EDU_REG_DMA_DST, 8, 0);
	ef_wr(EDU_REG_DMA_COUNT, 8, 0);
	return NULL;
}

/* Offsets with no register read as all ones; writes there change nothing. */
static const char *access_unhandled_offsets(void)
{
	static const size_t offs[] = { 0x0c, 0x10, 0x28, 0x70, 0x84, 0xa0,
				       0x1000 };
	uint64_t v;

	if (!ef.bar0_map)
		return "needs open_device";
	for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
		char what[64];

		if (offs[i] + 4 > ef.bar0_map_len)
			continue;
		snprintf(what, sizeof(what), "4-byte read of 0x%zx", offs[i]);
		if (ef_rd(offs[i], 4, &v))
			ktap_expect_eq(what, 0xffffffff, v);
	}
	if (ef_wr32(0x10, 0x5a5a5a5a) && ef_rd(0x10, 4, &v))
		ktap_expect_eq("4-byte read of 0x10 after writing it",
			       0xffffffff, v);
	/* The interrupt status register is read-only. */
	if (ef_wr32(EDU_REG_IRQ_STATUS, 0x5))
		ef_expect_reg("interrupt status after writing it",
			      EDU_REG_IRQ_STATUS, 0);
	ef_expect_reg("identification after it all", EDU_REG_ID, EDU_ID_VALUE);
	return NULL;
}

static uint32_t factorial32(uint32_t n)
{
	uint32_t r = 1;

	while (n > 0)
		r *= n--;	/* wraps modulo 2^32, like the device */
	return r;
}

static const char *factorial_polled(void)
{
	static const uint32_t ns[] = { 0, 1, 5, 12, 13 };

	if (!ef.bar0_map)
		return "needs open_device";
	/* No interrupt after computing. */
	if (!ef_wr32(EDU_REG_STATUS, 0) ||
	    !ef_expect_clear("factorial idle", EDU_REG_STATUS,
			     EDU_STATUS_COMPUTING, FACT_TIMEOUT_MS))
		return NULL;
	for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
		char what[48];
		uint32_t got;

		snprintf(what, sizeof(what), "%u!", ns[i]);
		if (!ef_wr32(EDU_REG_FACTORIAL, ns[i]) ||
		    !ef_expect_clear(what, EDU_REG_STATUS, EDU_STATUS_COMPUTING,
				     FACT_TIMEOUT_MS) ||
		    !ef_rd32(EDU_REG_FACTORIAL, &got))
			return NULL;
		ktap_expect(got == factorial32(ns[i]), "%u! (mod 2^32): "
			    "expected 0x%08x, got 0x%08x", ns[i],
			    factorial32(ns[i]), got);
	}
	ef_expect_reg("interrupt status (no IRQFACT)", EDU_REG_IRQ_STATUS, 0);
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
	{ "identification_liveness", identification_liveness },
	{ "access_wrong_size_below_0x80", access_wrong_size_below_0x80 },
	{ "access_dma_regs_64bit", access_dma_regs_64bit },
	{ "access_unhandled_offsets", access_unhandled_offsets },
	{ "factorial_polled", factorial_polled },
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
