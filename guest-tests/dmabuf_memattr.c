/*
 * dmabuf_memattr.c - DMABUF suite: CPU memory attributes of DMABUF mappings
 * (VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR, v3 of the series: SET only, NC the
 * default, WC for future mmaps, an unknown value ENOENT).
 *
 * Whether a mapping really is WC is only visible in the guest kernel's own
 * bookkeeping (dmabuf_pat.c): the page-table entries when debugfs shows
 * them (CONFIG_PTDUMP_DEBUGFS), else x86 PAT's reserved memory types, which
 * decide the cache mode of every PFN put into a page table. vfio-pci itself
 * ioremaps every BAR uncached-minus when the device is opened
 * (vfio_pci_core_map_bars), and PAT gives a fault-time PFN the type of the
 * reservation covering it, so a WC request can be silently downgraded:
 * memattr_wc_installed reports that as a failure with the evidence.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "dmabuf_cases.h"
#include "dmabuf_util.h"
#include "ktap.h"

#define RAM_BAR db.ram_bar
#define P DB_PAGE

/* Two snapshots of the PAT list (a few tens of KiB each: not on the stack). */
static struct db_pat_list pat_before, pat_after;

/* "[0x..-0x..) type" of a PAT entry, and whose it likely is. */
static const char *pat_origin(const struct db_pat_entry *e)
{
	bool whole_bar = e->start == db.ram_phys &&
			 e->end == db.ram_phys + db.ram.size;

	if (!e->end)
		return "no PAT reservation covers it, and a PFN nobody reserved "
		       "is mapped uncached-minus";
	return db_why("PAT reservation [0x%" PRIx64 "-0x%" PRIx64 ") %s%s",
		      e->start, e->end, e->type, whole_bar ? ", all of RAM_BAR, "
		      "as vfio-pci reserves it when it opens the device (see "
		      "open_device)" : "");
}

/*
 * Map a fresh 4-page buffer at bar_off (after memattr if set) and write a
 * word into each page through it (val[], checked later by check_touch).
 */
static int map_touch(uint64_t bar_off, bool set_wc, struct db_map *m,
		     uint32_t val[4])
{
	const struct db_range r[] = { { bar_off, 4 * P } };
	struct db_layout lay = db_layout(RAM_BAR, r, 1, 0);
	int fd = db_export_ok(db.dev.device, RAM_BAR, r, 1);

	if (fd < 0)
		return -1;
	if (set_wc && db_set_memattr(db.dev.device, fd, db.memattr_wc)) {
		ktap_fail("SET memattr WC: %s", db_errno_name(errno));
		close(fd);
		return -1;
	}
	if (!db_mmap(fd, 4 * P, 0, NULL, &lay, set_wc ? "WC dmabuf" :
		     "default dmabuf", m)) {
		ktap_fail("mmap: %s", db_errno_name(errno));
		close(fd);
		return -1;
	}
	for (uint32_t pg = 0; pg < 4; pg++) {
		val[pg] = db_next_value();
		db_write32(m, pg * P + 0x400, val[pg]);
	}
	return fd;
}

/* The words map_touch wrote, through the device mmap and the mapping. */
static void check_touch(const struct db_map *m, const uint32_t val[4])
{
	for (uint32_t pg = 0; pg < 4; pg++) {
		db_expect_ram(db_bar_offset(&m->lay, pg * P + 0x400), val[pg]);
		db_expect32(m, pg * P + 0x400, val[pg]);
	}
}

