/*
 * edu_plus_basic.c - first guest test: the edu-plus device (1234:11e8) is
 * found, binds to vfio-pci, opens through a type1 container, reports the
 * regions the register map promises (the README, "The device"),
 * and its BARs work through mmap and through pread/pwrite.
 *
 * Each case states its prerequisite and SKIPs when it is missing, so one
 * failure early on yields one "not ok" and a list of reasons, not a crash.
 * The BAR1 pattern is deliberately left in place at exit: the host side of
 * the end-to-end test reads it back through the server's own mapping.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "bar1_pattern.h"
#include "fault_guard.h"
#include "ktap.h"
#include "vfio_util.h"

#define EDU_VENDOR		0x1234
#define EDU_DEVICE		0x11e8
#define EDU_REVISION		0x10
#define EDU_CLASS_CODE		0x00ff00	/* PCI_CLASS_OTHERS */

#define EDU_BAR0_SIZE		(1u << 20)
#define EDU_REG_ID		0x00
#define EDU_REG_LIVENESS	0x04
#define EDU_ID_VALUE		0x010000edu	/* major 1, minor 0, 0xed */

#define REGION_RWM (VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE | \
		    VFIO_REGION_INFO_FLAG_MMAP)

/* What earlier cases established for later ones. */
static struct {
	bool found, bound, opened;
	bool have_bar0, have_bar1;	/* region info ioctl succeeded */
	char bdf[VU_BDF_LEN];
	struct vu_device dev;
	struct vfio_region_info bar0, bar1;
	volatile void *bar0_map;
	size_t bar0_map_len;
} t = { .dev = VU_DEVICE_INIT };

/* Room for skip reasons that carry values. */
static char why[160];

/* ---- MMIO that reports a fault instead of killing the program ---- */

struct mmio_access {
	volatile void *base;
	size_t off;
	uint32_t val;
	bool write;
};

static void do_mmio(void *arg)
{
	struct mmio_access *a = arg;

	if (a->write)
		vu_mmio_write32(a->base, a->off, a->val);
	else
		a->val = vu_mmio_read32(a->base, a->off);
}

static bool mmio(struct mmio_access *a)
{
	int sig = fault_guard_run(do_mmio, a);

	return ktap_expect(sig == 0, "%s of BAR0+0x%zx faulted: signal %d "
			   "(%s) at 0x%" PRIxPTR, a->write ? "write" : "read",
			   a->off, sig, strsignal(sig), fault_guard_addr());
}

static bool mmio_read(volatile void *base, size_t off, uint32_t *val)
{
	struct mmio_access a = { .base = base, .off = off };

	if (!mmio(&a))
		return false;
	*val = a.val;
	return true;
}

static bool mmio_write(volatile void *base, size_t off, uint32_t val)
{
	struct mmio_access a = { .base = base, .off = off, .val = val,
				 .write = true };

	return mmio(&a);
}

/* ---- cases: each returns NULL when it ran, or why it was skipped ---- */

static const char *find_device(void)
{
	char driver[64];

	if (vu_find_pci_device(EDU_VENDOR, EDU_DEVICE, t.bdf)) {
		ktap_fail("%s", vu_error());
		return NULL;
	}
	t.found = true;
	ktap_diag("BDF %s", t.bdf);
	if (vu_current_driver(t.bdf, driver, sizeof(driver)) == 0)
		ktap_diag("driver before binding: %s",
			  driver[0] ? driver : "(none)");
	return NULL;
}

static const char *bind_vfio_pci(void)
{
	if (!t.found)
		return "needs find_device";
	if (vu_bind_vfio_pci(t.bdf)) {
		ktap_fail("%s", vu_error());
		return NULL;
	}
	t.bound = true;
	return NULL;
}

static const char *open_type1_container(void)
{
	if (!t.bound)
		return "needs bind_vfio_pci";
	if (vu_open_device(t.bdf, &t.dev)) {
		ktap_fail("%s", vu_error());
		return NULL;
	}
	t.opened = true;
	ktap_diag("iommu group %d, %s, device fd %d", t.dev.group_id,
		  t.dev.iommu_type == VFIO_TYPE1v2_IOMMU ?
		  "VFIO_TYPE1v2_IOMMU" : "VFIO_TYPE1_IOMMU", t.dev.device);
	return NULL;
}

