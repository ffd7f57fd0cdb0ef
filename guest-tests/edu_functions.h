/*
 * edu_functions.h - what the parts of the edu_functions program share: the
 * edu register map, the timeouts, the state earlier cases leave for later
 * ones, the BAR0 access helpers (edu_functions_mmio.c) and the cases, in
 * the files that hold them. edu_functions.c lists the cases in KTAP order.
 */
#ifndef EDU_PLUS_EDU_FUNCTIONS_H
#define EDU_PLUS_EDU_FUNCTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vfio_util.h"

/* The edu device: its IDs, BAR0 registers and their bits. */
#define EDU_VENDOR		0x1234
#define EDU_DEVICE		0x11e8

#define EDU_REG_ID		0x00
#define EDU_REG_LIVENESS	0x04
#define EDU_REG_FACTORIAL	0x08
#define EDU_REG_STATUS		0x20
#define EDU_REG_IRQ_STATUS	0x24
#define EDU_REG_IRQ_RAISE	0x60
#define EDU_REG_IRQ_ACK		0x64
#define EDU_REG_DMA_SRC		0x80
#define EDU_REG_DMA_DST		0x88
#define EDU_REG_DMA_COUNT	0x90
#define EDU_REG_DMA_CMD		0x98

#define EDU_ID_VALUE		0x010000edu	/* major 1, minor 0, 0xed */

#define EDU_STATUS_COMPUTING	0x01
#define EDU_STATUS_IRQFACT	0x80

#define EDU_IRQ_FACT		0x001
#define EDU_IRQ_DMA		0x100

#define EDU_DMA_RUN		0x1
#define EDU_DMA_TO_RAM		0x2	/* direction: device buffer -> RAM */
#define EDU_DMA_IRQ		0x4

#define EDU_DMA_BUF_ADDR	0x40000	/* the device's 4 KiB buffer */
#define EDU_DMA_BUF_SIZE	0x1000

/*
 * Guest buffer for DMA: two pages at a fixed IOVA. edu ANDs DMA addresses
 * with its dma_mask, (1 << 28) - 1 by default, so the IOVA must be below
 * 256 MiB or the device would be talking to a different address.
 */
#define PAGE			4096u
#define DMA_IOVA		0x0fe00000ull
#define DMA_LEN			(2 * PAGE)

/* Timeouts (TCG is slow; QEMU's edu finishes a DMA after 100 ms). */
#define FACT_TIMEOUT_MS		2000
#define DMA_TIMEOUT_MS		5000
#define IRQ_TIMEOUT_MS		2000
#define DMA_IRQ_TIMEOUT_MS	5000
#define QUIET_MS		250	/* "no interrupt now" window */

/* What earlier cases established for later ones (edu_functions_mmio.c). */
struct ef_state {
	bool opened;
	char bdf[VU_BDF_LEN];
	struct vu_device dev;
	struct vfio_region_info bar0;
	volatile void *bar0_map;
	size_t bar0_map_len;
	bool msi_ok;			/* msi_eventfd passed */
	uint8_t *buf;			/* DMA_LEN bytes, mapped at DMA_IOVA */
	bool dma_mapped;
};

extern struct ef_state ef;

/*
 * BAR0 through the mapping in ef.bar0_map, at 2, 4 or 8 bytes. A fault
 * (SIGBUS, SIGSEGV) is reported as a failure of the running case and
 * returns false instead of killing the program.
 */
bool ef_rd(size_t off, unsigned int size, uint64_t *val);
bool ef_wr(size_t off, unsigned int size, uint64_t val);
bool ef_rd32(size_t off, uint32_t *val);
bool ef_wr32(size_t off, uint32_t val);

/* Read a 32-bit register and compare it; false on a fault or mismatch. */
bool ef_expect_reg(const char *what, size_t off, uint32_t expected);

/* CLOCK_MONOTONIC in milliseconds. */
double ef_now_ms(void);

/*
 * Poll a 32-bit register until (value & mask) == 0 or timeout_ms passes.
 * Returns 1 when clear, 0 on timeout, -1 on a fault (already reported).
 * *last is the last value read, *ms the time it took.
 */
int ef_wait_clear(size_t off, uint32_t mask, int timeout_ms,
		  uint32_t *last, double *ms);

/* ef_wait_clear as an expectation: true when the bits cleared in time. */
bool ef_expect_clear(const char *what, size_t off, uint32_t mask,
		     int timeout_ms);

/* Acknowledge every pending interrupt bit; true if status then reads 0. */
bool ef_ack_all(void);

/*
 * edu_functions_irq.c: a fresh eventfd wired to irq `index` and drained,
 * or -1 (failure recorded); and the expectation that it fires in time.
 */
int ef_wired_eventfd(uint32_t index);
bool ef_expect_event(const char *what, int efd, int timeout_ms);

/* The cases: each returns NULL when it ran, or why it was skipped. */

/* edu_functions_regs.c: identification, liveness, access sizes, factorial */
const char *ef_case_identification_liveness(void);
const char *ef_case_access_wrong_size_below_0x80(void);
const char *ef_case_access_dma_regs_64bit(void);
const char *ef_case_access_unhandled_offsets(void);
const char *ef_case_factorial_polled(void);

/* edu_functions_irq.c: interrupt registers, MSI and INTx through eventfds */
const char *ef_case_irq_status_raise_ack(void);
const char *ef_case_msi_eventfd(void);
const char *ef_case_intx_eventfd(void);

/* edu_functions_dma.c: DMA through the type1 IOMMU */
const char *ef_case_dma_roundtrip(void);
const char *ef_case_dma_done_msi(void);
const char *ef_case_bad_dma_overrun(void);

#endif /* EDU_PLUS_EDU_FUNCTIONS_H */
