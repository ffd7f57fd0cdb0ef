/*
 * dmabuf_map.c - mappings of the DMABUF suite: layouts (which BAR byte a
 * mapping byte is), placement of every mapping at an address that matches
 * the BAR's alignment, guarded accesses and the "# bar-write" lines (see
 * dmabuf_util.h).
 */
#include "dmabuf_util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fault_guard.h"
#include "ktap.h"

struct db_layout db_layout(uint32_t region, const struct db_range *r,
			   uint32_t nr, uint64_t map_off)
{
	struct db_layout lay = { .region = region, .map_off = map_off };

	lay.nr = nr > DB_MAX_RANGES ? DB_MAX_RANGES : nr;
	memcpy(lay.r, r, lay.nr * sizeof(*r));
	return lay;
}

uint64_t db_layout_size(const struct db_layout *lay)
{
	uint64_t size = 0;

	for (uint32_t i = 0; i < lay->nr; i++)
		size += lay->r[i].length;
	return size;
}

uint64_t db_bar_offset(const struct db_layout *lay, uint64_t off)
{
	uint64_t b = lay->map_off + off;

	for (uint32_t i = 0; i < lay->nr; i++) {
		if (b < lay->r[i].length)
			return lay->r[i].offset + b;
		b -= lay->r[i].length;
	}
	return UINT64_MAX;	/* past the buffer: a test bug */
}

#ifdef DB_SIMULATE_MMAP
/*
 * A check of the suite itself on a kernel without DMABUF mmap (build with
 * -DDB_SIMULATE_MMAP; never the default): the "DMABUF mapping" is built
 * from pieces of the VFIO device fd mapped where a correct kernel would put
 * the ranges. Revoke, memattr and device-close semantics cannot be
 * simulated, nor the /proc/self/maps offsets of partial_munmap_split.
 */
static void *simulated_mmap(size_t len, uint64_t off, void *addr,
			    const struct db_layout *buf)
{
	const struct vfio_region_info *info = buf->region == 0 ? &db.bar0 :
					      &db.ram;	/* the suite maps no other */
	struct db_layout lay = *buf;
	uint8_t *base = mmap(addr, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS |
			     (addr ? MAP_FIXED : 0), -1, 0);

	if (base == MAP_FAILED)
		return MAP_FAILED;
	lay.map_off = off;
	if (off + len > db_layout_size(buf)) {
		munmap(base, len);
		errno = EINVAL;
		return MAP_FAILED;
	}
	for (size_t done = 0; done < len; done += DB_PAGE)
		if (mmap(base + done, DB_PAGE, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_FIXED, db.dev.device,
			 (off_t)(info->offset + db_bar_offset(&lay, done))) ==
		    MAP_FAILED) {
			munmap(base, len);
			return MAP_FAILED;
		}
	return base;
}
#endif

/*
 * Where a mapping of len bytes whose first byte is BAR byte bar_off goes:
 * an address congruent to bar_off modulo the largest huge-entry size the
 * mapping can hold (DB_PUD_ALIGN from 1 GiB up, else DB_HUGE_ALIGN), inside
 * a PROT_NONE reservation (*res, *res_len) that the caller trims once the
 * mapping is in. The BARs are naturally aligned in guest-physical space, so
 * every whole 2 MiB (1 GiB) block of the BAR in the mapping lands on a
 * 2 MiB (1 GiB) virtual block: the kernel may map it with one PMD (PUD),
 * and a huge entry pointing at the wrong block shows in the data. A mapping
 * at whatever address mmap picks would mostly get 4 KiB entries and hide
 * that class of bug.
 */
