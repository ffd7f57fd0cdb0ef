/*
 * edu_functions_regs.c - the edu register cases without interrupts or DMA:
 * identification, liveness, the access-size rules below and above 0x80,
 * offsets with no register, and the factorial polled to completion.
 */
#include <inttypes.h>
#include <stdio.h>

#include "edu_functions.h"
#include "ktap.h"

const char *ef_case_identification_liveness(void)
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
const char *ef_case_access_wrong_size_below_0x80(void)
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
const char *ef_case_access_dma_regs_64bit(void)
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
	if (ef_wr(EDU_REG_DMA_SRC, 4, 0x87654321) &&
	    ef_rd(EDU_REG_DMA_SRC, 8, &v))
		ktap_expect_eq("8-byte read of 0x80 after 4-byte write",
			       0x87654321, v);
	if (ef_wr(EDU_REG_DMA_COUNT, 8, 0x1000) &&
	    ef_rd(EDU_REG_DMA_COUNT, 8, &v))
		ktap_expect_eq("8-byte read of 0x90 after 8-byte write",
			       0x1000, v);

	/* Leave them harmless. */
	ef_wr(EDU_REG_DMA_SRC, 8, 0);
	ef_wr(EDU_REG_DMA_DST, 8, 0);
	ef_wr(EDU_REG_DMA_COUNT, 8, 0);
	return NULL;
}

/* Offsets with no register read as all ones; writes there change nothing. */
const char *ef_case_access_unhandled_offsets(void)
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

const char *ef_case_factorial_polled(void)
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
