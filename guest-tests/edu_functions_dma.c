/*
 * edu_functions_dma.c - the edu DMA cases: a page through the device's
 * buffer and back, completion by MSI, and an out-of-bounds transfer the
 * device must survive. The guest buffer is mapped at DMA_IOVA through the
 * type1 IOMMU by dma_roundtrip and unmapped by cleanup.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "edu_functions.h"
#include "ktap.h"

/* Program one transfer and start it; prints the "# dma xfer" line. */
static bool dma_start(const char *tag, uint64_t src, uint64_t dst,
		      uint32_t count, uint32_t cmd)
{
	ktap_diag("%s xfer dir=%s src=0x%" PRIx64 " dst=0x%" PRIx64
		  " count=0x%x cmd=0x%x", tag,
		  cmd & EDU_DMA_TO_RAM ? "to-ram" : "to-device", src, dst,
		  count, cmd);
	/* Addresses as the u64 registers they are; count and cmd as u32. */
	return ef_wr(EDU_REG_DMA_SRC, 8, src) &&
	       ef_wr(EDU_REG_DMA_DST, 8, dst) &&
	       ef_wr32(EDU_REG_DMA_COUNT, count) &&
	       ef_wr32(EDU_REG_DMA_CMD, cmd);
}

/* A transfer from start to completion (cmd bit 0 clear). */
static bool dma_run(const char *what, uint64_t src, uint64_t dst,
		    uint32_t count, uint32_t cmd)
{
	return dma_start("dma", src, dst, count, cmd) &&
	       ef_expect_clear(what, EDU_REG_DMA_CMD, EDU_DMA_RUN,
			       DMA_TIMEOUT_MS);
}

/* Compare len bytes of the buffer at offsets a and b. */
static bool expect_same(const char *what, size_t a, size_t b, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (ef.buf[a + i] != ef.buf[b + i])
			return ktap_expect(false, "%s: byte 0x%zx differs: "
					   "expected 0x%02x, got 0x%02x", what,
					   i, ef.buf[a + i], ef.buf[b + i]);
	}
	return true;
}

/* A recognisable pattern, different for each seed. */
static void fill_pattern(size_t off, size_t len, uint32_t seed)
{
	for (size_t i = 0; i < len; i++)
		ef.buf[off + i] = (uint8_t)((i * 0x9du) ^ (i >> 8) ^ seed);
}

