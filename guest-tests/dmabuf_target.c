/*
 * dmabuf_target.c - which device the DMABUF suite runs against: the devices
 * it knows register facts of, the command line that picks one, and finding
 * a second device for the cross-device cases.
 *
 * Everything else the suite needs (BAR sizes, which slots hold no BAR) it
 * reads from VFIO at run time, so a device not in the table still runs the
 * export, mmap, huge and lifetime cases: only the BAR0 register checks of
 * mmap_bar0_registers need the table.
 */
#include "dmabuf_util.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ktap.h"

static const struct db_device known[] = {
	/* QEMU's edu plus a 64 MiB RAM BAR1; BAR0+4 is edu's liveness check. */
	{ .name = "edu-plus", .vendor = 0x1234, .device = 0x11e8,
	  .ram_bar = 1, .bar0_size = 1u << 20, .regs_known = true,
	  .id = 0x010000ed, .rw_reg = 0x04, .rw_xor = 0xffffffffu },
	/* The GPU-like device: VRAM in BAR2 (4 GiB by default), SCRATCH. */
	{ .name = "gpu", .vendor = 0x1af4, .device = 0x10f0,
	  .ram_bar = 2, .bar0_size = 16u << 10, .regs_known = true,
	  .id = 0x67707501, .rw_reg = 0x10, .rw_xor = 0 },
};

#define N_KNOWN (sizeof(known) / sizeof(known[0]))

const struct db_device *db_known_device(uint16_t vendor, uint16_t device)
{
	for (size_t i = 0; i < N_KNOWN; i++)
		if (known[i].vendor == vendor && known[i].device == device)
			return &known[i];
	return NULL;
}

/* A "dddd:bb:dd.f" name, as in /sys/bus/pci/devices. */
static bool is_bdf(const char *s)
{
	return strlen(s) == 12 && s[4] == ':' && s[7] == ':' && s[10] == '.';
}

/* The ids of bdf from sysfs: true when both were read. */
static bool read_ids(const char *bdf, uint16_t *vendor, uint16_t *device)
{
	unsigned long v, d;

	if (vu_sysfs_hex(bdf, "vendor", &v) || vu_sysfs_hex(bdf, "device", &d))
		return false;
	*vendor = (uint16_t)v;
	*device = (uint16_t)d;
	return true;
}

const struct db_device *db_other_known_device(const char *bdf,
					      char other[VU_BDF_LEN])
{
	DIR *d = opendir("/sys/bus/pci/devices");
	const struct db_device *found = NULL;
	struct dirent *e;
	uint16_t v, dev;

	while (d && !found && (e = readdir(d))) {
		if (!is_bdf(e->d_name) || strcmp(e->d_name, bdf) == 0 ||
		    !read_ids(e->d_name, &v, &dev))
			continue;
		found = db_known_device(v, dev);
		if (found)
			snprintf(other, VU_BDF_LEN, "%s", e->d_name);
	}
	if (d)
		closedir(d);
	return found;
}

/* "vvvv:dddd" in hex: true with both ids set. */
static bool parse_ids(const char *s, uint16_t *vendor, uint16_t *device)
{
	char *end;
	unsigned long v = strtoul(s, &end, 16), d;

	if (end == s || *end != ':' || v > 0xffff)
		return false;
	s = end + 1;
	d = strtoul(s, &end, 16);
	if (end == s || *end || d > 0xffff)
		return false;
	*vendor = (uint16_t)v;
	*device = (uint16_t)d;
	return true;
}

static const char usage[] =
	"usage: dmabuf [VENDOR:DEVICE | DOMAIN:BUS:DEV.FN] [RAM_BAR]\n"
	"  the device to test (default 1234:11e8, edu-plus) and the index of\n"
	"  its RAM BAR (default: the known-device table's, else the largest\n"
	"  mappable BAR); known devices: edu-plus 1234:11e8, gpu 1af4:10f0\n";

