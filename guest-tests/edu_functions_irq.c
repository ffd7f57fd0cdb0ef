/*
 * edu_functions_irq.c - the edu interrupt cases: the status, raise and
 * acknowledge registers alone, then MSI and INTx delivered to eventfds
 * through VFIO_DEVICE_SET_IRQS.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "edu_functions.h"
#include "ktap.h"

static int new_eventfd(void)
{
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

	if (efd < 0)
		ktap_fail("eventfd: %s (errno %d)", strerror(errno), errno);
	return efd;
}

/* Empty the counter so a later wait sees only new events. */
static void drain(int efd)
{
	uint64_t n;

	while (read(efd, &n, sizeof(n)) == sizeof(n))
		;
}

/*
 * A fresh eventfd wired to irq `index` through VFIO_DEVICE_SET_IRQS and
 * drained; -1 (failure recorded) when either step fails.
 */
int ef_wired_eventfd(uint32_t index)
{
	int efd = new_eventfd();

	if (efd < 0)
		return -1;
	if (vu_irq_set_eventfd(ef.dev.device, index, efd)) {
		ktap_fail("%s", vu_error());
		close(efd);
		return -1;
	}
	drain(efd);
	return efd;
}

/* Expect efd to fire within timeout_ms, with a counter of at least 1. */
bool ef_expect_event(const char *what, int efd, int timeout_ms)
{
	uint64_t count = 0;
	double start = ef_now_ms();
	int r = vu_eventfd_wait(efd, timeout_ms, &count);

	if (r < 0) {
		ktap_fail("%s: %s", what, vu_error());
		return false;
	}
	if (!ktap_expect(r == 1, "%s: no interrupt within %d ms", what,
			 timeout_ms))
		return false;
	ktap_diag("%s: eventfd fired after %.1f ms, count %" PRIu64, what,
		  ef_now_ms() - start, count);
	return ktap_expect_ge(what, 1, count);
}

/* Expect efd to stay quiet for QUIET_MS. */
static bool expect_no_event(const char *what, int efd)
{
	uint64_t count = 0;
	int r = vu_eventfd_wait(efd, QUIET_MS, &count);

	if (r < 0) {
		ktap_fail("%s: %s", what, vu_error());
		return false;
	}
	return ktap_expect(r == 0, "%s: unexpected interrupt (eventfd count "
			   "%" PRIu64 ")", what, count);
}

/* The registers alone, with no eventfd wired. */
const char *ef_case_irq_status_raise_ack(void)
{
	static const struct {
		bool raise;
		uint32_t bits, expected;
	} steps[] = {
		{ true, 0x00000001, 0x00000001 },
		{ true, 0x00000100, 0x00000101 },
		{ true, 0x80000000, 0x80000101 },
		{ true, 0x00000001, 0x80000101 },	/* already set */
		{ false, 0x00000100, 0x80000001 },
		{ false, 0x00000004, 0x80000001 },	/* not set */
		{ false, 0x80000001, 0x00000000 },
		{ true, 0x12345678, 0x12345678 },
		{ false, 0xffffffff, 0x00000000 },
	};

	if (!ef.bar0_map)
		return "needs open_device";
	if (!ef_ack_all())
		return NULL;
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		char what[64];

		snprintf(what, sizeof(what), "interrupt status after %s 0x%08x",
			 steps[i].raise ? "raise" : "ack", steps[i].bits);
		if (!ef_wr32(steps[i].raise ? EDU_REG_IRQ_RAISE :
			     EDU_REG_IRQ_ACK, steps[i].bits) ||
		    !ef_expect_reg(what, EDU_REG_IRQ_STATUS, steps[i].expected))
			return NULL;
	}
	return NULL;
}

/* Raise bits, expect one interrupt and the bits in the status, ack them. */
static bool raise_and_expect(const char *what, int efd, uint32_t bits)
{
	return ef_wr32(EDU_REG_IRQ_RAISE, bits) &&
	       ef_expect_event(what, efd, IRQ_TIMEOUT_MS) &&
	       ef_expect_reg(what, EDU_REG_IRQ_STATUS, bits);
}

static bool expect_irq_info(uint32_t index, const char *name,
			    uint32_t flags)
{
	struct vfio_irq_info info;
	char what[48];

	if (vu_irq_info(ef.dev.device, index, &info)) {
		ktap_fail("%s", vu_error());
		return false;
	}
	ktap_diag("%s irq info: flags 0x%x, count %u", name, info.flags,
		  info.count);
	snprintf(what, sizeof(what), "%s vector count", name);
	if (!ktap_expect_eq(what, 1, info.count))
		return false;
	snprintf(what, sizeof(what), "%s irq flags", name);
	return ktap_expect_bits(what, flags, info.flags);
}

