/*
 * dmabuf_memattr.c - DMABUF suite: CPU memory attributes of DMABUF mappings
 * (VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR, v3 of the series: SET only, NC the
 * default, WC for future mmaps, an unknown value ENOENT).
 *
 * Whether a mapping really is WC is only visible where the guest kernel
 * tracks it: x86 PAT keeps a memory type per reserved physical range in
 * debugfs (x86/pat_memtype_list; /init mounts debugfs). A mapping whose
 * PFNs are inserted at fault time may reserve nothing there; then the case
 * says so and SKIPs instead of guessing.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "dmabuf_cases.h"
#include "dmabuf_util.h"
#include "ktap.h"

#define BAR1 VFIO_PCI_BAR1_REGION_INDEX
#define P DB_PAGE

/* Two snapshots of the PAT list (a few tens of KiB each: not on the stack). */
static struct db_pat_list pat_before, pat_after;

/* Map a fresh 4-page buffer at bar_off (after memattr if set), touch it. */
static int map_touch(uint64_t bar_off, bool set_wc, struct db_map *m)
{
	const struct db_range r[] = { { bar_off, 4 * P } };
	struct db_layout lay = db_layout(BAR1, r, 1, 0);
	int fd = db_export_ok(db.dev.device, BAR1, r, 1);

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
		uint32_t v = db_next_value();

		if (db_write32(m, pg * P + 0x400, v))
			db_expect_bar1(bar_off + pg * P + 0x400, v);
	}
	return fd;
}

const char *case_memattr_default_nc(void)
{
	const uint64_t off = 8 * DB_MIB;
	const char *why = db_need_mmap(), *type;
	struct db_map m;
	int fd;

	if (why)
		return why;
	db_pat_read(&pat_before);
	fd = map_touch(off, false, &m);
	if (fd < 0)
		return NULL;
	db_pat_read(&pat_after);
	type = db_pat_new_type(&pat_before, &pat_after, db.bar1_phys + off,
			       db.bar1_phys + off + 4 * P);
	if (!pat_after.ok)
		ktap_diag("PAT: pat_memtype_list not readable");
	else if (!*type)
		ktap_diag("PAT: no new memtype entry for the mapping (not "
			  "visible there)");
	else
		ktap_expect(strcmp(type, "uncached-minus") == 0, "PAT memtype "
			    "of a default (NC) mapping: expected "
			    "uncached-minus, got %s", type);
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
	struct db_layout lay = db_layout(BAR1, r, 1, 0);
	const char *why = db_need_memattr();
	struct db_map nc, wc;
	uint32_t v;
	int fd;

	if (why || (why = db_need_mmap()))
		return why;
	fd = db_export_ok(db.dev.device, BAR1, r, 1);
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
			db_expect_bar1(r[0].offset + P + 0x410, v);
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
	fd = db_export_ok(db.dev.device, BAR1, r, 1);
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

const char *case_memattr_wc_visible(void)
{
	const uint64_t off = 8 * DB_MIB + 192 * P;
	const char *why = db_need_memattr(), *type;
	struct db_map m;
	int fd;

	if (why || (why = db_need_mmap()))
		return why;
	db_pat_read(&pat_before);
	if (!pat_before.ok)
		return "x86/pat_memtype_list not readable (no debugfs?)";
	fd = map_touch(off, true, &m);
	if (fd < 0)
		return NULL;
	db_pat_read(&pat_after);
	type = db_pat_new_type(&pat_before, &pat_after, db.bar1_phys + off,
			       db.bar1_phys + off + 4 * P);
	db_munmap(&m);
	close(fd);
	if (!*type)
		return db_why("WC not visible: no new PAT memtype entry covers "
			      "[0x%" PRIx64 ", +16K) (%d entries)",
			      db.bar1_phys + off, pat_after.n);
	ktap_expect(strcmp(type, "write-combining") == 0, "PAT memtype of a WC "
		    "mapping: expected write-combining, got %s", type);
	return NULL;
}
