/*
 * edu_functions_mmio.c - the state the edu_functions cases share, and their
 * access to BAR0: MMIO at 2, 4 or 8 bytes that reports a fault instead of
 * killing the program, register expectations, and polling a register with
 * a timeout (see edu_functions.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <time.h>

#include "edu_functions.h"
#include "fault_guard.h"
#include "ktap.h"

struct ef_state ef = { .dev = VU_DEVICE_INIT };

/* ---- MMIO of BAR0 that reports a fault instead of killing us ---- */

struct mmio_access {
	size_t off;
	uint64_t val;
	unsigned int size;		/* 2, 4 or 8 bytes */
	bool write;
};

static void do_mmio(void *arg)
{
	struct mmio_access *a = arg;
	volatile void *base = ef.bar0_map;

	switch (a->size) {
	case 2:
		if (a->write)
			vu_mmio_write16(base, a->off, (uint16_t)a->val);
		else
			a->val = vu_mmio_read16(base, a->off);
		break;
	case 4:
		if (a->write)
			vu_mmio_write32(base, a->off, (uint32_t)a->val);
		else
			a->val = vu_mmio_read32(base, a->off);
		break;
	default:
		if (a->write)
			vu_mmio_write64(base, a->off, a->val);
		else
			a->val = vu_mmio_read64(base, a->off);
		break;
	}
}

static bool mmio(struct mmio_access *a)
{
	int sig = fault_guard_run(do_mmio, a);

	return ktap_expect(sig == 0, "%u-byte %s of BAR0+0x%zx faulted: "
			   "signal %d (%s) at 0x%" PRIxPTR, a->size,
			   a->write ? "write" : "read", a->off, sig,
			   strsignal(sig), fault_guard_addr());
}

bool ef_rd(size_t off, unsigned int size, uint64_t *val)
{
	struct mmio_access a = { .off = off, .size = size };

	if (!mmio(&a))
		return false;
	*val = a.val;
	return true;
}

bool ef_wr(size_t off, unsigned int size, uint64_t val)
{
	struct mmio_access a = { .off = off, .size = size, .val = val,
				 .write = true };

	return mmio(&a);
}

bool ef_rd32(size_t off, uint32_t *val)
{
	uint64_t v;

	if (!ef_rd(off, 4, &v))
		return false;
	*val = (uint32_t)v;
	return true;
}

bool ef_wr32(size_t off, uint32_t val)
{
	return ef_wr(off, 4, val);
}

/* Read a 32-bit register and compare it; false on a fault or mismatch. */
bool ef_expect_reg(const char *what, size_t off, uint32_t expected)
{
	uint32_t v;

	return ef_rd32(off, &v) && ktap_expect_eq(what, expected, v);
}

double ef_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void sleep_us(long us)
{
	struct timespec ts = { .tv_sec = us / 1000000,
			       .tv_nsec = (us % 1000000) * 1000 };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/*
 * Poll a 32-bit register until (value & mask) == 0 or timeout_ms passes.
 * Returns 1 when clear, 0 on timeout, -1 on a fault (already reported).
 * *last is the last value read, *ms the time it took. A short sleep between
 * reads keeps a vfio-user server from drowning in REGION_READ messages.
 */
int ef_wait_clear(size_t off, uint32_t mask, int timeout_ms,
		  uint32_t *last, double *ms)
{
	double start = ef_now_ms();

	for (;;) {
		if (!ef_rd32(off, last))
			return -1;
		*ms = ef_now_ms() - start;
		if (!(*last & mask))
			return 1;
		if (*ms > timeout_ms)
			return 0;
		sleep_us(200);
	}
}

/* ef_wait_clear as an expectation: true when the bits cleared in time. */
bool ef_expect_clear(const char *what, size_t off, uint32_t mask,
		     int timeout_ms)
{
	uint32_t last;
	double ms;
	int r = ef_wait_clear(off, mask, timeout_ms, &last, &ms);

	if (r < 0)
		return false;
	if (r == 0)
		return ktap_expect(false, "%s: BAR0+0x%zx bits 0x%x still set "
				   "after %d ms (0x%08x)", what, off, mask,
				   timeout_ms, last);
	ktap_diag("%s: done after %.1f ms", what, ms);
	return true;
}

/* Acknowledge every pending interrupt bit; true if status then reads 0. */
bool ef_ack_all(void)
{
	return ef_wr32(EDU_REG_IRQ_ACK, 0xffffffff) &&
	       ef_expect_reg("interrupt status after acknowledging all",
			     EDU_REG_IRQ_STATUS, 0);
}