const char *ef_case_msi_eventfd(void)
{
	int efd;

	if (!ef.opened)
		return "needs open_device";
	if (!expect_irq_info(VFIO_PCI_MSI_IRQ_INDEX, "MSI",
			     VFIO_IRQ_INFO_EVENTFD) ||
	    !ef_ack_all() || !ef_wr32(EDU_REG_STATUS, 0))
		return NULL;
	efd = ef_wired_eventfd(VFIO_PCI_MSI_IRQ_INDEX);
	if (efd < 0)
		return NULL;

	if (expect_no_event("MSI before any raise", efd) &&
	    raise_and_expect("MSI raise 0x1", efd, 0x1) &&
	    ef_wr32(EDU_REG_IRQ_ACK, 0x1) &&
	    ef_expect_reg("interrupt status after ack", EDU_REG_IRQ_STATUS,
			  0) &&
	    expect_no_event("MSI after ack", efd) &&
	    raise_and_expect("MSI raise 0x2", efd, 0x2) &&
	    ef_wr32(EDU_REG_IRQ_ACK, 0x2) &&
	    /* Factorial with IRQFACT set raises 0x01 when done. */
	    ef_wr32(EDU_REG_STATUS, EDU_STATUS_IRQFACT) &&
	    ef_expect_reg("status with IRQFACT", EDU_REG_STATUS,
			  EDU_STATUS_IRQFACT) &&
	    ef_wr32(EDU_REG_FACTORIAL, 5) &&
	    ef_expect_event("MSI after factorial", efd, IRQ_TIMEOUT_MS) &&
	    ef_expect_clear("5! with IRQFACT", EDU_REG_STATUS,
			    EDU_STATUS_COMPUTING, FACT_TIMEOUT_MS) &&
	    ef_expect_reg("5! with IRQFACT", EDU_REG_FACTORIAL, 120) &&
	    ef_expect_reg("interrupt status after factorial",
			  EDU_REG_IRQ_STATUS, EDU_IRQ_FACT) &&
	    ef_wr32(EDU_REG_IRQ_ACK, EDU_IRQ_FACT) &&
	    ef_wr32(EDU_REG_STATUS, 0) &&
	    ef_expect_reg("status after clearing IRQFACT", EDU_REG_STATUS, 0))
		expect_no_event("MSI after factorial ack", efd);

	ef_ack_all();
	ef_wr32(EDU_REG_STATUS, 0);
	if (vu_irq_disable(ef.dev.device, VFIO_PCI_MSI_IRQ_INDEX))
		ktap_fail("%s", vu_error());
	close(efd);
	ef.msi_ok = ktap_case_ok();
	return NULL;
}

/*
 * INTx is level-triggered and vfio-pci masks it each time it fires
 * (AUTOMASKED): the user acknowledges the device, then unmasks. Unmasking
 * while the device still asserts the line fires again at once.
 */
const char *ef_case_intx_eventfd(void)
{
	int efd;

	if (!ef.opened)
		return "needs open_device";
	if (!expect_irq_info(VFIO_PCI_INTX_IRQ_INDEX, "INTx",
			     VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE |
			     VFIO_IRQ_INFO_AUTOMASKED) ||
	    !ef_ack_all())
		return NULL;
	efd = ef_wired_eventfd(VFIO_PCI_INTX_IRQ_INDEX);
	if (efd < 0)
		return NULL;

	if (expect_no_event("INTx before any raise", efd) &&
	    raise_and_expect("INTx raise 0x1", efd, 0x1) &&
	    /* Edge-style use: ack the device, then unmask. */
	    ef_wr32(EDU_REG_IRQ_ACK, 0x1) &&
	    ef_expect_reg("interrupt status after ack", EDU_REG_IRQ_STATUS,
			  0)) {
		if (vu_irq_unmask(ef.dev.device, VFIO_PCI_INTX_IRQ_INDEX))
			ktap_fail("%s", vu_error());
		else if (expect_no_event("INTx after ack and unmask", efd) &&
			 raise_and_expect("INTx raise 0x2", efd, 0x2)) {
			/* Level: unmask without ack, the line is still up. */
			if (vu_irq_unmask(ef.dev.device,
					  VFIO_PCI_INTX_IRQ_INDEX))
				ktap_fail("%s", vu_error());
			else if (ef_expect_event("INTx unmask while asserted",
						 efd, IRQ_TIMEOUT_MS) &&
				 ef_expect_reg("interrupt status still pending",
					       EDU_REG_IRQ_STATUS, 0x2) &&
				 ef_wr32(EDU_REG_IRQ_ACK, 0x2)) {
				if (vu_irq_unmask(ef.dev.device,
						  VFIO_PCI_INTX_IRQ_INDEX))
					ktap_fail("%s", vu_error());
				else
					expect_no_event("INTx after final ack "
							"and unmask", efd);
			}
		}
	}

	ef_ack_all();
	if (vu_irq_disable(ef.dev.device, VFIO_PCI_INTX_IRQ_INDEX))
		ktap_fail("%s", vu_error());
	close(efd);
	return NULL;
}