static const char *device_info(void)
{
	struct vfio_device_info info;

	if (!t.opened)
		return "needs open_type1_container";
	if (vu_device_info(t.dev.device, &info)) {
		ktap_fail("%s", vu_error());
		return NULL;
	}
	ktap_diag("device flags 0x%x, num_regions %u, num_irqs %u",
		  info.flags, info.num_regions, info.num_irqs);
	ktap_expect_bits("device flags (VFIO_DEVICE_FLAGS_PCI)",
			 VFIO_DEVICE_FLAGS_PCI, info.flags);
	/* vfio-pci numbering: 0-5 BARs, 6 ROM, 7 config, 8 VGA. */
	ktap_expect_ge("num_regions", VFIO_PCI_NUM_REGIONS, info.num_regions);
	return NULL;
}

/* Shared by the region info cases: fetch, print, and say if it worked. */
static bool get_region(uint32_t index, struct vfio_region_info *info)
{
	if (vu_region_info(t.dev.device, index, info)) {
		ktap_fail("%s", vu_error());
		return false;
	}
	ktap_diag("region %u: size 0x%" PRIx64 ", flags 0x%x, offset 0x%"
		  PRIx64, index, (uint64_t)info->size, info->flags,
		  (uint64_t)info->offset);
	return true;
}

static const char *bar0_region_info(void)
{
	if (!t.opened)
		return "needs open_type1_container";
	t.have_bar0 = get_region(VFIO_PCI_BAR0_REGION_INDEX, &t.bar0);
	if (t.have_bar0) {
		ktap_expect_eq("BAR0 size", EDU_BAR0_SIZE, t.bar0.size);
		ktap_expect_bits("BAR0 flags (READ|WRITE|MMAP)", REGION_RWM,
				 t.bar0.flags);
	}
	return NULL;
}

static const char *bar1_region_info(void)
{
	if (!t.opened)
		return "needs open_type1_container";
	t.have_bar1 = get_region(VFIO_PCI_BAR1_REGION_INDEX, &t.bar1);
	if (t.have_bar1) {
		ktap_expect_eq("BAR1 size", EDU_PLUS_BAR1_SIZE, t.bar1.size);
		ktap_expect_bits("BAR1 flags (READ|WRITE|MMAP)", REGION_RWM,
				 t.bar1.flags);
	}
	return NULL;
}

static const char *region2_empty(void)
{
	struct vfio_region_info info;

	if (!t.opened)
		return "needs open_type1_container";
	/* BAR1 is 64-bit, so its upper half occupies BAR slot 2. */
	if (get_region(VFIO_PCI_BAR2_REGION_INDEX, &info))
		ktap_expect_eq("region 2 size", 0, info.size);
	return NULL;
}

/* Read n bytes of config space through region 7 of the device fd. */
static bool read_config(uint32_t off, void *buf, size_t n)
{
	struct vfio_region_info cfg;
	ssize_t got;

	if (vu_region_info(t.dev.device, VFIO_PCI_CONFIG_REGION_INDEX, &cfg)) {
		ktap_fail("%s", vu_error());
		return false;
	}
	got = pread(t.dev.device, buf, n, (off_t)(cfg.offset + off));
	if (got < 0) {
		ktap_fail("pread(config space + 0x%x, %zu): %s (errno %d)",
			  off, n, strerror(errno), errno);
		return false;
	}
	return ktap_expect(got == (ssize_t)n, "pread(config space + 0x%x, "
			   "%zu): short read of %zd bytes", off, n, got);
}

static const char *config_space_identity(void)
{
	uint8_t c[12];

	if (!t.opened)
		return "needs open_type1_container";
	if (!read_config(0, c, sizeof(c)))
		return NULL;
	/* Config space is little-endian. Class code: 0x09 prog-if, 0x0a
	 * subclass, 0x0b base class. */
	ktap_expect_eq("vendor ID", EDU_VENDOR, c[0] | c[1] << 8);
	ktap_expect_eq("device ID", EDU_DEVICE, c[2] | c[3] << 8);
	ktap_expect_eq("revision", EDU_REVISION, c[8]);
	ktap_expect_eq("class code", EDU_CLASS_CODE,
		       c[9] | c[10] << 8 | (uint32_t)c[11] << 16);
	return NULL;
}

