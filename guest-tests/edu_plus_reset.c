/*
 * edu_plus_reset.c - the guest resets edu-plus through its own vfio-pci.
 *
 * Run as `edu_plus_reset [flr|pm]`, against edu-plus served with the same
 * --reset method. The kernel lists the reset methods it found for the
 * function in /sys/bus/pci/devices/<bdf>/reset_method (flr needs a PCI
 * Express capability with the FLR bit in Device Capabilities, pm a PM
 * capability without No_Soft_Reset; a function on a root bus has no bus
 * reset), and vfio-pci offers VFIO_DEVICE_RESET only when one works.
 *
 * The reset case puts BAR0 registers away from their power-on values and a
 * pattern into BAR1, resets, and checks the registers are back at power-on
 * values while BAR1 (RAM on the card) kept the pattern. Without an expected
 * method on the command line, a device with no reset method SKIPs.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#include "ktap.h"
#include "vfio_util.h"

#define EDU_VENDOR		0x1234
#define EDU_DEVICE		0x11e8
#define EDU_ID_VALUE		0x010000edu

#define REG_ID			0x00
#define REG_LIVENESS		0x04
#define REG_FACTORIAL		0x08
#define REG_STATUS		0x20
#define REG_IRQ_STATUS		0x24
#define REG_IRQ_RAISE		0x60
#define STATUS_COMPUTING	0x01
#define STATUS_IRQ_ON_FACT	0x80

#define BAR1_PROBE_OFFSET	0x3000
#define BAR1_PROBE_VALUE	0xb1a5f00du
#define LIVENESS_PROBE		0x12345678u
/* Not FACT_IRQ or DMA_IRQ: a bit nothing but IRQ_RAISE sets. */
#define IRQ_PROBE		0x00400000u

static struct {
	const char *expected;		/* "flr", "pm" or NULL */
	bool bound, offered, opened, reset_flag;
	char bdf[VU_BDF_LEN];
	char methods[128];
	struct vu_device dev;
	struct vfio_region_info bar0, bar1;
} t = { .dev = VU_DEVICE_INIT };

static bool has_word(const char *list, const char *word)
{
	size_t n = strlen(word);

	for (const char *p = strstr(list, word); p; p = strstr(p + 1, word))
		if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
			return true;
	return false;
}

/* Find edu-plus and hand it to vfio-pci (edu_plus_basic checks each step apart). */
static const char *find_and_bind(void)
{
	if (vu_find_pci_device(EDU_VENDOR, EDU_DEVICE, t.bdf) ||
	    vu_bind_vfio_pci(t.bdf)) {
		ktap_fail("%s", vu_error());
		return NULL;
	}
	ktap_diag("BDF %s, bound to vfio-pci", t.bdf);
	t.bound = true;
	return NULL;
}

/* The kernel's verdict on which resets the function supports. */
static const char *reset_method_offered(void)
{
	char path[96];
	FILE *f;
	size_t n;

	if (!t.bound)
		return "needs find_and_bind";
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/reset_method",
		 t.bdf);
	f = fopen(path, "r");
	if (!f) {
		/* The kernel hides the attribute when no method works. */
		if (errno != ENOENT) {
			ktap_fail("open %s: %s", path, strerror(errno));
			return NULL;
		}
		t.methods[0] = '\0';
	} else {
		n = fread(t.methods, 1, sizeof(t.methods) - 1, f);
		fclose(f);
		t.methods[n] = '\0';
		t.methods[strcspn(t.methods, "\n")] = '\0';
	}
	ktap_diag("reset_method: %s", t.methods[0] ? t.methods : "(none)");
	if (t.expected) {
		ktap_expect(has_word(t.methods, t.expected),
			    "the kernel does not list %s among the reset methods "
			    "(\"%s\"): the device's capability is missing or "
			    "hidden on the way", t.expected, t.methods);
	} else if (!t.methods[0]) {
		return "the device offers no reset method (served with --reset none)";
	}
	t.offered = ktap_case_ok();
	return NULL;
}

static const char *open_device(void)
{
	struct vfio_device_info info;

	if (!t.offered)
		return "needs reset_method_offered";
	if (vu_open_device(t.bdf, &t.dev) ||
	    vu_region_info(t.dev.device, VFIO_PCI_BAR0_REGION_INDEX, &t.bar0) ||
	    vu_region_info(t.dev.device, VFIO_PCI_BAR1_REGION_INDEX, &t.bar1) ||
	    vu_device_info(t.dev.device, &info)) {
		ktap_fail("%s", vu_error());
		return NULL;
	}
	t.opened = true;
	ktap_diag("device flags 0x%x", info.flags);
	/* vfio-pci sets it when the reset it tried at open worked. */
	t.reset_flag = ktap_expect_bits("device flags (VFIO_DEVICE_FLAGS_RESET)",
					VFIO_DEVICE_FLAGS_RESET, info.flags);
	return NULL;
}

