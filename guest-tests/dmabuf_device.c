/*
 * dmabuf_device.c - DMABUF suite: BAR mmaps through the VFIO device fd
 * itself. A series that reworks vfio-pci's mmap and fault paths for DMABUFs
 * can break the device fd's own BAR mappings, which every VFIO user relies
 * on; these cases hold them to what stock vfio-pci does
 * (vfio_pci_core_mmap: any page-aligned window of a BAR, at its offset, and
 * EINVAL for a window that does not fit). They need no DMABUF feature and
 * run on every kernel.
 *
 * Every mapping sits at an address congruent to its BAR offset modulo
 * 2 MiB, so the kernel may map whole 2 MiB blocks with one PMD; the first
 * access to a block is in its middle, where a PMD computed from the faulting
 * address instead of the block start would point 2 MiB-misaligned.
 * RAM BAR bytes: 18 MiB - 20 MiB + 16 KiB, 20 MiB + 20 KiB, the last page;
 * in-page offsets 0x500-0x53f.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "dmabuf_cases.h"
#include "dmabuf_util.h"
#include "ktap.h"

#define BAR0 VFIO_PCI_BAR0_REGION_INDEX
#define P DB_PAGE

/* A device-fd mapping of the RAM BAR from bar_off; fails the case on error. */
static bool map_ram(uint64_t bar_off, size_t len, const char *name,
		     struct db_map *m)
{
	if (db_mmap_device(&db.ram, bar_off, len, name, m))
		return true;
	ktap_fail("mmap of %s (RAM BAR 0x%" PRIx64 ", 0x%zx bytes): %s", name,
		  bar_off, len, db_errno_name(errno));
	return false;
}

const char *case_device_mmap_nonzero_offset(void)
{
	/* A whole 2 MiB block of the RAM BAR and 4 pages past it. */
	const uint64_t block = 18 * DB_MIB, odd = 20 * DB_MIB + 5 * P;
	const size_t len = DB_HUGE_ALIGN + 4 * P;
	struct db_map m, o, last;

	if (!db.opened)
		return "needs open_device";
	if (map_ram(block, len, "device mmap @18M", &m)) {
		ktap_diag("device mmap of RAM BAR [18M, +2M+16K) at %p",
			  (void *)m.base);
		db_ref_write_check(&m, 300 * P + 0x500);	/* mid-block first */
		db_write_check(&m, 0x504);
		db_write_check(&m, P + 0x508);
		db_write_check(&m, 511 * P + 0x50c);	/* last of the block */
		db_write_check(&m, 512 * P + 0x510);	/* first past it */
		db_write_check(&m, 515 * P + 0x514);
		db_ref_write_check(&m, 77 * P + 0x518);
		db_munmap(&m);
	}
	/* An offset that is no multiple of 2 MiB, or even of 8 KiB. */
	if (map_ram(odd, 3 * P, "device mmap @20M+20K", &o)) {
		db_ref_write_check(&o, P + 0x520);
		db_write_check(&o, 0x524);
		db_write_check(&o, 2 * P + 0x528);
		db_munmap(&o);
	}
	if (map_ram(db.ram.size - P, P, "device mmap of the last page",
		     &last)) {
		db_write_check(&last, 0x52c);
		db_ref_write_check(&last, 0x530);
		db_munmap(&last);
	}
	return NULL;
}

const char *case_device_mmap_past_end_refused(void)
{
	const uint64_t b1 = db.ram.offset, b0 = db.bar0.offset;
	const int fd = db.dev.device;
	const int sh = MAP_SHARED;

	if (!db.opened)
		return "needs open_device";
	const uint64_t end = db.ram.size;

	db_expect_mmap_refused("RAM BAR: its size + 4K from 0", fd, end + P,
			       b1, sh, EINVAL);
	db_expect_mmap_refused("RAM BAR: 8K from end - 4K", fd, 2 * P,
			       b1 + end - P, sh, EINVAL);
	db_expect_mmap_refused("RAM BAR: 4K from the end", fd, P, b1 + end,
			       sh, EINVAL);
	db_expect_mmap_refused("RAM BAR: 2M from end - 1M", fd, 2 * DB_MIB,
			       b1 + end - DB_MIB, sh, EINVAL);
	db_expect_mmap_refused("RAM BAR: 4K from twice its size", fd, P,
			       b1 + 2 * end, sh, EINVAL);
	db_expect_mmap_refused("BAR0: 8K from end - 4K", fd, 2 * P,
			       b0 + db.bar0.size - P, sh, EINVAL);
	db_expect_mmap_refused("BAR0: 4K from the end", fd, P,
			       b0 + db.bar0.size, sh, EINVAL);
	/* Private (copy-on-write) mappings of a BAR are refused too. */
	db_expect_mmap_refused("RAM BAR: MAP_PRIVATE", fd, P, b1, MAP_PRIVATE,
			       EINVAL);
	return NULL;
}