/* RAM -> device buffer -> RAM through the IOMMU, then compare. */
const char *ef_case_dma_roundtrip(void)
{
	const uint64_t iova0 = DMA_IOVA, iova1 = DMA_IOVA + PAGE;
	uint64_t v;
	void *p;

	if (!ef.bar0_map)
		return "needs open_device";
	p = mmap(NULL, DMA_LEN, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (p == MAP_FAILED) {
		ktap_fail("mmap(%u bytes, anonymous): %s (errno %d)", DMA_LEN,
			  strerror(errno), errno);
		return NULL;
	}
	ef.buf = p;
	fill_pattern(0, PAGE, 0x5a);
	memset(ef.buf + PAGE, 0, PAGE);
	if (vu_dma_map(ef.dev.container, ef.buf, DMA_IOVA, DMA_LEN)) {
		ktap_fail("%s", vu_error());
		return NULL;
	}
	ef.dma_mapped = true;
	ktap_diag("dma map iova=0x%llx size=0x%x", DMA_IOVA, DMA_LEN);

	if (!ef_ack_all() ||
	    !ef_expect_clear("DMA idle", EDU_REG_DMA_CMD, EDU_DMA_RUN,
			     DMA_TIMEOUT_MS) ||
	    !dma_run("DMA RAM to device", iova0, EDU_DMA_BUF_ADDR, PAGE,
		     EDU_DMA_RUN))
		return NULL;
	/* The programmed registers keep their values. */
	if (ef_rd(EDU_REG_DMA_SRC, 8, &v))
		ktap_expect_eq("DMA source after RAM to device", iova0, v);
	if (ef_rd(EDU_REG_DMA_DST, 8, &v))
		ktap_expect_eq("DMA destination after RAM to device",
			       EDU_DMA_BUF_ADDR, v);
	if (ef_rd(EDU_REG_DMA_COUNT, 8, &v))
		ktap_expect_eq("DMA count after RAM to device", PAGE, v);

	if (!dma_run("DMA device to RAM", EDU_DMA_BUF_ADDR, iova1, PAGE,
		     EDU_DMA_RUN | EDU_DMA_TO_RAM))
		return NULL;
	if (ef_rd(EDU_REG_DMA_CMD, 4, &v))
		ktap_diag("DMA command after completion: 0x%" PRIx64, v);
	expect_same("page copied RAM -> device -> RAM", 0, PAGE, PAGE);
	/* No interrupt was asked for. */
	ef_expect_reg("interrupt status after DMA without IRQ",
		      EDU_REG_IRQ_STATUS, 0);
	return NULL;
}

/* Command bit 2: interrupt 0x100 when the transfer is done, here by MSI. */
const char *ef_case_dma_done_msi(void)
{
	int efd;

	if (!ef.dma_mapped)
		return "needs dma_roundtrip";
	if (!ef.msi_ok)
		return "needs msi_eventfd";
	if (!ef_ack_all() ||
	    !ef_expect_clear("DMA idle", EDU_REG_DMA_CMD, EDU_DMA_RUN,
			     DMA_TIMEOUT_MS))
		return NULL;
	efd = ef_wired_eventfd(VFIO_PCI_MSI_IRQ_INDEX);
	if (efd < 0)
		return NULL;
	memset(ef.buf + PAGE, 0, PAGE);

	/* The device buffer still holds page 0 from dma_roundtrip. */
	if (dma_start("dma", EDU_DMA_BUF_ADDR, DMA_IOVA + PAGE, PAGE,
		      EDU_DMA_RUN | EDU_DMA_TO_RAM | EDU_DMA_IRQ) &&
	    ef_expect_event("MSI on DMA completion", efd, DMA_IRQ_TIMEOUT_MS) &&
	    ef_expect_clear("DMA with IRQ", EDU_REG_DMA_CMD, EDU_DMA_RUN,
			    DMA_TIMEOUT_MS) &&
	    ef_expect_reg("interrupt status after DMA with IRQ",
			  EDU_REG_IRQ_STATUS, EDU_IRQ_DMA) &&
	    ef_wr32(EDU_REG_IRQ_ACK, EDU_IRQ_DMA) &&
	    ef_expect_reg("interrupt status after ack", EDU_REG_IRQ_STATUS, 0))
		expect_same("page copied device -> RAM with IRQ", 0, PAGE,
			    PAGE);

	ef_ack_all();
	if (vu_irq_disable(ef.dev.device, VFIO_PCI_MSI_IRQ_INDEX))
		ktap_fail("%s", vu_error());
	close(efd);
	return NULL;
}

/*
 * An 8 KiB transfer from the 4 KiB device buffer. edu-plus must refuse it;
 * QEMU's edu logs it and copies 4 KiB from past the end of its buffer --
 * a read of its own heap into our 8 KiB mapping, which corrupts nothing.
 * (The same overrun towards the device would overwrite QEMU's heap, so it
 * is not done.) Whether data moved is not checked: the devices differ by
 * design. What must hold is that the device answers and DMAs afterwards.
 */
const char *ef_case_bad_dma_overrun(void)
{
	const size_t off = 0x100, len = 0x100;
	uint32_t last;
	double ms;
	int r;

	if (!ef.dma_mapped)
		return "needs dma_roundtrip";
	if (!ef_ack_all() ||
	    !ef_expect_clear("DMA idle", EDU_REG_DMA_CMD, EDU_DMA_RUN,
			     DMA_TIMEOUT_MS) ||
	    !dma_start("bad-dma", EDU_DMA_BUF_ADDR, DMA_IOVA,
		       2 * EDU_DMA_BUF_SIZE, EDU_DMA_RUN | EDU_DMA_TO_RAM))
		return NULL;
	r = ef_wait_clear(EDU_REG_DMA_CMD, EDU_DMA_RUN, DMA_TIMEOUT_MS, &last,
			  &ms);
	if (r < 0)
		return NULL;
	if (r)
		ktap_diag("bad-dma: command bit 0 clear after %.1f ms", ms);
	else
		ktap_diag("bad-dma: command still 0x%x after %d ms", last,
			  DMA_TIMEOUT_MS);
	ktap_diag("bad-dma-done");

	if (!ef_expect_reg("identification after bad DMA", EDU_REG_ID,
			   EDU_ID_VALUE) ||
	    !ef_wr32(EDU_REG_LIVENESS, 0x600dd0a) ||
	    !ef_expect_reg("liveness after bad DMA", EDU_REG_LIVENESS,
			   ~0x600dd0au) ||
	    !ef_expect_reg("interrupt status after bad DMA", EDU_REG_IRQ_STATUS,
			   0))
		return NULL;

	/* A small valid transfer each way still works. */
	fill_pattern(off, len, 0xc3);
	memset(ef.buf + PAGE, 0, PAGE);
	if (dma_run("small DMA RAM to device", DMA_IOVA + off,
		    EDU_DMA_BUF_ADDR + off, len, EDU_DMA_RUN) &&
	    dma_run("small DMA device to RAM", EDU_DMA_BUF_ADDR + off,
		    DMA_IOVA + PAGE + off, len, EDU_DMA_RUN | EDU_DMA_TO_RAM))
		expect_same("small DMA after bad DMA", off, PAGE + off, len);
	return NULL;
}
