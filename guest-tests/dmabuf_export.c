/*
 * dmabuf_export.c - DMABUF suite: opening the device, feature detection, and
 * exporting DMABUFs of BAR ranges (VFIO_DEVICE_FEATURE_DMA_BUF, stock since
 * 6.19). Export needs no mmap support, so these cases run on every kernel
 * that has the feature; they write nothing.
 *
 * Errnos are those of the stock 7.3 export path
 * (drivers/vfio/pci/vfio_pci_dmabuf.c): a zero length, an unaligned offset
 * or length, no ranges or non-zero flags -> EINVAL; a range past the end of
 * the BAR -> EINVAL; offset + BAR address overflowing -> EOVERFLOW; a region
 * index from the ROM up, or a BAR slot with no memory BAR behind it (the
 * upper half of 64-bit RAM_BAR, an unused slot) -> ENODEV (measured on 7.3.4).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "dmabuf_cases.h"
#include "dmabuf_util.h"
#include "ktap.h"

#define BAR0 VFIO_PCI_BAR0_REGION_INDEX
#define RAM_BAR db.ram_bar
#define N(a) ((uint32_t)(sizeof(a) / sizeof((a)[0])))

/* The RAM BAR's guest-physical start from sysfs (for the PAT checks). */
static void read_ram_phys(void)
{
	char path[128], line[128];
	FILE *f;
	bool got = true;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/resource", db.bdf);
	f = fopen(path, "re");
	if (!f)
		return;
	/* One "0x<start> 0x<end> 0x<flags>" line per resource, BAR0 first. */
	for (uint32_t i = 0; got && i <= db.ram_bar; i++)
		got = fgets(line, sizeof(line), f) != NULL;
	if (got)
		sscanf(line, "0x%" SCNx64, &db.ram_phys);
	fclose(f);
	ktap_diag("RAM BAR (BAR%u) at guest-physical 0x%" PRIx64, db.ram_bar,
		  db.ram_phys);
}

/* The largest BAR VFIO lets us mmap: the RAM BAR of an unknown device. */
static int probe_ram_bar(void)
{
	struct vfio_region_info info;
	uint64_t best_size = 0;
	int best = -1;

	for (uint32_t i = 0; i < VFIO_PCI_ROM_REGION_INDEX; i++)
		if (!vu_region_info(db.dev.device, i, &info) &&
		    (info.flags & VFIO_REGION_INFO_FLAG_MMAP) &&
		    info.size > best_size) {
			best = (int)i;
			best_size = info.size;
		}
	return best;
}

/* The RAM BAR must be mappable memory the cases' areas fit in. */
static bool check_ram_bar(void)
{
	const uint64_t size = db.ram.size;

	ktap_diag("%s %04x:%04x at %s, iommu group %d; BAR0 0x%" PRIx64
		  " bytes, RAM BAR%u 0x%" PRIx64 " bytes", db.dv.name,
		  db.dv.vendor, db.dv.device, db.bdf, db.dev.group_id,
		  (uint64_t)db.bar0.size, db.ram_bar, size);
	if (db.dv.bar0_size &&
	    !ktap_expect_eq("BAR0 size", db.dv.bar0_size, db.bar0.size))
		return false;
	return ktap_expect(db.ram.flags & VFIO_REGION_INFO_FLAG_MMAP,
			   "RAM BAR%u: VFIO does not offer mmap (flags 0x%x)",
			   db.ram_bar, db.ram.flags) &&
	       ktap_expect(size >= DB_RAM_MIN && (size & (size - 1)) == 0,
			   "RAM BAR%u: 0x%" PRIx64 " bytes; the suite needs a "
			   "power of two of at least 64 MiB", db.ram_bar, size);
}