static const char *config_space_bar_types(void)
{
	uint32_t bar[2];

	if (!t.opened)
		return "needs open_type1_container";
	if (!read_config(0x10, bar, sizeof(bar)))
		return NULL;
	ktap_diag("config BAR0 0x%08x, BAR1 0x%08x", bar[0], bar[1]);
	/* Low nibble: bit 0 I/O, bits 1-2 type (2 = 64-bit), bit 3 prefetch. */
	ktap_expect_eq("BAR0 type bits (32-bit memory)", 0x0, bar[0] & 0xf);
	ktap_expect_eq("BAR1 type bits (64-bit prefetchable memory)", 0xc,
		       bar[1] & 0xf);
	return NULL;
}

static const char *bar0_mmap_identification(void)
{
	void *p;
	uint32_t id;

	if (!t.have_bar0)
		return "needs bar0_region_info";
	if (t.bar0.size < EDU_REG_LIVENESS + 4) {
		snprintf(why, sizeof(why), "BAR0 is 0x%" PRIx64 " bytes, too "
			 "small for the registers", (uint64_t)t.bar0.size);
		return why;
	}
	p = vu_mmap_region(t.dev.device, &t.bar0, 0, t.bar0.size);
	if (!p) {
		ktap_fail("%s", vu_error());
		return NULL;
	}
	t.bar0_map = p;
	t.bar0_map_len = t.bar0.size;
	if (mmio_read(t.bar0_map, EDU_REG_ID, &id))
		ktap_expect_eq("BAR0+0x00 identification", EDU_ID_VALUE, id);
	return NULL;
}

/* The liveness register reads back the inverse of what was written. */
static const char *bar0_mmap_liveness(void)
{
	static const uint32_t values[] = { 0x12345678, 0xdeadbeef };

	if (!t.bar0_map)
		return "needs bar0_mmap_identification";
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		uint32_t got;

		if (!mmio_write(t.bar0_map, EDU_REG_LIVENESS, values[i]) ||
		    !mmio_read(t.bar0_map, EDU_REG_LIVENESS, &got))
			return NULL;
		ktap_expect(got == ~values[i], "liveness: wrote 0x%08x, "
			    "expected 0x%08x, got 0x%08x", values[i],
			    ~values[i], got);
	}
	return NULL;
}

/*
 * The same registers through pread/pwrite at BAR0's file offset: the path
 * vfio-pci takes without a user mapping (a trapped access in the kernel).
 */
static const char *bar0_pread_pwrite(void)
{
	const uint32_t v = 0x0badf00d;
	uint32_t got;

	if (!t.have_bar0)
		return "needs bar0_region_info";
	if (vu_pread32(t.dev.device, &t.bar0, EDU_REG_ID, &got))
		ktap_fail("%s", vu_error());
	else
		ktap_expect_eq("pread BAR0+0x00 identification", EDU_ID_VALUE,
			       got);

	if (vu_pwrite32(t.dev.device, &t.bar0, EDU_REG_LIVENESS, v) ||
	    vu_pread32(t.dev.device, &t.bar0, EDU_REG_LIVENESS, &got)) {
		ktap_fail("%s", vu_error());
		return NULL;
	}
	ktap_expect(got == ~v, "pwrite/pread liveness: wrote 0x%08x, "
		    "expected 0x%08x, got 0x%08x", v, ~v, got);

	/* Both paths reach one register: the mapping must see it too. */
	if (t.bar0_map && mmio_read(t.bar0_map, EDU_REG_LIVENESS, &got))
		ktap_expect(got == ~v, "liveness via mmap after pwrite of "
			    "0x%08x: expected 0x%08x, got 0x%08x", v, ~v, got);
	return NULL;
}

/* ---- BAR1: a pattern in every page, written then read back ---- */

struct bar1_pass {
	volatile uint8_t *base;
	uint32_t pages;
	bool verify;			/* false: write the pattern */
	volatile uint32_t done;		/* pages finished, for fault reports */
	uint32_t mismatches;		/* words that differed */
	uint32_t first_page, first_off, first_expected, first_got;
};

static void check_word(struct bar1_pass *p, uint32_t page, uint32_t off,
		       uint32_t expected)
{
	volatile uint8_t *q = p->base + (size_t)page * EDU_PLUS_PATTERN_PAGE_SIZE;
	uint32_t got = vu_mmio_read32(q, off);

	if (got == expected)
		return;
	if (p->mismatches++ == 0) {
		p->first_page = page;
		p->first_off = off;
		p->first_expected = expected;
		p->first_got = got;
	}
}

