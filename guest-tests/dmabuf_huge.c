/*
 * dmabuf_huge.c - DMABUF suite: huge mappings. The first 64 MiB of the RAM
 * BAR (all of edu-plus's BAR1; of a larger BAR, the part the cases use,
 * never more: every page written is memory of the server) are mapped at a
 * 32 MiB-aligned address with MADV_HUGEPAGE, so the kernel may use 2 MiB
 * (PMD) entries. The BAR is naturally aligned, so these 64 MiB are too.
 * A word goes into every 4 KiB page, is checked through the device mmap and
 * read back through the huge mapping; then a buffer of two swapped 2 MiB
 * ranges must show each block where its range says (a PMD pointing at the
 * wrong block shows up at once).
 *
 * Device-side truth: 16384 bar-write lines would drown the console, so one
 * page per 2 MiB block (a different page in each) and the last page are
 * printed; all of them use in-page offset 0xa00, which no other case uses.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "dmabuf_cases.h"
#include "dmabuf_util.h"
#include "fault_guard.h"
#include "ktap.h"

#define RAM_BAR db.ram_bar
#define P DB_PAGE
#define HUGE_IN		0xa00u		/* in-page offset of the word */
#define BLOCK		(2u * DB_MIB)

/* The word for RAM BAR page i (a different mix from db_next_value's). */
static uint32_t huge_val(uint32_t page)
{
	return 0x4a000000u ^ (page * 0x85ebca6bu);
}

struct pass {
	volatile uint8_t *base;
	uint32_t first_page, pages;	/* RAM BAR page of base, and how many */
	bool verify;
	volatile uint32_t done;
	uint32_t bad, bad_page, bad_got;
};

static void run_pass(void *arg)
{
	struct pass *p = arg;

	for (uint32_t i = 0; i < p->pages; i++) {
		volatile uint8_t *q = p->base + (size_t)i * P;
		uint32_t want = huge_val(p->first_page + i);

		if (!p->verify) {
			vu_mmio_write32(q, HUGE_IN, want);
		} else {
			uint32_t got = vu_mmio_read32(q, HUGE_IN);

			if (got != want && p->bad++ == 0) {
				p->bad_page = p->first_page + i;
				p->bad_got = got;
			}
		}
		p->done = i + 1;
	}
}

static bool pass(volatile uint8_t *base, uint32_t first_page, uint32_t pages,
		 bool verify, const char *what)
{
	struct pass p = { .base = base, .first_page = first_page,
			  .pages = pages, .verify = verify };
	int sig = fault_guard_run(run_pass, &p);

	if (!ktap_expect(sig == 0, "%s: signal %d (%s) after %u of %u pages",
			 what, sig, strsignal(sig), p.done, pages))
		return false;
	return ktap_expect(p.bad == 0, "%s: %u of %u pages wrong, first RAM BAR "
			   "page %u: expected 0x%08x, got 0x%08x", what, p.bad,
			   pages, p.bad_page, huge_val(p.bad_page), p.bad_got);
}

/*
 * Map len bytes of fd at an address aligned to align: reserve len + align
 * of address space, map over the aligned part, give the rest back.
 */
static bool map_aligned(int fd, size_t len, size_t align,
			const struct db_layout *lay, const char *name,
			struct db_map *m)
{
	uint8_t *res = mmap(NULL, len + align, PROT_NONE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	uint8_t *at;
	int err;

	if (res == MAP_FAILED) {
		ktap_fail("reserving 0x%zx bytes: %s", len + align,
			  db_errno_name(errno));
		return false;
	}
	at = (uint8_t *)(((uintptr_t)res + align - 1) & ~(uintptr_t)(align - 1));
	if (!db_mmap(fd, len, 0, at, lay, name, m)) {
		err = errno;
		munmap(res, len + align);
		ktap_fail("mmap of %s at %p: %s", name, (void *)at,
			  db_errno_name(err));
		return false;
	}
	if (at > res)
		munmap(res, (size_t)(at - res));
	if (at + len < res + len + align)
		munmap(at + len, (size_t)(res + len + align - (at + len)));
	if (madvise(at, len, MADV_HUGEPAGE))
		ktap_diag("madvise(%s, MADV_HUGEPAGE): %s", name,
			  db_errno_name(errno));
	else
		ktap_diag("%s at %p (aligned to 0x%zx), MADV_HUGEPAGE", name,
			  (void *)at, align);
	return true;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* The two swapped blocks: buffer block 0 is RAM BAR 34 MiB, block 1 32 MiB. */
static void swapped_blocks(void)
{
	const struct db_range r[] = { { 34 * DB_MIB, BLOCK },
				      { 32 * DB_MIB, BLOCK } };
	struct db_layout lay = db_layout(RAM_BAR, r, 2, 0);
	struct db_map m;
	int fd = db_export_ok(db.dev.device, RAM_BAR, r, 2);

	if (fd < 0)
		return;
	if (map_aligned(fd, 2 * BLOCK, BLOCK, &lay, "swapped 2 MiB ranges",
			&m)) {
		pass(m.base, (34 * DB_MIB) / P, BLOCK / P, true,
		     "swapped ranges, block 0 (RAM BAR 34 MiB)");
		pass(m.base + BLOCK, (32 * DB_MIB) / P, BLOCK / P, true,
		     "swapped ranges, block 1 (RAM BAR 32 MiB)");
		db_munmap(&m);
	}
	close(fd);
}

const char *case_huge_ram_bar_64m_aligned(void)
{
	const struct db_range r[] = { { 0, DB_RAM_MIN } };
	struct db_layout lay = db_layout(RAM_BAR, r, 1, 0);
	const uint32_t pages = DB_RAM_MIN / P, per_block = BLOCK / P;
	const char *why = db_need_mmap();
	struct db_map m;
	double t0;
	bool wrote;
	int fd;

	if (why)
		return why;
	fd = db_export_ok(db.dev.device, RAM_BAR, r, 1);
	if (fd < 0)
		return NULL;
	if (!map_aligned(fd, DB_RAM_MIN, 32 * DB_MIB, &lay,
			 "RAM BAR dmabuf (64 MiB)", &m)) {
		close(fd);
		return NULL;
	}
	t0 = now_ms();
	wrote = pass(m.base, 0, pages, false, "write through the huge mapping");
	ktap_diag("wrote %u pages in %.1f ms", pages, now_ms() - t0);
	if (wrote) {
		for (uint32_t b = 0; b < pages / per_block; b++) {
			uint32_t pg = b * per_block + (b * 37) % per_block;

			ktap_diag("bar-write region=%u offset=0x%x "
				  "value=0x%08x", RAM_BAR, pg * P + HUGE_IN,
				  huge_val(pg));
		}
		ktap_diag("bar-write region=%u offset=0x%x value=0x%08x",
			  RAM_BAR, (pages - 1) * P + HUGE_IN,
			  huge_val(pages - 1));
		pass(db.ref.base, 0, pages, true, "every page via the device mmap");
		pass(m.base, 0, pages, true, "every page via the huge mapping");
		swapped_blocks();
	}
	db_munmap(&m);
	close(fd);
	return NULL;
}