const char *case_open_device(void)
{
	if (db_pick_device() || vu_bind_vfio_pci(db.bdf)) {
		ktap_fail("%s", vu_error());
		return NULL;
	}
	/*
	 * PAT before vfio-pci opens the device, for comparison with
	 * feature_probe's: opening it ioremaps every BAR (a reservation that
	 * decides the cache mode of every later mapping, see dmabuf_pat.c).
	 * A device whose RAM BAR is probed through VFIO gets it afterwards.
	 */
	if (db.dv.ram_bar >= 0) {
		db.ram_bar = (uint32_t)db.dv.ram_bar;
		read_ram_phys();
		if (db.ram_phys)
			db_pat_diag("RAM BAR before the device is opened",
				    db.ram_phys);
	}
	if (vu_open_device(db.bdf, &db.dev) ||
	    vu_region_info(db.dev.device, BAR0, &db.bar0)) {
		ktap_fail("%s", vu_error());
		return NULL;
	}
	if (db.dv.ram_bar < 0) {
		db.dv.ram_bar = probe_ram_bar();
		if (db.dv.ram_bar < 0) {
			ktap_fail("%s has no BAR VFIO lets us mmap", db.bdf);
			return NULL;
		}
		db.ram_bar = (uint32_t)db.dv.ram_bar;
		read_ram_phys();
		if (db.ram_phys)
			db_pat_diag("RAM BAR with the device open",
				    db.ram_phys);
	}
	if (vu_region_info(db.dev.device, RAM_BAR, &db.ram)) {
		ktap_fail("%s", vu_error());
		return NULL;
	}
	if (!check_ram_bar())
		return NULL;
	/*
	 * The reference: the cases' area of the RAM BAR (its first 64 MiB)
	 * through the VFIO device fd (not a DMABUF fd), placed so that it may
	 * use 2 MiB entries like any other. Never all of a multi-GiB VRAM
	 * BAR: a pass over it would make the server's memfd that big.
	 */
	if (!db_mmap_device(&db.ram, 0, DB_RAM_MIN, "RAM BAR device mmap",
			    &db.ref)) {
		ktap_fail("mmap of the RAM BAR through the device fd: %s",
			  db_errno_name(errno));
		return NULL;
	}
	db.opened = true;
	return NULL;
}

const char *case_feature_probe(void)
{
	if (!db.opened)
		return "needs open_device";
	/* What is missing is reported by the cases that need it, as SKIPs. */
	db_detect_features();
	/* vfio-pci ioremaps every BAR when it opens the device: see it. */
	if (db.ram_phys)
		db_pat_diag("RAM BAR after feature detection", db.ram_phys);
	return NULL;
}

/* Export, check the size the kernel reports and the exporter's name. */
static void export_and_check(uint32_t region, const struct db_range *r,
			     uint32_t nr)
{
	char path[64], line[128];
	uint64_t want = 0;
	int64_t size;
	FILE *f;
	int fd;

	for (uint32_t i = 0; i < nr; i++)
		want += r[i].length;
	fd = db_export_ok(db.dev.device, region, r, nr);
	if (fd < 0)
		return;
	size = db_dmabuf_size(fd);
	ktap_diag("region %u, %u range(s): fd %d, size 0x%" PRIx64, region,
		  nr, fd, (uint64_t)size);
	ktap_expect_eq("DMABUF size (lseek SEEK_END)", want, (uint64_t)size);
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	f = fopen(path, "re");
	while (f && fgets(line, sizeof(line), f))
		if (strncmp(line, "exp_name:", 9) == 0)
			ktap_expect(strstr(line, "vfio") != NULL, "fdinfo %s",
				    line);
	if (f)
		fclose(f);
	close(fd);
}

const char *case_export_bar0_whole(void)
{
	const struct db_range r[] = { { 0, db.bar0.size } };
	const char *why = db_need_export();

	if (why)
		return why;
	export_and_check(BAR0, r, N(r));
	return NULL;
}

const char *case_export_ram_bar_whole(void)
{
	const struct db_range r[] = { { 0, db.ram.size } };
	const char *why = db_need_export();

	if (why)
		return why;
	export_and_check(RAM_BAR, r, N(r));
	return NULL;
}

const char *case_export_ram_bar_one_range(void)
{
	const struct db_range mid[] = { { 16 * DB_MIB, 2 * DB_PAGE } };
	const struct db_range last[] = { { db.ram.size - DB_PAGE, DB_PAGE } };
	const char *why = db_need_export();

	if (why)
		return why;
	export_and_check(RAM_BAR, mid, N(mid));
	export_and_check(RAM_BAR, last, N(last));	/* ends exactly at the end */
	return NULL;
}