static uint8_t *aligned_slot(size_t len, uint64_t bar_off, uint8_t **res,
			     size_t *res_len)
{
	const size_t align = len >= DB_PUD_ALIGN ? DB_PUD_ALIGN : DB_HUGE_ALIGN;
	uintptr_t at;

	*res_len = len + 2 * align;
	*res = mmap(NULL, *res_len, PROT_NONE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (*res == MAP_FAILED)
		return NULL;
	at = ((uintptr_t)*res + align - 1) & ~(uintptr_t)(align - 1);
	return (uint8_t *)(at + (uintptr_t)(bar_off & (align - 1)));
}

/* Give back the parts of the reservation the mapping [at, +len) left. */
static void trim_slot(uint8_t *res, size_t res_len, uint8_t *at, size_t len)
{
	if (!at) {
		munmap(res, res_len);
		return;
	}
	if (at > res)
		munmap(res, (size_t)(at - res));
	if (at + len < res + res_len)
		munmap(at + len, (size_t)(res + res_len - (at + len)));
}

/* mmap at addr, or at an aligned slot for BAR byte bar_off when addr is NULL. */
static void *map_placed(int fd, size_t len, uint64_t file_off, void *addr,
			uint64_t bar_off, const struct db_layout *buf)
{
	uint8_t *res = NULL, *at = addr;
	size_t res_len = 0;
	void *p;
	int err;

	if (!at) {
		at = aligned_slot(len, bar_off, &res, &res_len);
		if (!at)
			return MAP_FAILED;
	}
#ifdef DB_SIMULATE_MMAP
	p = !buf ? mmap(at, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
			fd, (off_t)file_off) :
	    fcntl(fd, F_GETFD) < 0 ? MAP_FAILED :
	    simulated_mmap(len, file_off, at, buf);
#else
	(void)buf;
	p = mmap(at, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd,
		 (off_t)file_off);
#endif
	err = errno;
	if (res)
		trim_slot(res, res_len, p == MAP_FAILED ? NULL : at, len);
	errno = err;
	return p;
}

bool db_mmap(int fd, size_t len, uint64_t off, void *addr,
	     const struct db_layout *buf, const char *name, struct db_map *m)
{
	struct db_layout lay = *buf;
	void *p;

	lay.map_off = off;
	p = map_placed(fd, len, off, addr, db_bar_offset(&lay, 0), buf);
	if (p == MAP_FAILED)
		return false;
	m->base = p;
	m->len = len;
	m->lay = lay;
	m->name = name;
	return true;
}

bool db_mmap_device(const struct vfio_region_info *info, uint64_t bar_off,
		    size_t len, const char *name, struct db_map *m)
{
	const struct db_range all = { 0, info->size };
	void *p = map_placed(db.dev.device, len, info->offset + bar_off, NULL,
			     bar_off, NULL);

	if (p == MAP_FAILED)
		return false;
	m->base = p;
	m->len = len;
	m->lay = db_layout(info->index, &all, 1, bar_off);
	m->name = name;
	return true;
}

void db_munmap(struct db_map *m)
{
	if (m->base)
		munmap((void *)m->base, m->len);
	m->base = NULL;
}

/* ---- guarded accesses ---- */

struct access {
	volatile uint8_t *p;
	uint32_t val;
	bool write;
};

static void do_access(void *arg)
{
	struct access *a = arg;

	if (a->write)
		vu_mmio_write32(a->p, 0, a->val);
	else
		a->val = vu_mmio_read32(a->p, 0);
}

int db_read32(const struct db_map *m, size_t off, uint32_t *val)
{
	struct access a = { .p = m->base + off };
	int sig = fault_guard_run(do_access, &a);

	if (!sig)
		*val = a.val;
	return sig;
}

int db_write32_raw(const struct db_map *m, size_t off, uint32_t val)
{
	struct access a = { .p = m->base + off, .val = val, .write = true };

	return fault_guard_run(do_access, &a);
}

static void print_bar_write(const struct db_map *m, size_t off, uint32_t val)
{
	ktap_diag("bar-write region=%u offset=0x%" PRIx64 " value=0x%08x",
		  m->lay.region, db_bar_offset(&m->lay, off), val);
}

bool db_write32(const struct db_map *m, size_t off, uint32_t val)
{
	int sig = db_write32_raw(m, off, val);

	if (sig) {
		ktap_fail("%s +0x%zx (BAR%u+0x%" PRIx64 "): write of 0x%08x "
			  "faulted: signal %d (%s)", m->name, off,
			  m->lay.region, db_bar_offset(&m->lay, off), val, sig,
			  strsignal(sig));
		return false;
	}
	print_bar_write(m, off, val);
	return true;
}

bool db_expect32(const struct db_map *m, size_t off, uint32_t expected)
{
	uint32_t got;
	int sig = db_read32(m, off, &got);

	if (sig) {
		ktap_fail("%s +0x%zx (BAR%u+0x%" PRIx64 "): read faulted: "
			  "signal %d (%s)", m->name, off, m->lay.region,
			  db_bar_offset(&m->lay, off), sig, strsignal(sig));
		return false;
	}
	return ktap_expect(got == expected, "%s +0x%zx (BAR%u+0x%" PRIx64
			   "): expected 0x%08x, got 0x%08x", m->name, off,
			   m->lay.region, db_bar_offset(&m->lay, off),
			   expected, got);
}

/*
 * The device-fd mapping that holds RAM BAR byte bar_off: the reference when
 * it covers it (the first 64 MiB), else that one page mapped for the
 * occasion (*tmp, which the caller unmaps). *off is where in it.
 */
static const struct db_map *ref_for(uint64_t bar_off, struct db_map *tmp,
				    size_t *off)
{
	const uint64_t page = bar_off & ~(uint64_t)(DB_PAGE - 1);

	tmp->base = NULL;
	if (bar_off + 4 <= db.ref.len) {
		*off = (size_t)bar_off;
		return &db.ref;
	}
	if (!db_mmap_device(&db.ram, page, DB_PAGE, "RAM BAR page (device "
			    "mmap)", tmp)) {
		ktap_fail("device mmap of RAM BAR+0x%" PRIx64 ": %s", page,
			  db_errno_name(errno));
		return NULL;
	}
	*off = (size_t)(bar_off - page);
	return tmp;
}

/* Write val at RAM BAR byte bar_off through the device fd, or expect it. */
static bool ram_access(uint64_t bar_off, bool write, uint32_t val)
{
	struct db_map tmp;
	size_t off;
	const struct db_map *m = ref_for(bar_off, &tmp, &off);
	bool ok = m && (write ? db_write32(m, off, val) :
			db_expect32(m, off, val));

	db_munmap(&tmp);
	return ok;
}

bool db_expect_ram(uint64_t bar_off, uint32_t expected)
{
	return ram_access(bar_off, false, expected);
}

static bool expect_fault(const struct db_map *m, size_t off, bool memory_on)
{
	uint32_t got = 0, v = db_next_value();
	int rsig = db_read32(m, off, &got);
	int wsig = db_write32_raw(m, off, v);

	if (!wsig && memory_on)
		print_bar_write(m, off, v);	/* it landed: say where */
	else if (!wsig)
		ktap_diag("%s +0x%zx: the write did not fault (no bar-write "
			  "line: memory decoding is off, so the device may "
			  "not have it; the offset is written again later)",
			  m->name, off);
	if (!ktap_expect(rsig == SIGBUS, "%s +0x%zx (BAR%u+0x%" PRIx64 "): "
			 "read expected SIGBUS, got %s (0x%08x)", m->name, off,
			 m->lay.region, db_bar_offset(&m->lay, off),
			 rsig ? strsignal(rsig) : "no fault", got))
		return false;
	return ktap_expect(wsig == SIGBUS, "%s +0x%zx (BAR%u+0x%" PRIx64 "): "
			   "write expected SIGBUS, got %s", m->name, off,
			   m->lay.region, db_bar_offset(&m->lay, off),
			   wsig ? strsignal(wsig) : "no fault");
}

bool db_expect_fault(const struct db_map *m, size_t off)
{
	return expect_fault(m, off, true);
}

bool db_expect_fault_memory_off(const struct db_map *m, size_t off)
{
	return expect_fault(m, off, false);
}

bool db_expect_mmap_refused(const char *what, int fd, size_t len,
			    uint64_t off, int flags, int expected)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, flags, fd,
		       (off_t)off);
	int err = errno;	/* before munmap can change it */

	if (p != MAP_FAILED) {
		ktap_fail("%s: mmap succeeded, expected %s", what,
			  expected ? db_errno_name(expected) : "a refusal");
		munmap(p, len);
		return false;
	}
	if (!expected) {
		ktap_diag("%s: %s", what, db_errno_name(err));
		return true;
	}
	return db_check_errno(what, -1, err, expected);
}

