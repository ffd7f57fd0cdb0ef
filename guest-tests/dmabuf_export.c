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
 * upper half of 64-bit BAR1, an unused slot) -> ENODEV (measured on 7.3.4).
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
#define BAR1 VFIO_PCI_BAR1_REGION_INDEX
#define N(a) ((uint32_t)(sizeof(a) / sizeof((a)[0])))

/* BAR1's guest-physical start from sysfs (for the PAT checks). */
static void read_bar1_phys(void)
{
	char path[128], line[128];
	FILE *f;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/resource", db.bdf);
	f = fopen(path, "re");
	if (!f)
		return;
	/* One "0x<start> 0x<end> 0x<flags>" line per resource, BAR0 first. */
	if (fgets(line, sizeof(line), f) && fgets(line, sizeof(line), f))
		sscanf(line, "0x%" SCNx64, &db.bar1_phys);
	fclose(f);
	ktap_diag("BAR1 at guest-physical 0x%" PRIx64, db.bar1_phys);
}

const char *case_open_device(void)
{
	if (vu_find_pci_device(DB_EDU_VENDOR, DB_EDU_DEVICE, db.bdf) ||
	    vu_bind_vfio_pci(db.bdf)) {
		ktap_fail("%s", vu_error());
		return NULL;
	}
	/*
	 * PAT before vfio-pci opens the device, for comparison with
	 * feature_probe's: opening it ioremaps every BAR (a reservation that
	 * decides the cache mode of every later mapping, see dmabuf_pat.c).
	 */
	read_bar1_phys();
	if (db.bar1_phys)
		db_pat_diag("BAR1 before the device is opened", db.bar1_phys);
	if (vu_open_device(db.bdf, &db.dev) ||
	    vu_region_info(db.dev.device, BAR0, &db.bar0) ||
	    vu_region_info(db.dev.device, BAR1, &db.bar1)) {
		ktap_fail("%s", vu_error());
		return NULL;
	}
	ktap_diag("BDF %s, iommu group %d; BAR0 0x%" PRIx64 " bytes, BAR1 0x%"
		  PRIx64 " bytes", db.bdf, db.dev.group_id,
		  (uint64_t)db.bar0.size, (uint64_t)db.bar1.size);
	if (!ktap_expect_eq("BAR0 size", DB_BAR0_SIZE, db.bar0.size) ||
	    !ktap_expect_eq("BAR1 size", DB_BAR1_SIZE, db.bar1.size))
		return NULL;
	/*
	 * The reference: all of BAR1 through the VFIO device fd (not a DMABUF
	 * fd), placed so that it may use 2 MiB entries like any other.
	 */
	if (!db_mmap_device(&db.bar1, 0, db.bar1.size, "BAR1 device mmap",
			    &db.ref)) {
		ktap_fail("mmap of BAR1 through the device fd: %s",
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
	if (db.bar1_phys)
		db_pat_diag("BAR1 with the device open", db.bar1_phys);
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
	const struct db_range r[] = { { 0, DB_BAR0_SIZE } };
	const char *why = db_need_export();

	if (why)
		return why;
	export_and_check(BAR0, r, N(r));
	return NULL;
}

const char *case_export_bar1_whole(void)
{
	const struct db_range r[] = { { 0, DB_BAR1_SIZE } };
	const char *why = db_need_export();

	if (why)
		return why;
	export_and_check(BAR1, r, N(r));
	return NULL;
}

const char *case_export_bar1_one_range(void)
{
	const struct db_range mid[] = { { 16 * DB_MIB, 2 * DB_PAGE } };
	const struct db_range last[] = { { DB_BAR1_SIZE - DB_PAGE, DB_PAGE } };
	const char *why = db_need_export();

	if (why)
		return why;
	export_and_check(BAR1, mid, N(mid));
	export_and_check(BAR1, last, N(last));	/* ends exactly at the end */
	return NULL;
}

const char *case_export_bar1_several_ranges(void)
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
	export_and_check(BAR1, three, N(three));
	for (uint32_t i = 0; i < DB_MAX_RANGES; i++)
		eight[i] = (struct db_range){ (DB_MAX_RANGES - i) * DB_MIB,
					      (i + 1) * DB_PAGE };
	export_and_check(BAR1, eight, DB_MAX_RANGES);
	return NULL;
}

const char *case_export_bar0_several_ranges(void)
{
	const struct db_range r[] = { { DB_PAGE, DB_PAGE }, { 0, DB_PAGE },
				      { 0x80000, 2 * DB_PAGE } };
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
	refused("BAR1 [0, +0)", BAR1, one, N(one), EINVAL);
	refused("BAR1 [0, +4K) + [4K, +0)", BAR1, second, N(second), EINVAL);
	refused("BAR0 [0, +0)", BAR0, one, N(one), EINVAL);
	return NULL;
}

const char *case_export_out_of_range_refused(void)
{
	const struct db_range past[] = { { DB_BAR1_SIZE, DB_PAGE } };
	const struct db_range across[] = { { DB_BAR1_SIZE - DB_PAGE,
					     2 * DB_PAGE } };
	const struct db_range second[] = { { 0, DB_PAGE },
					   { DB_BAR1_SIZE, DB_PAGE } };
	const struct db_range bar0[] = { { DB_BAR0_SIZE - DB_PAGE,
					   2 * DB_PAGE } };
	const struct db_range huge[] = { { 0, 2ull * DB_BAR1_SIZE } };
	const struct db_range wrap[] = { { UINT64_MAX & ~(uint64_t)0xfff,
					   DB_PAGE } };
	const char *why = db_need_export();

	if (why)
		return why;
	refused("BAR1 [64M, +4K)", BAR1, past, N(past), EINVAL);
	refused("BAR1 [64M-4K, +8K)", BAR1, across, N(across), EINVAL);
	refused("BAR1 [0, +4K) + [64M, +4K)", BAR1, second, N(second), EINVAL);
	refused("BAR1 [0, +128M)", BAR1, huge, N(huge), EINVAL);
	refused("BAR0 [1M-4K, +8K)", BAR0, bar0, N(bar0), EINVAL);
	/* BAR address + offset wraps around: checked for overflow first. */
	refused("BAR1 [2^64-4K, +4K)", BAR1, wrap, N(wrap), EOVERFLOW);
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
	refused("BAR1 [0x800, +4K)", BAR1, off, N(off), EINVAL);
	refused("BAR1 [0, +0x800)", BAR1, len, N(len), EINVAL);
	refused("BAR1 [4K, +4K+1)", BAR1, both, N(both), EINVAL);
	refused("BAR1 [0, +4K) + [0x2004, +4K)", BAR1, second, N(second),
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
	export_and_check(BAR1, part, N(part));
	export_and_check(BAR1, same, N(same));
	return NULL;
}

/* The header fields themselves: ranges, flags, region, GET vs SET. */
const char *case_export_bad_arguments_refused(void)
{
	const struct db_range r[] = { { 0, DB_PAGE } };
	uint64_t p[4] = { 0 };
	uint32_t hdr[4] = { BAR1, 0, 1 /* flags */, 1 };
	const char *why = db_need_export();

	if (why)
		return why;
	refused("nr_ranges 0", BAR1, r, 0, EINVAL);
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
	/* BAR slot 2 is BAR1's upper half; slot 3 is unused. */
	refused("region 2 (BAR1 upper half)", VFIO_PCI_BAR2_REGION_INDEX, r, 1,
		ENODEV);
	refused("region 3 (no BAR)", VFIO_PCI_BAR3_REGION_INDEX, r, 1, ENODEV);
	return NULL;
}