const char *case_export_ram_bar_several_ranges(void)
{
	/* Out of BAR order, different sizes; then the most the suite uses. */
	const struct db_range three[] = {
		{ 1 * DB_MIB, DB_PAGE }, { 8 * DB_MIB, 3 * DB_PAGE },
		{ 0, DB_PAGE },
	};
	struct db_range eight[DB_MAX_RANGES];
	const char *why = db_need_export();

	if (why)
		return why;
	export_and_check(RAM_BAR, three, N(three));
	for (uint32_t i = 0; i < DB_MAX_RANGES; i++)
		eight[i] = (struct db_range){ (DB_MAX_RANGES - i) * DB_MIB,
					      (i + 1) * DB_PAGE };
	export_and_check(RAM_BAR, eight, DB_MAX_RANGES);
	return NULL;
}

const char *case_export_bar0_several_ranges(void)
{
	const struct db_range r[] = { { DB_PAGE, DB_PAGE }, { 0, DB_PAGE },
				      { db.bar0.size / 2, 2 * DB_PAGE } };
	const char *why = db_need_export();

	if (why)
		return why;
	export_and_check(BAR0, r, N(r));
	return NULL;
}

/* One export that must fail with errno expected. */
static void refused(const char *what, uint32_t region,
		    const struct db_range *r, uint32_t nr, int expected)
{
	DB_EXPECT_ERRNO(what, db_export(db.dev.device, region, r, nr), expected);
}

const char *case_export_zero_length_refused(void)
{
	const struct db_range one[] = { { 0, 0 } };
	const struct db_range second[] = { { 0, DB_PAGE }, { DB_PAGE, 0 } };
	const char *why = db_need_export();

	if (why)
		return why;
	refused("RAM BAR [0, +0)", RAM_BAR, one, N(one), EINVAL);
	refused("RAM BAR [0, +4K) + [4K, +0)", RAM_BAR, second, N(second), EINVAL);
	refused("BAR0 [0, +0)", BAR0, one, N(one), EINVAL);
	return NULL;
}

const char *case_export_out_of_range_refused(void)
{
	const struct db_range past[] = { { db.ram.size, DB_PAGE } };
	const struct db_range across[] = { { db.ram.size - DB_PAGE,
					     2 * DB_PAGE } };
	const struct db_range second[] = { { 0, DB_PAGE },
					   { db.ram.size, DB_PAGE } };
	const struct db_range bar0[] = { { db.bar0.size - DB_PAGE,
					   2 * DB_PAGE } };
	const struct db_range huge[] = { { 0, 2ull * db.ram.size } };
	const struct db_range wrap[] = { { UINT64_MAX & ~(uint64_t)0xfff,
					   DB_PAGE } };
	const char *why = db_need_export();

	if (why)
		return why;
	refused("RAM BAR [end, +4K)", RAM_BAR, past, N(past), EINVAL);
	refused("RAM BAR [end-4K, +8K)", RAM_BAR, across, N(across), EINVAL);
	refused("RAM BAR [0, +4K) + [end, +4K)", RAM_BAR, second, N(second), EINVAL);
	refused("RAM BAR [0, +2 x its size)", RAM_BAR, huge, N(huge), EINVAL);
	refused("BAR0 [end-4K, +8K)", BAR0, bar0, N(bar0), EINVAL);
	/* BAR address + offset wraps around: checked for overflow first. */
	refused("RAM BAR [2^64-4K, +4K)", RAM_BAR, wrap, N(wrap), EOVERFLOW);
	return NULL;
}

const char *case_export_unaligned_refused(void)
{
	const struct db_range off[] = { { 0x800, DB_PAGE } };
	const struct db_range len[] = { { 0, 0x800 } };
	const struct db_range both[] = { { DB_PAGE, DB_PAGE + 1 } };
	const struct db_range second[] = { { 0, DB_PAGE }, { 0x2004, DB_PAGE } };
	const char *why = db_need_export();

	if (why)
		return why;
	refused("RAM BAR [0x800, +4K)", RAM_BAR, off, N(off), EINVAL);
	refused("RAM BAR [0, +0x800)", RAM_BAR, len, N(len), EINVAL);
	refused("RAM BAR [4K, +4K+1)", RAM_BAR, both, N(both), EINVAL);
	refused("RAM BAR [0, +4K) + [0x2004, +4K)", RAM_BAR, second, N(second),
		EINVAL);
	refused("BAR0 [0x800, +4K)", BAR0, off, N(off), EINVAL);
	return NULL;
}

