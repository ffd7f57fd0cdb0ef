/*
 * dmabuf_map.c - mappings of the DMABUF suite: layouts (which BAR byte a
 * mapping byte is), guarded accesses, the "# bar-write" lines, and the x86
 * PAT memory type list from debugfs (see dmabuf_util.h).
 */
#include "dmabuf_util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "fault_guard.h"
#include "ktap.h"

#define PAT_LIST "/sys/kernel/debug/x86/pat_memtype_list"

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
					      &db.bar1;
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

bool db_mmap(int fd, size_t len, uint64_t off, void *addr,
	     const struct db_layout *buf, const char *name, struct db_map *m)
{
#ifdef DB_SIMULATE_MMAP
	void *p = fcntl(fd, F_GETFD) < 0 ? MAP_FAILED :
		  simulated_mmap(len, off, addr, buf);
#else
	void *p = mmap(addr, len, PROT_READ | PROT_WRITE,
		       MAP_SHARED | (addr ? MAP_FIXED : 0), fd, (off_t)off);
#endif

	if (p == MAP_FAILED)
		return false;
	m->base = p;
	m->len = len;
	m->lay = *buf;
	m->lay.map_off = off;
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

bool db_expect_bar1(uint64_t bar_off, uint32_t expected)
{
	return db_expect32(&db.ref, (size_t)bar_off, expected);
}

bool db_expect_fault(const struct db_map *m, size_t off)
{
	uint32_t got = 0, v = db_next_value();
	int rsig = db_read32(m, off, &got);
	int wsig = db_write32_raw(m, off, v);

	if (!wsig)
		print_bar_write(m, off, v);	/* it landed: say where */
	if (!ktap_expect(rsig == SIGBUS, "%s +0x%zx: read expected SIGBUS, "
			 "got %s (0x%08x)", m->name, off,
			 rsig ? strsignal(rsig) : "no fault", got))
		return false;
	return ktap_expect(wsig == SIGBUS, "%s +0x%zx: write expected SIGBUS, "
			   "got %s", m->name, off,
			   wsig ? strsignal(wsig) : "no fault");
}

uint32_t db_next_value(void)
{
	/* Distinct, never 0 or all ones, and unlike the bar1_pattern.h values. */
	uint32_t v = 0xdb000000u ^ (++db.seq * 0x9e3779b1u);

	return (v == 0 || v == UINT32_MAX) ? 0xdb0000a5u : v;
}

/* ---- PAT ---- */

void db_pat_read(struct db_pat_list *l)
{
	char line[256];
	FILE *f = fopen(PAT_LIST, "re");

	l->n = 0;
	l->ok = f != NULL;
	if (!f)
		return;
	while (l->n < DB_PAT_MAX && fgets(line, sizeof(line), f)) {
		struct db_pat_entry *e = &l->e[l->n];

		/* "PAT: [mem 0x<start>-0x<end>] <type>" */
		if (sscanf(line, "PAT: [mem 0x%" SCNx64 "-0x%" SCNx64 "] %23s",
			   &e->start, &e->end, e->type) == 3)
			l->n++;
	}
	fclose(f);
}

static bool pat_has(const struct db_pat_list *l, const struct db_pat_entry *e)
{
	for (int i = 0; i < l->n; i++)
		if (l->e[i].start == e->start && l->e[i].end == e->end &&
		    strcmp(l->e[i].type, e->type) == 0)
			return true;
	return false;
}

const char *db_pat_new_type(const struct db_pat_list *before,
			    const struct db_pat_list *after, uint64_t start,
			    uint64_t end)
{
	const char *type = "";

	for (int i = 0; i < after->n; i++) {
		const struct db_pat_entry *e = &after->e[i];

		if (e->end <= start || e->start >= end || pat_has(before, e))
			continue;
		ktap_diag("new PAT entry [0x%" PRIx64 "-0x%" PRIx64 "] %s",
			  e->start, e->end, e->type);
		if (*type && strcmp(type, e->type))
			return "mixed";
		type = e->type;
	}
	return type;
}