int db_parse_args(int argc, char **argv)
{
	char *end;

	db.want_vendor = known[0].vendor;
	db.want_device = known[0].device;
	db.ram_bar_arg = -1;
	if (argc > 1 && strcmp(argv[1], "--help") == 0) {
		fputs(usage, stdout);
		return 1;
	}
	if (argc > 3) {
		fprintf(stderr, "dmabuf: too many arguments\n%s", usage);
		return 2;
	}
	if (argc > 1 && is_bdf(argv[1])) {
		db.want_bdf = argv[1];
	} else if (argc > 1 &&
		   !parse_ids(argv[1], &db.want_vendor, &db.want_device)) {
		fprintf(stderr, "dmabuf: %s is neither VENDOR:DEVICE (hex, "
			"e.g. 1af4:10f0) nor a PCI address (e.g. "
			"0000:00:04.0)\n%s", argv[1], usage);
		return 2;
	}
	if (argc > 2) {
		long bar = strtol(argv[2], &end, 10);

		if (end == argv[2] || *end || bar < 0 || bar > 5) {
			fprintf(stderr, "dmabuf: RAM_BAR %s is no BAR index "
				"(0-5)\n%s", argv[2], usage);
			return 2;
		}
		db.ram_bar_arg = (int)bar;
	}
	return 0;
}

int db_pick_device(void)
{
	const struct db_device *k;

	if (db.want_bdf) {
		snprintf(db.bdf, sizeof(db.bdf), "%s", db.want_bdf);
		if (!read_ids(db.bdf, &db.want_vendor, &db.want_device))
			return -1;	/* vu_error() names the file */
	} else if (vu_find_pci_device(db.want_vendor, db.want_device,
				      db.bdf)) {
		return -1;
	}
	k = db_known_device(db.want_vendor, db.want_device);
	db.dv = k ? *k : (struct db_device){ .name = "device",
					     .vendor = db.want_vendor,
					     .device = db.want_device,
					     .ram_bar = -1 };
	if (db.ram_bar_arg >= 0)
		db.dv.ram_bar = db.ram_bar_arg;
	return 0;
}

/* Another device bound to vfio-pci in this VM: true with its BDF. */
static bool other_vfio_device(char bdf[VU_BDF_LEN])
{
	DIR *d = opendir("/sys/bus/pci/drivers/vfio-pci");
	struct dirent *e;
	bool found = false;

	while (d && !found && (e = readdir(d))) {
		/* Devices are the "dddd:bb:dd.f" links. */
		if (is_bdf(e->d_name) && strcmp(e->d_name, db.bdf) != 0) {
			snprintf(bdf, VU_BDF_LEN, "%s", e->d_name);
			found = true;
		}
	}
	if (d)
		closedir(d);
	return found;
}

const char *db_open_other(struct db_other *o)
{
	struct vfio_region_info info;
	const struct db_device *k = NULL;
	uint16_t v, d;

	o->dev = (struct vu_device)VU_DEVICE_INIT;
	if (!other_vfio_device(o->bdf)) {
		k = db_other_known_device(db.bdf, o->bdf);
		if (!k)
			return "no second device in this VM (none bound to "
			       "vfio-pci, none of the known ones present)";
		if (vu_bind_vfio_pci(o->bdf)) {
			ktap_fail("binding %s (%s) to vfio-pci: %s", o->bdf,
				  k->name, vu_error());
			return NULL;
		}
	}
	if (!k && read_ids(o->bdf, &v, &d))
		k = db_known_device(v, d);
	o->name = k ? k->name : "the other device";
	if (vu_open_device(o->bdf, &o->dev)) {
		ktap_fail("opening %s (%s): %s", o->bdf, o->name, vu_error());
		return NULL;
	}
	/* Its RAM BAR: the table's, else the largest it lets us mmap. */
	o->ram.size = 0;
	for (uint32_t i = 0; i < VFIO_PCI_ROM_REGION_INDEX; i++)
		if (!vu_region_info(o->dev.device, i, &info) &&
		    (k ? (int)i == k->ram_bar :
		     (info.flags & VFIO_REGION_INFO_FLAG_MMAP) &&
		     info.size > o->ram.size))
			o->ram = info;
	if (o->ram.size < DB_RAM_MIN) {
		vu_close_device(&o->dev);
		return db_why("the second device %s (%s) has no mappable BAR "
			      "of 64 MiB or more", o->bdf, o->name);
	}
	ktap_diag("second device: %s at %s, iommu group %d, RAM BAR%u 0x%llx "
		  "bytes", o->name, o->bdf, o->dev.group_id, o->ram.index,
		  (unsigned long long)o->ram.size);
	return NULL;
}