bool db_write_check(const struct db_map *m, size_t off)
{
	uint32_t v = db_next_value();

	return db_write32(m, off, v) &&
	       db_expect_ram(db_bar_offset(&m->lay, off), v) &&
	       db_expect32(m, off, v);
}

bool db_ref_write_check(const struct db_map *m, size_t off)
{
	uint32_t v = db_next_value();

	return ram_access(db_bar_offset(&m->lay, off), true, v) &&
	       db_expect32(m, off, v);
}

int db_export_map(uint64_t bar_off, size_t len, const char *name,
		  struct db_map *m)
{
	const struct db_range r[] = { { bar_off, len } };
	struct db_layout lay = db_layout(db.ram_bar, r, 1, 0);
	int fd = db_export_ok(db.dev.device, db.ram_bar, r, 1);

	if (fd < 0)
		return -1;
	if (!db_mmap(fd, len, 0, NULL, &lay, name, m)) {
		ktap_fail("mmap of %s: %s", name, db_errno_name(errno));
		close(fd);
		return -1;
	}
	return fd;
}

uint32_t db_next_value(void)
{
	/* Distinct, never 0 or all ones, and unlike the bar1_pattern.h values. */
	uint32_t v = 0xdb000000u ^ (++db.seq * 0x9e3779b1u);

	return (v == 0 || v == UINT32_MAX) ? 0xdb0000a5u : v;
}