static void bar1_run_pass(void *arg)
{
	struct bar1_pass *p = arg;

	for (uint32_t i = 0; i < p->pages; i++) {
		volatile uint8_t *q = p->base +
				      (size_t)i * EDU_PLUS_PATTERN_PAGE_SIZE;
		uint32_t v = edu_plus_page_pattern(i);

		if (p->verify) {
			check_word(p, i, EDU_PLUS_PATTERN_HEAD_OFFSET, v);
			check_word(p, i, EDU_PLUS_PATTERN_TAIL_OFFSET, ~v);
		} else {
			vu_mmio_write32(q, EDU_PLUS_PATTERN_HEAD_OFFSET, v);
			vu_mmio_write32(q, EDU_PLUS_PATTERN_TAIL_OFFSET, ~v);
		}
		p->done = i + 1;
	}
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* One guarded pass over all pages; false (and a diagnostic) on a fault. */
static bool bar1_pass(struct bar1_pass *p, const char *what)
{
	double start = now_ms();
	int sig = fault_guard_run(bar1_run_pass, p);

	if (!ktap_expect(sig == 0, "BAR1 %s pass faulted at page %u of %u: "
			 "signal %d (%s) at 0x%" PRIxPTR, what, p->done,
			 p->pages, sig, strsignal(sig), fault_guard_addr()))
		return false;
	ktap_diag("BAR1 %s pass: %u pages in %.1f ms", what, p->pages,
		  now_ms() - start);
	return true;
}

static const char *bar1_mmap_page_pattern(void)
{
	struct bar1_pass p = { .pages = EDU_PLUS_BAR1_SIZE /
					EDU_PLUS_PATTERN_PAGE_SIZE };
	void *map;

	if (!t.have_bar1)
		return "needs bar1_region_info";
	if (t.bar1.size < EDU_PLUS_BAR1_SIZE) {
		snprintf(why, sizeof(why), "BAR1 is 0x%" PRIx64 " bytes, need "
			 "0x%x", (uint64_t)t.bar1.size, EDU_PLUS_BAR1_SIZE);
		return why;
	}
	map = vu_mmap_region(t.dev.device, &t.bar1, 0, EDU_PLUS_BAR1_SIZE);
	if (!map) {
		ktap_fail("%s", vu_error());
		return NULL;
	}
	p.base = map;
	if (bar1_pass(&p, "write")) {
		p.verify = true;
		p.done = 0;
		if (bar1_pass(&p, "verify")) {
			ktap_diag("BAR1: %u words checked, %u mismatches",
				  2 * p.pages, p.mismatches);
			ktap_expect(p.mismatches == 0, "BAR1 page %u + %u: "
				    "expected 0x%08x, got 0x%08x (first of %u "
				    "mismatches)", p.first_page, p.first_off,
				    p.first_expected, p.first_got,
				    p.mismatches);
		}
	}
	/* Unmapping keeps the data: the host reads it from the server. */
	munmap(map, EDU_PLUS_BAR1_SIZE);
	return NULL;
}

static const struct ktap_case cases[] = {
	{ "find_device", find_device },
	{ "bind_vfio_pci", bind_vfio_pci },
	{ "open_type1_container", open_type1_container },
	{ "device_info", device_info },
	{ "bar0_region_info", bar0_region_info },
	{ "bar1_region_info", bar1_region_info },
	{ "region2_empty", region2_empty },
	{ "config_space_identity", config_space_identity },
	{ "config_space_bar_types", config_space_bar_types },
	{ "bar0_mmap_identification", bar0_mmap_identification },
	{ "bar0_mmap_liveness", bar0_mmap_liveness },
	{ "bar0_pread_pwrite", bar0_pread_pwrite },
	{ "bar1_mmap_page_pattern", bar1_mmap_page_pattern },
};

int main(void)
{
	const size_t n = sizeof(cases) / sizeof(cases[0]);

	ktap_plan((int)n);
	/* Several programs share one console: say which one this is. */
	ktap_diag("edu_plus_basic: edu-plus %04x:%04x through vfio-pci",
		  EDU_VENDOR, EDU_DEVICE);
	ktap_run_cases(cases, n);

	if (t.bar0_map)
		munmap((void *)t.bar0_map, t.bar0_map_len);
	vu_close_device(&t.dev);
	return ktap_finish();
}