const char *case_memattr_default_nc(void)
{
	const uint64_t off = 8 * DB_MIB;
	const char *why = db_need_mmap(), *type;
	struct db_pat_entry e;
	struct db_map m;
	uint32_t val[4];
	int fd;

	if (why)
		return why;
	fd = map_touch(off, false, &m, val);
	if (fd < 0)
		return NULL;
	check_touch(&m, val);
	db_pat_read(&pat_after);
	if (!pat_after.ok) {
		ktap_diag("PAT: %s not readable", "x86/pat_memtype_list");
	} else {
		type = db_pat_lookup(&pat_after, db.ram_phys + off, &e);
		ktap_diag("default mapping: %s", pat_origin(&e));
		ktap_expect(strcmp(type, "uncached-minus") == 0, "PAT memtype "
			    "of a default (NC) mapping: expected "
			    "uncached-minus, got %s", type);
	}
	if (db.memattr_feature) {
		/* v3 has no GET; say what a PROBE of GET answers. */
		int ret = db_probe(db.dev.device, db.feat_memattr,
				   VFIO_DEVICE_FEATURE_GET);
		int err = errno;

		ktap_diag("MEMATTR PROBE GET: %s",
			  ret ? db_errno_name(err) : "supported");
		if (db_set_memattr(db.dev.device, fd, db.memattr_nc))
			ktap_fail("SET memattr NC: %s", db_errno_name(errno));
	}
	db_munmap(&m);
	close(fd);
	return NULL;
}

const char *case_memattr_set_wc(void)
{
	const struct db_range r[] = { { 8 * DB_MIB + 64 * P, 4 * P } };
	struct db_layout lay = db_layout(RAM_BAR, r, 1, 0);
	const char *why = db_need_memattr();
	struct db_map nc, wc;
	uint32_t v;
	int fd;

	if (why || (why = db_need_mmap()))
		return why;
	fd = db_export_ok(db.dev.device, RAM_BAR, r, 1);
	if (fd < 0)
		return NULL;
	if (!db_mmap(fd, 4 * P, 0, NULL, &lay, "NC mapping", &nc)) {
		ktap_fail("mmap: %s", db_errno_name(errno));
		close(fd);
		return NULL;
	}
	if (db_set_memattr(db.dev.device, fd, db.memattr_wc)) {
		ktap_fail("SET memattr WC: %s", db_errno_name(errno));
	} else if (!db_mmap(fd, 4 * P, 0, NULL, &lay, "WC mapping", &wc)) {
		ktap_fail("mmap after SET WC: %s", db_errno_name(errno));
	} else {
		/* Both mappings, old (NC) and new (WC), reach the same bytes. */
		v = db_next_value();
		if (db_write32(&wc, P + 0x410, v)) {
			db_expect32(&nc, P + 0x410, v);
			db_expect_ram(r[0].offset + P + 0x410, v);
		}
		v = db_next_value();
		if (db_write32(&nc, 2 * P + 0x414, v))
			db_expect32(&wc, 2 * P + 0x414, v);
		db_munmap(&wc);
	}
	if (db_set_memattr(db.dev.device, fd, db.memattr_nc))
		ktap_fail("SET memattr NC after WC: %s", db_errno_name(errno));
	if (db_set_memattr(db.dev.device, fd, db.memattr_wc) ||
	    db_set_memattr(db.dev.device, fd, db.memattr_wc))
		ktap_fail("SET memattr WC twice: %s", db_errno_name(errno));
	db_munmap(&nc);
	close(fd);
	return NULL;
}

const char *case_memattr_unknown_refused(void)
{
	const struct db_range r[] = { { 8 * DB_MIB + 128 * P, P } };
	const char *why = db_need_memattr();
	const char *no_foreign = NULL;
	int fd, efd, foreign;

	if (why)
		return why;
	fd = db_export_ok(db.dev.device, RAM_BAR, r, 1);
	if (fd < 0)
		return NULL;
	DB_EXPECT_ERRNO("memattr 2", db_set_memattr(db.dev.device, fd, 2),
			ENOENT);
	DB_EXPECT_ERRNO("memattr 0xffffffff",
			db_set_memattr(db.dev.device, fd, 0xffffffffu),
			ENOENT);
	efd = eventfd(0, EFD_CLOEXEC);
	DB_EXPECT_ERRNO("memattr WC on an eventfd",
			db_set_memattr(db.dev.device, efd, db.memattr_wc),
			EINVAL);
	close(efd);
	DB_EXPECT_ERRNO("memattr WC on fd -1",
			db_set_memattr(db.dev.device, -1, db.memattr_wc),
			EBADF);
	foreign = db_foreign_dmabuf(&no_foreign);
	if (foreign >= 0) {
		DB_EXPECT_ERRNO("memattr WC on another exporter's DMABUF",
				db_set_memattr(db.dev.device, foreign,
					       db.memattr_wc), ENODEV);
		close(foreign);
	} else {
		ktap_diag("%s", no_foreign);
	}
	close(fd);
	return NULL;
}

