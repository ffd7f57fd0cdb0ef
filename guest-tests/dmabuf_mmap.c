/*
 * dmabuf_mmap.c - DMABUF suite: mmap() of DMABUF fds (the series' feature)
 * and aliasing. Byte 0 of a buffer is byte 0 of its first range, the ranges
 * are concatenated, and an mmap offset indexes into the concatenation. Every
 * write is checked through the VFIO device-fd mapping of the RAM BAR at the
 * offset the ranges imply, and printed as a "# bar-write" line for the host.
 *
 * All of this SKIPs on a kernel whose DMABUFs have no mmap (stock 7.3:
 * mmap() of the fd fails EINVAL, the dma-buf core's answer without an
 * exporter mmap op).
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
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
#define P DB_PAGE

/* Export ranges and map len bytes from off; fails the case on error. */
static int export_map(uint32_t region, const struct db_range *r, uint32_t nr,
		      uint64_t off, size_t len, const char *name,
		      struct db_map *m)
{
	struct db_layout lay = db_layout(region, r, nr, 0);
	int fd = db_export_ok(db.dev.device, region, r, nr);

	if (fd < 0)
		return -1;
	if (!db_mmap(fd, len, off, NULL, &lay, name, m)) {
		ktap_fail("mmap of %s (0x%zx bytes at offset 0x%" PRIx64 "): %s",
			  name, len, off, db_errno_name(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* A second mapping of an exported fd. */
static bool map_more(int fd, const struct db_map *like, uint64_t off,
		     size_t len, const char *name, struct db_map *m)
{
	if (db_mmap(fd, len, off, NULL, &like->lay, name, m))
		return true;
	ktap_fail("mmap of %s (0x%zx bytes at offset 0x%" PRIx64 "): %s", name,
		  len, off, db_errno_name(errno));
	return false;
}

/* mmap of a DMABUF fd must fail with EINVAL. */
static void mmap_refused(const char *what, int fd, size_t len, uint64_t off,
			 int flags)
{
	db_expect_mmap_refused(what, fd, len, off, flags, EINVAL);
}

const char *case_mmap_whole_buffer(void)
{
	const struct db_range r[] = { { 1 * DB_MIB, 16 * P } };
	const char *why = db_need_mmap();
	struct db_map m;
	int fd;

	if (why)
		return why;
	fd = export_map(RAM_BAR, r, 1, 0, 16 * P, "dmabuf [1M, +64K)", &m);
	if (fd < 0)
		return NULL;
	db_write_check(&m, 0x100);
	db_write_check(&m, 5 * P + 0x104);
	db_write_check(&m, 15 * P + 0x108);	/* the last page */
	db_ref_write_check(&m, 7 * P + 0x10c);
	for (uint32_t pg = 0; pg < 16; pg++) {	/* every page agrees */
		uint32_t a = 0, b = 0;

		if (db_read32(&m, pg * P + 0x100, &a) ||
		    db_read32(&db.ref, r[0].offset + pg * P + 0x100, &b))
			ktap_fail("page %u: read faulted", pg);
		else
			ktap_expect(a == b, "page %u: dmabuf 0x%08x, device "
				    "mmap 0x%08x", pg, a, b);
	}
	db_munmap(&m);
	close(fd);
	return NULL;
}

/*
 * BAR0 identifies itself: the ID at 0, a read/write register (edu-plus's
 * liveness check reads back inverted), and BAR0+0x1000 reads what a pread
 * through the device fd reads there.
 */
const char *case_mmap_bar0_registers(void)
{
	const struct db_range whole[] = { { 0, db.bar0.size } };
	const struct db_range swapped[] = { { P, P }, { 0, P } };
	const char *why = db_need_mmap();
	struct db_map m;
	uint32_t v = db_next_value(), at_4k;
	int fd;

	if (why)
		return why;
	if (!db.dv.regs_known)
		return db_why("no BAR0 register facts for %04x:%04x (known: "
			      "edu-plus, gpu)", db.dv.vendor, db.dv.device);
	if (vu_pread32(db.dev.device, &db.bar0, P, &at_4k)) {
		ktap_fail("pread of BAR0+0x1000: %s", vu_error());
		return NULL;
	}
	fd = export_map(BAR0, whole, 1, 0, db.bar0.size, "BAR0 dmabuf", &m);
	if (fd < 0)
		return NULL;
	db_expect32(&m, 0, db.dv.id);
	if (db_write32(&m, db.dv.rw_reg, v))
		db_expect32(&m, db.dv.rw_reg, v ^ db.dv.rw_xor);
	db_munmap(&m);
	close(fd);

	/* Mapping page 1 is BAR0 page 0: the ID must move with it. */
	fd = export_map(BAR0, swapped, N(swapped), 0, 2 * P,
			"BAR0 dmabuf {[4K,+4K), [0,+4K)}", &m);
	if (fd < 0)
		return NULL;
	db_expect32(&m, P, db.dv.id);
	db_expect32(&m, 0, at_4k);		/* BAR0+0x1000 */
	db_munmap(&m);
	close(fd);
	return NULL;
}

const char *case_mmap_nonzero_offset(void)
{
	const struct db_range r[] = { { 2 * DB_MIB, 16 * P } };
	const char *why = db_need_mmap();
	struct db_map m, last;
	int fd;

	if (why)
		return why;
	/* Mapping byte 0 is buffer byte 4 pages: RAM BAR 2M + 16K. */
	fd = export_map(RAM_BAR, r, 1, 4 * P, 8 * P, "dmabuf [2M,+64K) @16K", &m);
	if (fd < 0)
		return NULL;
	db_write_check(&m, 0x110);
	db_write_check(&m, 7 * P + 0x114);
	db_ref_write_check(&m, 3 * P + 0x118);
	if (map_more(fd, &m, 15 * P, P, "dmabuf [2M,+64K) @60K", &last)) {
		db_write_check(&last, 0x11c);
		db_munmap(&last);
	}
	db_munmap(&m);
	close(fd);
	return NULL;
}

const char *case_mmap_past_end_refused(void)
{
	const struct db_range r[] = { { 2 * DB_MIB + 64 * P, 4 * P } };
	const char *why = db_need_mmap();
	int fd;

	if (why)
		return why;
	fd = db_export_ok(db.dev.device, RAM_BAR, r, 1);
	if (fd < 0)
		return NULL;
	mmap_refused("5 pages of a 4-page buffer", fd, 5 * P, 0, MAP_SHARED);
	mmap_refused("4 pages at offset 1 page", fd, 4 * P, P, MAP_SHARED);
	mmap_refused("1 MiB of a 4-page buffer", fd, DB_MIB, 0, MAP_SHARED);
	close(fd);
	return NULL;
}

const char *case_mmap_offset_past_end_refused(void)
{
	const struct db_range r[] = { { 2 * DB_MIB + 64 * P, 4 * P } };
	const char *why = db_need_mmap();
	int fd;

	if (why)
		return why;
	fd = db_export_ok(db.dev.device, RAM_BAR, r, 1);
	if (fd < 0)
		return NULL;
	mmap_refused("offset = size", fd, P, 4 * P, MAP_SHARED);
	mmap_refused("offset 100 pages", fd, P, 100 * P, MAP_SHARED);
	mmap_refused("offset 1 TiB", fd, P, 1ull << 40, MAP_SHARED);
	close(fd);
	return NULL;
}

/* The series refuses private (copy-on-write) mappings of BAR memory. */
const char *case_mmap_private_refused(void)
{
	const struct db_range r[] = { { 2 * DB_MIB + 64 * P, 4 * P } };
	const char *why = db_need_mmap();
	int fd;

	if (why)
		return why;
	fd = db_export_ok(db.dev.device, RAM_BAR, r, 1);
	if (fd < 0)
		return NULL;
	mmap_refused("MAP_PRIVATE", fd, P, 0, MAP_PRIVATE);
	close(fd);
	return NULL;
}

/*
 * Ranges out of BAR order with holes: buffer pages 0-4 are BAR pages
 * 8, 9, 0, 1, 5 (from 3 MiB); pages 2-4, 6 and 7 are skipped and must keep
 * the sentinels written through the device mmap.
 */
const char *case_mmap_multi_range_layout(void)
{
	const uint64_t base = 3 * DB_MIB, in = 0x200;
	const struct db_range r[] = { { base + 8 * P, 2 * P },
				      { base, 2 * P }, { base + 5 * P, P } };
	static const uint32_t bar_page[] = { 8, 9, 0, 1, 5 };
	static const uint32_t skipped[] = { 2, 3, 4, 6, 7 };
	const char *why = db_need_mmap();
	uint32_t sentinel[10], val[5];
	struct db_map m, tail;
	int fd;

	if (why)
		return why;
	for (uint32_t pg = 0; pg < 10; pg++) {
		sentinel[pg] = db_next_value();
		if (!db_write32(&db.ref, base + pg * P + in, sentinel[pg]))
			return NULL;
	}
	fd = export_map(RAM_BAR, r, N(r), 0, 5 * P, "dmabuf 3 ranges", &m);
	if (fd < 0)
		return NULL;
	for (uint32_t k = 0; k < 5; k++) {
		ktap_expect(db_bar_offset(&m.lay, k * P) == base + bar_page[k] * P,
			    "test bug: layout of page %u", k);
		db_expect32(&m, k * P + in, sentinel[bar_page[k]]);
		val[k] = db_next_value();
		if (db_write32(&m, k * P + in, val[k]))
			db_expect_ram(base + bar_page[k] * P + in, val[k]);
	}
	for (uint32_t i = 0; i < N(skipped); i++)
		db_expect_ram(base + skipped[i] * P + in, sentinel[skipped[i]]);
	/* From buffer page 3 on: BAR pages 1 and 5. */
	if (map_more(fd, &m, 3 * P, 2 * P, "dmabuf 3 ranges @12K", &tail)) {
		db_expect32(&tail, in, val[3]);
		db_expect32(&tail, P + in, val[4]);
		db_munmap(&tail);
	}
	db_munmap(&m);
	close(fd);
	return NULL;
}

const char *case_alias_vfio_device_mmap(void)
{
	const struct db_range r[] = { { 4 * DB_MIB, 4 * P } };
	const char *why = db_need_mmap();
	struct db_map m;
	int fd;

	if (why)
		return why;
	fd = export_map(RAM_BAR, r, 1, 0, 4 * P, "dmabuf [4M,+16K)", &m);
	if (fd < 0)
		return NULL;
	db_write_check(&m, P + 0x300);
	db_ref_write_check(&m, 2 * P + 0x304);
	db_munmap(&m);
	close(fd);
	return NULL;
}

const char *case_alias_two_dmabufs(void)
{
	/* F and G share BAR pages 5M+8K and 5M+12K. */
	const struct db_range rf[] = { { 5 * DB_MIB, 4 * P } };
	const struct db_range rg[] = { { 5 * DB_MIB + 2 * P, 4 * P } };
	const char *why = db_need_mmap();
	struct db_map f, g;
	uint32_t v;
	int ff, fg;

	if (why)
		return why;
	ff = export_map(RAM_BAR, rf, 1, 0, 4 * P, "dmabuf F", &f);
	if (ff < 0)
		return NULL;
	fg = export_map(RAM_BAR, rg, 1, 0, 4 * P, "dmabuf G", &g);
	if (fg >= 0) {
		v = db_next_value();
		if (db_write32(&f, 2 * P + 0x310, v))
			db_expect32(&g, 0x310, v);
		v = db_next_value();
		if (db_write32(&g, P + 0x314, v)) {
			db_expect32(&f, 3 * P + 0x314, v);
			db_expect_ram(5 * DB_MIB + 3 * P + 0x314, v);
		}
		db_munmap(&g);
		close(fg);
	}
	db_munmap(&f);
	close(ff);
	return NULL;
}

const char *case_alias_two_mmaps_one_dmabuf(void)
{
	const struct db_range r[] = { { 6 * DB_MIB, 4 * P } };
	const char *why = db_need_mmap();
	struct db_map m1, m2;
	uint32_t v;
	int fd;

	if (why)
		return why;
	fd = export_map(RAM_BAR, r, 1, 0, 4 * P, "dmabuf H", &m1);
	if (fd < 0)
		return NULL;
	if (map_more(fd, &m1, P, 2 * P, "dmabuf H @4K", &m2)) {
		v = db_next_value();
		if (db_write32(&m1, 2 * P + 0x320, v))
			db_expect32(&m2, P + 0x320, v);
		v = db_next_value();
		if (db_write32(&m2, 0x324, v)) {
			db_expect32(&m1, P + 0x324, v);
			db_expect_ram(6 * DB_MIB + P + 0x324, v);
		}
		db_munmap(&m2);
	}
	db_munmap(&m1);
	close(fd);
	return NULL;
}

/* Buffer pages 1 and 2 are the same BAR page. */
const char *case_alias_overlapping_ranges(void)
{
	const uint64_t base = 6 * DB_MIB + 64 * P;
	const struct db_range r[] = { { base, 2 * P }, { base + P, 2 * P } };
	const char *why = db_need_mmap();
	struct db_map m;
	uint32_t v = db_next_value();
	int fd;

	if (why)
		return why;
	fd = export_map(RAM_BAR, r, N(r), 0, 4 * P, "dmabuf overlapping", &m);
	if (fd < 0)
		return NULL;
	if (db_write32(&m, P + 0x330, v)) {
		db_expect32(&m, 2 * P + 0x330, v);
		db_expect_ram(base + P + 0x330, v);
	}
	db_write_check(&m, 3 * P + 0x334);		/* BAR page base + 2 */
	db_munmap(&m);
	close(fd);
	return NULL;
}

/* The offset column of /proc/self/maps for the VMA starting at addr. */
static bool vma_offset(uintptr_t addr, uint64_t *off)
{
	char line[512];
	FILE *f = fopen("/proc/self/maps", "re");
	bool found = false;

	while (f && !found && fgets(line, sizeof(line), f)) {
		uintptr_t start, end;
		char perms[8];

		if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " %7s %" SCNx64,
			   &start, &end, perms, off) == 4 && start == addr)
			found = true;
	}
	if (f)
		fclose(f);
	return found;
}

const char *case_partial_munmap_split(void)
{
	const struct db_range r[] = { { 7 * DB_MIB, 8 * P } };
	const char *why = db_need_mmap();
	struct db_map m, head, tail;
	uint64_t off = 0, head_off = 0;
	uint32_t v;
	int fd;

	if (why)
		return why;
	fd = export_map(RAM_BAR, r, 1, 0, 8 * P, "dmabuf [7M,+32K)", &m);
	if (fd < 0)
		return NULL;
	/* Punch out pages 2-3: two VMAs, [0, 2) and [4, 8). */
	if (munmap((void *)(m.base + 2 * P), 2 * P)) {
		ktap_fail("munmap of pages 2-3: %s", db_errno_name(errno));
		db_munmap(&m);
		close(fd);
		return NULL;
	}
	head = m;
	head.len = 2 * P;
	head.name = "split head";
	tail = m;
	tail.base = m.base + 4 * P;
	tail.len = 4 * P;
	tail.lay.map_off = 4 * P;
	tail.name = "split tail";
	/* The tail VMA's file offset moved on by exactly the 4 pages. */
	if (vma_offset((uintptr_t)head.base, &head_off) &&
	    vma_offset((uintptr_t)tail.base, &off))
		ktap_expect_eq("/proc/self/maps offset of the tail VMA minus "
			       "the head's", 4 * P, off - head_off);
	else
		ktap_fail("/proc/self/maps: no VMAs at %p and %p after the "
			  "split", (void *)head.base, (void *)tail.base);
	db_write_check(&head, P + 0x340);
	db_write_check(&tail, 0x344);		/* BAR 7M + 16K */
	db_write_check(&tail, 3 * P + 0x348);
	v = 0;
	ktap_expect(db_read32(&m, 2 * P, &v) == SIGSEGV,
		    "the unmapped hole must fault with SIGSEGV");
	/* Trim the head's first page too: page 1 must still be BAR page 1. */
	munmap((void *)head.base, P);
	head.base += P;
	head.len = P;
	head.lay.map_off = P;
	db_write_check(&head, 0x34c);
	db_munmap(&head);
	db_munmap(&tail);
	close(fd);
	return NULL;
}