static bool bar0_read(uint32_t off, uint32_t *val)
{
	return ktap_expect(vu_pread32(t.dev.device, &t.bar0, off, val) == 0,
			   "%s", vu_error());
}

static bool bar0_write(uint32_t off, uint32_t val)
{
	return ktap_expect(vu_pwrite32(t.dev.device, &t.bar0, off, val) == 0,
			   "%s", vu_error());
}

/* Poll the status register until the factorial is done (edu's protocol). */
static bool factorial_done(void)
{
	uint32_t status = STATUS_COMPUTING;

	for (int i = 0; i < 1000 && (status & STATUS_COMPUTING); i++)
		if (!bar0_read(REG_STATUS, &status))
			return false;
	return ktap_expect(!(status & STATUS_COMPUTING),
			   "factorial still computing after 1000 polls");
}

/* Registers away from power-on, BAR1 holding a pattern, each read back. */
static bool dirty_the_device(void)
{
	uint32_t v;

	if (!bar0_write(REG_LIVENESS, LIVENESS_PROBE) ||
	    !bar0_write(REG_FACTORIAL, 5) || !factorial_done() ||
	    !bar0_write(REG_STATUS, STATUS_IRQ_ON_FACT) ||
	    !bar0_write(REG_IRQ_RAISE, IRQ_PROBE) ||
	    vu_pwrite32(t.dev.device, &t.bar1, BAR1_PROBE_OFFSET,
			BAR1_PROBE_VALUE))
		return ktap_expect(false, "setting up: %s", vu_error());
	return bar0_read(REG_LIVENESS, &v) &&
	       ktap_expect_eq("liveness before reset", ~LIVENESS_PROBE, v) &&
	       bar0_read(REG_FACTORIAL, &v) &&
	       ktap_expect_eq("factorial before reset", 120, v) &&
	       bar0_read(REG_IRQ_STATUS, &v) &&
	       ktap_expect_eq("irq status before reset", IRQ_PROBE, v);
}

static const char *reset_restores_power_on_state(void)
{
	uint32_t v;
	uint16_t cmd = 0;

	if (!t.opened || !t.reset_flag)
		return "needs open_device with VFIO_DEVICE_FLAGS_RESET";
	if (!dirty_the_device())
		return NULL;
	if (ioctl(t.dev.device, VFIO_DEVICE_RESET) != 0) {
		ktap_fail("VFIO_DEVICE_RESET: %s (the kernel's reset through %s "
			  "failed)", strerror(errno), t.methods);
		return NULL;
	}
	ktap_diag("VFIO_DEVICE_RESET returned 0");
	/* The registers edu has, at their power-on values. */
	if (bar0_read(REG_ID, &v))
		ktap_expect_eq("identification after reset", EDU_ID_VALUE, v);
	if (bar0_read(REG_LIVENESS, &v))
		ktap_expect_eq("liveness after reset (power-on 0)", 0, v);
	if (bar0_read(REG_FACTORIAL, &v))
		ktap_expect_eq("factorial after reset (power-on 0)", 0, v);
	if (bar0_read(REG_STATUS, &v))
		ktap_expect_eq("status after reset (power-on 0)", 0, v);
	if (bar0_read(REG_IRQ_STATUS, &v))
		ktap_expect_eq("irq status after reset (power-on 0)", 0, v);
	/* RAM on the card survives a function reset. */
	if (ktap_expect(vu_pread32(t.dev.device, &t.bar1, BAR1_PROBE_OFFSET,
				   &v) == 0, "%s", vu_error()))
		ktap_expect_eq("BAR1 word after reset (kept)", BAR1_PROBE_VALUE,
			       v);
	/* The kernel restored config space around the reset. */
	if (ktap_expect(vu_config_read(t.dev.device, 0x04, &cmd, 2) == 0, "%s",
			vu_error()))
		ktap_expect_bits("command register after reset (memory enable)",
				 0x2, cmd);
	return NULL;
}

static const struct ktap_case cases[] = {
	{ "find_and_bind", find_and_bind },
	{ "reset_method_offered", reset_method_offered },
	{ "open_device", open_device },
	{ "reset_restores_power_on_state", reset_restores_power_on_state },
};

int main(int argc, char **argv)
{
	const size_t n = sizeof(cases) / sizeof(cases[0]);

	t.expected = argc > 1 ? argv[1] : NULL;
	ktap_plan((int)n);
	ktap_diag("edu_plus_reset: VFIO_DEVICE_RESET of edu-plus %04x:%04x, "
		  "expecting %s", EDU_VENDOR, EDU_DEVICE,
		  t.expected ? t.expected : "whatever the device offers");
	ktap_run_cases(cases, n);
	vu_close_device(&t.dev);
	return ktap_finish();
}