/* The verdict from the page tables themselves: NULL when WC, else why not. */
static const char *wc_from_ptes(const struct db_map *m, uint32_t pages)
{
	char detail[600];

	for (uint32_t pg = 0; pg < pages; pg++) {
		uintptr_t va = (uintptr_t)m->base + pg * P;
		const char *mode = db_pte_cache_mode(va, detail, sizeof(detail));

		ktap_diag("page %u at 0x%" PRIxPTR ": %s", pg, va, detail);
		if (!mode)
			return db_why("no present page-table entry for page %u "
				      "after writing it (%s)", pg, detail);
		if (strcmp(mode, "write-combining") != 0)
			return db_why("MEMATTR=WC was accepted, but the page-"
				      "table entry of page %u (RAM BAR+0x%" PRIx64
				      ") is %s: %s", pg,
				      db_bar_offset(&m->lay, pg * P), mode,
				      detail);
	}
	return NULL;
}

/* The verdict from PAT's reservations: NULL when WC, else why not. */
static const char *wc_from_pat(const struct db_map *m, uint32_t pages)
{
	for (uint32_t pg = 0; pg < pages; pg++) {
		uint64_t bar = db_bar_offset(&m->lay, pg * P);
		struct db_pat_entry e, before;
		const char *type = db_pat_lookup(&pat_after, db.ram_phys + bar,
						 &e);

		ktap_diag("page %u (RAM BAR+0x%" PRIx64 ", phys 0x%" PRIx64 "): "
			  "%s", pg, bar, db.ram_phys + bar, pat_origin(&e));
		if (strcmp(type, "write-combining") == 0)
			continue;
		db_pat_lookup(&pat_before, db.ram_phys + bar, &before);
		return db_why("MEMATTR=WC was accepted, but x86 PAT maps RAM BAR+0x%"
			      PRIx64 " %s, not write-combining (%s%s): a "
			      "silent downgrade", bar, type, pat_origin(&e),
			      before.end ? ", already there before the "
			      "mapping" : "");
	}
	return NULL;
}

/*
 * WC requested, WC installed. The pages are fresh (nothing in this program
 * touched them through any mapping), the buffer is exported, set WC before
 * its only mmap, and every page is written so that its entry exists. A
 * kernel that accepts WC and installs something else fails here, with what
 * it installed and why PAT chose it. Skips only when the kernel shows
 * neither its page tables nor its PAT reservations.
 */
const char *case_memattr_wc_installed(void)
{
	const uint64_t off = 8 * DB_MIB + 192 * P;
	const char *why = db_need_memattr(), *bad;
	struct db_pat_entry e;
	struct db_map m;
	bool ptes = db_ptdump_available();
	uint32_t val[4];
	int fd;

	if (why || (why = db_need_mmap()))
		return why;
	db_pat_read(&pat_before);
	if (!pat_before.ok && !ptes)
		return "the kernel shows no cache-mode bookkeeping: no "
		       "debugfs x86/pat_memtype_list (debugfs not mounted or "
		       "PAT off) and no page_tables/current_user "
		       "(CONFIG_PTDUMP_DEBUGFS)";
	if (pat_before.ok) {
		db_pat_lookup(&pat_before, db.ram_phys + off, &e);
		ktap_diag("before the mapping, RAM BAR+0x%" PRIx64 ": %s", off,
			  pat_origin(&e));
	}
	fd = map_touch(off, true, &m, val);
	if (fd < 0)
		return NULL;
	db_pat_read(&pat_after);	/* before any other mapping reads them */
	ktap_diag("evidence: %s", ptes ? "the page-table entries (debugfs "
		  "page_tables)" : "PAT reservations (no debugfs page_tables: "
		  "CONFIG_PTDUMP_DEBUGFS is off)");
	bad = ptes ? wc_from_ptes(&m, 4) : wc_from_pat(&m, 4);
	if (bad)
		ktap_fail("%s", bad);
	else
		ktap_diag("WC installed on all 4 pages");
	check_touch(&m, val);
	db_munmap(&m);
	close(fd);
	return NULL;
}
