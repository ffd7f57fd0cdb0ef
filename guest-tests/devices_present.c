/*
 * devices_present.c - several vfio-user devices in one guest: each device
 * the host can attach (edu-plus 1234:11e8, the GPU-like 1af4:10f0) is
 * found, bound to vfio-pci and opened through its own type1 container, its
 * identification register answers through the device fd, and its RAM BAR
 * has the shape the host promised. The last case holds both open at once
 * in different IOMMU groups: what cross-device cases (a DMABUF of one
 * device used through the other) need before they can run.
 *
 * A device that is not attached to this VM is a SKIP, never a failure: the
 * host side decides which devices it attached and which results it wants.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "ktap.h"
#include "vfio_util.h"

struct wanted {
	const char *name;
	uint16_t vendor, device;
	uint32_t id_value;		/* BAR0 + 0 */
	uint32_t ram_bar;		/* the shared-memory BAR */
	uint64_t ram_min;		/* its smallest legal size */
	/* filled in by the cases */
	bool found, opened;
	char bdf[VU_BDF_LEN];
	struct vu_device dev;
};

static struct wanted devs[] = {
	{ "edu-plus", 0x1234, 0x11e8, 0x010000edu, 1, 1ull << 20,
	  .dev = VU_DEVICE_INIT },
	{ "gpu", 0x1af4, 0x10f0, 0x67707501u, 2, 1ull << 30,
	  .dev = VU_DEVICE_INIT },
};

#define N_DEVS (sizeof(devs) / sizeof(devs[0]))

static char why[160];

static const char *find(struct wanted *w)
{
	if (vu_find_pci_device(w->vendor, w->device, w->bdf)) {
		snprintf(why, sizeof(why), "%s (%04x:%04x) is not attached "
			 "to this VM", w->name, w->vendor, w->device);
		return why;
	}
	w->found = true;
	ktap_diag("%s at %s", w->name, w->bdf);
	return NULL;
}

static const char *bind_and_open(struct wanted *w)
{
	char driver[64] = "";

	if (!w->found) {
		snprintf(why, sizeof(why), "%s not found", w->name);
		return why;
	}
	if (vu_bind_vfio_pci(w->bdf)) {
		ktap_fail("%s", vu_error());
		return NULL;
	}
	if (vu_current_driver(w->bdf, driver, sizeof(driver)) == 0)
		ktap_expect(strcmp(driver, "vfio-pci") == 0, "%s driver is "
			    "\"%s\", not vfio-pci", w->name, driver);
	if (vu_open_device(w->bdf, &w->dev)) {
		ktap_fail("%s", vu_error());
		return NULL;
	}
	w->opened = true;
	ktap_diag("%s: iommu group %d", w->name, w->dev.group_id);
	return NULL;
}

static const char *identify(struct wanted *w)
{
	struct vfio_region_info bar0, ram;
	uint32_t id = 0;

	if (!w->opened) {
		snprintf(why, sizeof(why), "%s not opened", w->name);
		return why;
	}
	if (vu_region_info(w->dev.device, VFIO_PCI_BAR0_REGION_INDEX, &bar0) ||
	    vu_pread32(w->dev.device, &bar0, 0, &id)) {
		ktap_fail("%s", vu_error());
		return NULL;
	}
	ktap_expect_eq("identification register", w->id_value, id);
	if (vu_region_info(w->dev.device, w->ram_bar, &ram)) {
		ktap_fail("%s", vu_error());
		return NULL;
	}
	ktap_diag("%s: BAR%u size 0x%" PRIx64 ", flags 0x%x", w->name,
		  w->ram_bar, (uint64_t)ram.size, ram.flags);
	ktap_expect_ge("RAM BAR size", w->ram_min, ram.size);
	ktap_expect(ram.size && !(ram.size & (ram.size - 1)),
		    "RAM BAR size 0x%" PRIx64 " is not a power of two",
		    (uint64_t)ram.size);
	ktap_expect_bits("RAM BAR flags (MMAP)", VFIO_REGION_INFO_FLAG_MMAP,
			 ram.flags);
	return NULL;
}

static const char *edu_found(void) { return find(&devs[0]); }
static const char *edu_opened(void) { return bind_and_open(&devs[0]); }
static const char *edu_identified(void) { return identify(&devs[0]); }
static const char *gpu_found(void) { return find(&devs[1]); }
static const char *gpu_opened(void) { return bind_and_open(&devs[1]); }
static const char *gpu_identified(void) { return identify(&devs[1]); }

static const char *both_open_in_own_groups(void)
{
	if (!devs[0].opened || !devs[1].opened)
		return "needs both devices opened";
	ktap_expect(devs[0].dev.group_id != devs[1].dev.group_id,
		    "both devices are in IOMMU group %d",
		    devs[0].dev.group_id);
	return NULL;
}

static const struct ktap_case cases[] = {
	{ "edu_plus_found", edu_found },
	{ "edu_plus_bound_and_opened", edu_opened },
	{ "edu_plus_identified", edu_identified },
	{ "gpu_found", gpu_found },
	{ "gpu_bound_and_opened", gpu_opened },
	{ "gpu_identified", gpu_identified },
	{ "both_open_in_own_groups", both_open_in_own_groups },
};

int main(void)
{
	const size_t n = sizeof(cases) / sizeof(cases[0]);

	ktap_plan((int)n);
	ktap_diag("devices_present: every vfio-user device attached, at once");
	ktap_run_cases(cases, n);
	for (size_t i = 0; i < N_DEVS; i++)
		vu_close_device(&devs[i].dev);
	return ktap_finish();
}
