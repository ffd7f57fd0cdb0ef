/*
 * dmabuf_pat.c - which CPU cache mode the guest kernel really installs for
 * a mapping of BAR pages (x86), read from the kernel's own bookkeeping:
 * TCG does not model caches, so no access pattern could tell.
 *
 * Two sources (see dmabuf_util.h):
 * - debugfs x86/pat_memtype_list: the memory types PAT has reserved per
 *   physical range. A PFN inserted into a page table at fault time
 *   (vmf_insert_pfn and its PMD/PUD forms) reserves nothing: the kernel
 *   looks the type up (lookup_memtype) and overrides the mapping's own
 *   cache bits with the type of the reservation covering the PFN, or
 *   uncached-minus when there is none. A mapping set up whole at mmap time
 *   (remap_pfn_range) reserves its range, but adopts an existing
 *   overlapping type, so the same rule gives its cache mode too.
 * - debugfs page_tables/current_user (or current_kernel, which also holds
 *   the user half): the page-table entries themselves, with their PWT, PCD
 *   and PAT bits; only with CONFIG_PTDUMP_DEBUGFS. The bits index the PAT
 *   MSR, whose layout the kernel prints at boot ("x86/PAT: Configuration
 *   [0-7]: WB WC UC- UC ..."), read here from /dev/kmsg.
 */
#include "dmabuf_util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ktap.h"

#define PAT_LIST	"/sys/kernel/debug/x86/pat_memtype_list"
#define PTDUMP_USER	"/sys/kernel/debug/page_tables/current_user"
#define PTDUMP_KERNEL	"/sys/kernel/debug/page_tables/current_kernel"

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

		/* "PAT: [mem 0x<start>-0x<end>] <type>", end exclusive */
		if (sscanf(line, "PAT: [mem 0x%" SCNx64 "-0x%" SCNx64 "] %23s",
			   &e->start, &e->end, e->type) == 3)
			l->n++;
	}
	fclose(f);
}

const char *db_pat_lookup(const struct db_pat_list *l, uint64_t phys,
			  struct db_pat_entry *found)
{
	for (int i = 0; i < l->n; i++) {
		if (l->e[i].start <= phys && phys < l->e[i].end) {
			*found = l->e[i];
			return l->e[i].type;
		}
	}
	*found = (struct db_pat_entry){ 0 };
	return "uncached-minus";	/* lookup_memtype's answer for none */
}

void db_pat_diag(const char *what, uint64_t phys)
{
	static struct db_pat_list l;	/* tens of KiB: not on the stack */
	struct db_pat_entry e;
	const char *type;

	db_pat_read(&l);
	if (!l.ok) {
		ktap_diag("x86 PAT: no %s (debugfs not mounted, or PAT off)",
			  PAT_LIST);
		return;
	}
	type = db_pat_lookup(&l, phys, &e);
	if (e.end)
		ktap_diag("x86 PAT at %s (0x%" PRIx64 "): reserved [0x%" PRIx64
			  "-0x%" PRIx64 ") %s, so PFNs there are mapped %s",
			  what, phys, e.start, e.end, e.type, type);
	else
		ktap_diag("x86 PAT at %s (0x%" PRIx64 "): no reservation, so "
			  "PFNs there are mapped %s", what, phys, type);
	ktap_diag("page-table dump (CONFIG_PTDUMP_DEBUGFS): %s",
		  db_ptdump_available() ? "available" : "not in this kernel");
}

bool db_ptdump_available(void)
{
	return access(PTDUMP_USER, R_OK) == 0 ||
	       access(PTDUMP_KERNEL, R_OK) == 0;
}

/* PAT MSR entry names as the boot message spells them, as memtype names. */
static const char *pat_name(const char *tok)
{
	static const struct { const char *msg, *name; } names[] = {
		{ "WB", "write-back" }, { "WC", "write-combining" },
		{ "UC-", "uncached-minus" }, { "UC", "uncached" },
		{ "WT", "write-through" }, { "WP", "write-protected" },
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(tok, names[i].msg) == 0)
			return names[i].name;
	return NULL;
}

/*
 * The PAT MSR layout: from the boot log when it is there, else the one
 * Linux programs on every CPU that has PAT (arch/x86/mm/pat/memtype.c).
 */
static void pat_layout(const char *types[8])
{
	static const char *const linux_default[8] = {
		"write-back", "write-combining", "uncached-minus", "uncached",
		"write-back", "write-protected", "uncached-minus",
		"write-through",
	};
	static const char key[] = "x86/PAT: Configuration [0-7]:";
	char rec[1024], tok[8][8];
	int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	bool found = false;
	ssize_t n;

	memcpy(types, linux_default, sizeof(linux_default));
	/* One record per read(); EAGAIN at the end of the buffer. */
	while (fd >= 0 && !found && (n = read(fd, rec, sizeof(rec) - 1)) > 0) {
		const char *at;

		rec[n] = '\0';
		at = strstr(rec, key);
		if (!at || sscanf(at + sizeof(key) - 1, "%7s %7s %7s %7s %7s "
				  "%7s %7s %7s", tok[0], tok[1], tok[2], tok[3],
				  tok[4], tok[5], tok[6], tok[7]) != 8)
			continue;
		found = true;
		for (int i = 0; i < 8; i++)
			types[i] = pat_name(tok[i]) ? pat_name(tok[i]) : "?";
	}
	if (fd >= 0)
		close(fd);
	if (!found)
		ktap_diag("PAT layout: no \"%s\" line in /dev/kmsg; assuming "
			  "Linux's default layout", key);
}

/* The ptdump line covering vaddr, and its level; false when none. */
static bool ptdump_line(const char *path, uintptr_t vaddr, char *line,
			size_t len)
{
	FILE *f = fopen(path, "re");
	bool found = false;

	while (f && !found && fgets(line, (int)len, f)) {
		uintptr_t start, end;

		/* "0x<start>-0x<end>   <size><unit> <flags...> <level>" */
		found = sscanf(line, "0x%" SCNxPTR "-0x%" SCNxPTR, &start,
			       &end) == 2 && start <= vaddr && vaddr < end;
	}
	if (f)
		fclose(f);
	return found;
}

const char *db_pte_cache_mode(uintptr_t vaddr, char *detail, size_t len)
{
	const char *path = access(PTDUMP_USER, R_OK) == 0 ? PTDUMP_USER :
			   PTDUMP_KERNEL;
	const char *types[8];
	char line[512];
	int idx;

	if (!ptdump_line(path, vaddr, line, sizeof(line))) {
		snprintf(detail, len, "no line of %s covers 0x%" PRIxPTR, path,
			 vaddr);
		return NULL;
	}
	line[strcspn(line, "\n")] = '\0';
	/* A present entry says RW or ro; a hole prints blanks there. */
	if (!strstr(line, " RW ") && !strstr(line, " ro ")) {
		snprintf(detail, len, "not present: %s", line);
		return NULL;
	}
	pat_layout(types);
	idx = (strstr(line, " PAT ") ? 4 : 0) | (strstr(line, " PCD ") ? 2 : 0) |
	      (strstr(line, " PWT ") ? 1 : 0);
	snprintf(detail, len, "PAT index %d (%s%s%s) in \"%s\"", idx,
		 idx & 4 ? "PAT " : "", idx & 2 ? "PCD " : "",
		 idx & 1 ? "PWT" : "", line);
	return types[idx];
}