/*
 * Overlapping ranges are accepted: stock 7.3 checks each range against the
 * BAR only, and the mmap series documents ranges that "overlap/alias" as
 * valid (vfio_pci_dma_buf_find_pfn). alias_overlapping_ranges maps one.
 */
const char *case_export_overlapping_ranges(void)
{
	const struct db_range part[] = { { 2 * DB_MIB, 2 * DB_PAGE },
					 { 2 * DB_MIB + DB_PAGE, 2 * DB_PAGE } };
	const struct db_range same[] = { { 0, DB_PAGE }, { 0, DB_PAGE } };
	const char *why = db_need_export();

	if (why)
		return why;
	ktap_diag("overlapping ranges alias the same BAR pages; the kernel "
		  "accepts them by design");
	export_and_check(RAM_BAR, part, N(part));
	export_and_check(RAM_BAR, same, N(same));
	return NULL;
}

/* The header fields themselves: ranges, flags, region, GET vs SET. */
const char *case_export_bad_arguments_refused(void)
{
	const struct db_range r[] = { { 0, DB_PAGE } };
	uint64_t p[4] = { 0 };
	uint32_t hdr[4] = { RAM_BAR, 0, 1 /* flags */, 1 };
	const char *why = db_need_export();
	uint32_t slots = 0;

	if (why)
		return why;
	refused("nr_ranges 0", RAM_BAR, r, 0, EINVAL);
	memcpy(p, hdr, sizeof(hdr));
	p[2] = 0;
	p[3] = DB_PAGE;
	DB_EXPECT_ERRNO("flags 1", db_feature(db.dev.device, db.feat_dma_buf |
			VFIO_DEVICE_FEATURE_GET, p, sizeof(p)), EINVAL);
	hdr[2] = 0;
	memcpy(p, hdr, sizeof(hdr));
	DB_EXPECT_ERRNO("SET instead of GET", db_feature(db.dev.device,
			db.feat_dma_buf | VFIO_DEVICE_FEATURE_SET, p, sizeof(p)),
			EINVAL);
	refused("region 6 (ROM)", VFIO_PCI_ROM_REGION_INDEX, r, 1, ENODEV);
	refused("region 7 (config)", VFIO_PCI_CONFIG_REGION_INDEX, r, 1,
		ENODEV);
	/*
	 * BAR slots with no BAR behind them: the upper half of a 64-bit BAR
	 * and unused slots, which VFIO reports as regions of size 0.
	 */
	for (uint32_t i = 0; i < VFIO_PCI_ROM_REGION_INDEX; i++) {
		struct vfio_region_info info;

		if (vu_region_info(db.dev.device, i, &info)) {
			ktap_fail("%s", vu_error());
		} else if (info.size == 0) {
			refused(db_why("region %u (no BAR in this slot)", i),
				i, r, 1, ENODEV);
			slots++;
		}
	}
	ktap_diag("%u empty BAR slot(s) refused", slots);
	return NULL;
}

/*
 * Every BAR besides BAR0 and the RAM BAR, exported whole: the gpu's
 * doorbell BAR4. The host traps every access to it (it has no shared
 * memory), but that is QEMU's business: to the guest it is an ordinary
 * page-sized MMIO BAR, which vfio-pci marks mmap-capable (a BAR of at
 * least a page, vfio_pci_probe_mmaps), and export checks only that the BAR
 * is claimed, so the kernel must accept it like any other.
 */
const char *case_export_other_bars_whole(void)
{
	const char *why = db_need_export();
	struct vfio_region_info info;
	uint32_t n = 0;

	if (why)
		return why;
	for (uint32_t i = 1; i < VFIO_PCI_ROM_REGION_INDEX; i++) {
		if (i == RAM_BAR || vu_region_info(db.dev.device, i, &info) ||
		    info.size == 0)
			continue;
		const struct db_range r[] = { { 0, info.size } };

		ktap_diag("BAR%u: 0x%llx bytes, flags 0x%x", i,
			  (unsigned long long)info.size, info.flags);
		export_and_check(i, r, N(r));
		n++;
	}
	if (n == 0)
		return db_why("%s has no BAR besides BAR0 and the RAM BAR",
			      db.dv.name);
	return NULL;
}
