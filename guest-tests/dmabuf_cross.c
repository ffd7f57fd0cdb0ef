/*
 * dmabuf_cross.c - DMABUF suite: two devices of one VM (edu-plus and the
 * gpu, each in its own IOMMU group and container), each exporting DMABUFs.
 * What one device's lifetime does to its own buffers must not reach the
 * other's: vfio-pci keeps a list of DMABUFs per device and revokes that
 * list when the device closes (vfio_pci_dma_buf_cleanup), so closing the
 * other device while both have buffers alive must leave ours, our mappings
 * and our exports as they were.
 *
 * The second device comes from db_open_other (already bound to vfio-pci, or
 * a known device present); without one the cases skip, saying so.
 * Our RAM BAR bytes: 28 MiB + 4 pages, in-page 0x5c0-0x5df. The other
 * device's RAM BAR: 60 MiB + 4 pages, in-page 0x5e0-0x5ef, which its own
 * run of this suite does not use; the writes there print no bar-write line
 * (the host checks a line against the device the run tests, not the other).
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

#define P DB_PAGE
#define OURS_OFF (28 * DB_MIB)
#define THEIRS_OFF (60 * DB_MIB)

/* Export 4 (ours) or 8 (theirs) pages: the sizes tell the buffers apart. */
static int export_pages(int devfd, uint32_t region, uint64_t off,
			uint32_t pages, const char *whose)
{
	const struct db_range r[] = { { off, pages * P } };
	int fd = db_export_ok(devfd, region, r, 1);

	if (fd >= 0)
		ktap_expect_eq(whose, (uint64_t)pages * P,
			       (uint64_t)db_dmabuf_size(fd));
	return fd;
}

const char *case_cross_device_exports_independent(void)
{
	const char *why = db_need_export();
	struct db_other o;
	int mine = -1, theirs = -1, again;

	if (why || (why = db_open_other(&o)))
		return why;
	if (o.dev.device < 0)
		return NULL;
	/* Both devices' DMABUFs alive at once, each of its own device. */
	mine = export_pages(db.dev.device, db.ram_bar, OURS_OFF, 4,
			    "size of our DMABUF");
	theirs = export_pages(o.dev.device, o.ram.index, THEIRS_OFF, 8,
			      "size of the other device's DMABUF");
	/* Close the other device with its buffer still held. */
	vu_close_device(&o.dev);
	ktap_diag("%s closed with its DMABUF (fd %d) still open", o.name,
		  theirs);
	if (theirs >= 0)
		ktap_expect_eq("the other DMABUF's size after its device "
			       "closed", (uint64_t)8 * P,
			       (uint64_t)db_dmabuf_size(theirs));
	/* Ours: the buffer, a fresh export and the device mapping work. */
	if (mine >= 0)
		ktap_expect_eq("our DMABUF's size after the other device "
			       "closed", (uint64_t)4 * P,
			       (uint64_t)db_dmabuf_size(mine));
	again = export_pages(db.dev.device, db.ram_bar, OURS_OFF, 4,
			     "size of a fresh export of ours");
	if (again >= 0)
		close(again);
	{
		uint32_t v = db_next_value();

		if (db_write32(&db.ref, OURS_OFF + 0x5c0, v))
			db_expect_ram(OURS_OFF + 0x5c0, v);
	}
	/* The other device opens again while its old DMABUF is alive. */
	if (vu_open_device(o.bdf, &o.dev)) {
		ktap_fail("reopening %s (%s) with its old DMABUF alive: %s",
			  o.bdf, o.name, vu_error());
	} else {
		again = export_pages(o.dev.device, o.ram.index, THEIRS_OFF, 8,
				     "size of a fresh export of the other");
		if (again >= 0)
			close(again);
		vu_close_device(&o.dev);
	}
	if (mine >= 0)
		close(mine);
	if (theirs >= 0)
		close(theirs);
	return NULL;
}

/* A mapping of the other device's buffer; no bar-write lines for it. */
static bool other_fault(const struct db_map *m, size_t off)
{
	uint32_t got = 0;
	int rsig = db_read32(m, off, &got);
	int wsig = db_write32_raw(m, off, 0x0cc0ffee);

	return ktap_expect(rsig == SIGBUS && wsig == SIGBUS, "%s +0x%zx after "
			   "its device closed: read %s (0x%08x), write %s; "
			   "expected SIGBUS for both", m->name, off,
			   rsig ? strsignal(rsig) : "no fault", got,
			   wsig ? strsignal(wsig) : "no fault");
}

const char *case_cross_device_close_revokes_only_its_own(void)
{
	const struct db_range rt[] = { { THEIRS_OFF, 4 * P } };
	const char *why = db_need_mmap();
	struct db_map mm = { 0 }, tm = { 0 };
	struct db_layout tl;
	struct db_other o;
	int mine = -1, theirs = -1;
	uint32_t got = 0;

#ifdef DB_SIMULATE_MMAP
	/* The simulation maps page by page, from this device only. */
	return "not simulated (DB_SIMULATE_MMAP): needs a kernel's DMABUF mmap";
#endif
	if (why || (why = db_open_other(&o)))
		return why;
	if (o.dev.device < 0)
		return NULL;
	mine = db_export_map(OURS_OFF + 4 * P, 4 * P, "our dmabuf", &mm);
	tl = db_layout(o.ram.index, rt, 1, 0);
	theirs = db_export_ok(o.dev.device, o.ram.index, rt, 1);
	if (theirs >= 0 &&
	    !db_mmap(theirs, 4 * P, 0, NULL, &tl, "the other's dmabuf", &tm))
		ktap_fail("mmap of the other device's DMABUF: %s",
			  db_errno_name(errno));
	if (mine < 0 || !tm.base)
		goto out;
	db_write_check(&mm, 0x5c4);
	if (db_write32_raw(&tm, 0x5e0, 0x5a5a0001) ||
	    db_read32(&tm, 0x5e0, &got) || got != 0x5a5a0001)
		ktap_fail("the other device's mapping before its close: read "
			  "0x%08x after writing 0x5a5a0001", got);
	vu_close_device(&o.dev);
	other_fault(&tm, 0x5e0);
	other_fault(&tm, 3 * P + 0x5e4);
	/* Ours keeps working, through the DMABUF and the device fd. */
	db_write_check(&mm, 0x5c8);
	db_write_check(&mm, 3 * P + 0x5cc);
	db_ref_write_check(&mm, 2 * P + 0x5d0);
out:
	db_munmap(&tm);
	db_munmap(&mm);
	if (theirs >= 0)
		close(theirs);
	if (mine >= 0)
		close(mine);
	vu_close_device(&o.dev);
	return NULL;
}
