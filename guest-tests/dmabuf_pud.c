/*
 * dmabuf_pud.c - DMABUF suite: 1 GiB (PUD) mappings of a RAM BAR of at
 * least 1 GiB (the gpu's VRAM), through the VFIO device fd and through a
 * DMABUF of the same 1 GiB-aligned range.
 *
 * Both map the range at a 1 GiB-aligned address and touch a few words only:
 * the VRAM behind the BAR is a sparse memfd on the host, and every page the
 * guest touches becomes memory of the server, so a 4 GiB BAR is never
 * walked page by page. Every word is checked through a second device-fd
 * mapping and, from its "# bar-write" line, by the host in the device.
 *
 * Whether the kernel installed a PUD is read from the kernel itself:
 * vfio-pci's fault handler reports each fault's order and result through
 * dynamic debug (vfio_pci_mmap_huge_fault in 7.3: "order = 18 ... 0x100" is
 * a PUD inserted, VM_FAULT_NOPAGE; 0x800 is VM_FAULT_FALLBACK). The case
 * switches those messages on (debugfs dynamic_debug/control) only while it
 * faults, and reads them back from /dev/kmsg. For a DMABUF mapping it
 * switches on every vfio_pci_core message instead, since where the series
 * puts its fault handler is its own choice; without a message that names an
 * order, the case skips saying so rather than guess.
 *
 * The 1 GiB range is [1 GiB, 2 GiB) of a BAR of 2 GiB or more, else [0,
 * 1 GiB): never the first 64 MiB alone, which the other cases use. In-page
 * offsets 0x600-0x60f.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "dmabuf_cases.h"
#include "dmabuf_util.h"
#include "ktap.h"

#define DYNDBG "/sys/kernel/debug/dynamic_debug/control"
#define PUD_ORDER_4K 18		/* 1 GiB / 4 KiB = 2^18 pages */
#define FAULT_NOPAGE 0x100	/* VM_FAULT_NOPAGE: the entry is in */

/* What the kernel said about the faults of one mapping. */
struct fault_report {
	int lines;		/* messages that named an order */
	int pud_tries;		/* ... of order PUD_ORDER_4K */
	unsigned int pud_ret;	/* the first PUD try's result */
	char first[200];	/* the first message, for diagnostics */
};

/* Enable or disable dynamic-debug messages matching query; 0 or -1/errno. */
static int dyndbg(const char *query, bool on)
{
	char line[160];
	int fd = open(DYNDBG, O_WRONLY | O_CLOEXEC);
	int len, ret;

	if (fd < 0)
		return -1;
	len = snprintf(line, sizeof(line), "%s %cp\n", query, on ? '+' : '-');
	ret = write(fd, line, (size_t)len) == len ? 0 : -1;
	close(fd);
	return ret;
}

/* /dev/kmsg opened at its end, so only later messages are read. */
static int kmsg_from_now(void)
{
	int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);

	if (fd >= 0)
		lseek(fd, 0, SEEK_END);
	return fd;
}

/* Read every message since kmsg_from_now that names a fault order. */
static void read_faults(int kfd, struct fault_report *r)
{
	char rec[1024];
	ssize_t n;

	memset(r, 0, sizeof(*r));
	/* One record per read(); EAGAIN at the end, EPIPE when some were
	   overwritten before we read them (the next read goes on). */
	for (;;) {
		const char *o, *colon;
		int order;
		unsigned int ret;

		n = read(kfd, rec, sizeof(rec) - 1);
		if (n < 0 && errno == EPIPE)
			continue;
		if (n <= 0)
			break;
		rec[n] = '\0';
		rec[strcspn(rec, "\n")] = '\0';	/* not the key=value lines */
		o = strstr(rec, "order = ");
		if (!o || sscanf(o, "order = %d", &order) != 1)
			continue;
		colon = strrchr(o, ':');
		if (!colon || sscanf(colon, ": 0x%x", &ret) != 1)
			continue;
		if (r->lines++ == 0) {
			const char *text = strchr(rec, ';');

			snprintf(r->first, sizeof(r->first), "%.*s",
				 (int)sizeof(r->first) - 1,
				 text ? text + 1 : rec);
		}
		if (order == PUD_ORDER_4K && r->pud_tries++ == 0)
			r->pud_ret = ret;
	}
}

/* The 1 GiB range of the RAM BAR to map, or a skip reason. */
static const char *pud_range(uint64_t *off)
{
	if (db.ram.size < DB_PUD_ALIGN)
		return db_why("the RAM BAR%u of %s is 0x%llx bytes: no 1 GiB "
			      "range to map (run the suite against a device "
			      "with a BAR of 1 GiB or more, e.g. the gpu)",
			      db.ram_bar, db.dv.name,
			      (unsigned long long)db.ram.size);
	*off = db.ram.size >= 2 * DB_PUD_ALIGN ? DB_PUD_ALIGN : 0;
	/*
	 * PCI places a BAR at a multiple of its size; one that is not would
	 * make every PUD impossible, and the verdict below the kernel's. Say
	 * who broke it instead (0: sysfs did not tell, the fault will).
	 */
	if (db.ram_phys % DB_PUD_ALIGN)
		return db_why("RAM BAR at guest-physical 0x%" PRIx64 " is not "
			      "aligned to its size 0x%llx (PCI resource "
			      "assignment): no PUD can map it", db.ram_phys,
			      (unsigned long long)db.ram.size);
	return NULL;
}

/* Write and check the words of the range, first in its middle. */
static void touch(const struct db_map *m)
{
	db_write_check(m, DB_PUD_ALIGN / 2 + 0x600);
	db_write_check(m, 0x604);
	db_write_check(m, DB_PUD_ALIGN - DB_PAGE + 0x608);
	db_ref_write_check(m, 77 * DB_MIB + 5 * DB_PAGE + 0x60c);
}

/* smaps' verdict on huge entries for the mapping at base (a diagnostic). */
static void smaps_diag(const struct db_map *m)
{
	char line[256], head[32];
	bool in = false;
	FILE *f = fopen("/proc/self/smaps", "re");

	snprintf(head, sizeof(head), "%lx-", (unsigned long)(uintptr_t)m->base);
	while (f && fgets(line, sizeof(line), f)) {
		if (strchr(line, '-') && strncmp(line, head, strlen(head)) == 0)
			in = true;
		else if (in && strncmp(line, "VmFlags", 7) == 0)
			in = false;
		if (in && strncmp(line, "THPeligible", 11) == 0)
			ktap_diag("%s: smaps %.*s", m->name,
				  (int)strcspn(line, "\n"), line);
	}
	if (f)
		fclose(f);
}

/*
 * Map, touch and judge: what a 1 GiB-aligned 1 GiB mapping got, from the
 * kernel's fault messages. Returns NULL when judged, else a skip reason.
 */
static const char *judge_pud(const struct db_map *m, const char *query)
{
	struct fault_report r;
	int kfd = kmsg_from_now();

	if (kfd < 0 || dyndbg(query, true)) {
		int err = errno;

		if (kfd >= 0)
			close(kfd);
		touch(m);
		return db_why("the kernel shows no fault orders here (%s: %s; "
			      "needs CONFIG_DYNAMIC_DEBUG and debugfs): the "
			      "values were checked, the entry size cannot be",
			      kfd < 0 ? "/dev/kmsg" : DYNDBG,
			      db_errno_name(err));
	}
	touch(m);
	dyndbg(query, false);
	read_faults(kfd, &r);
	close(kfd);
	smaps_diag(m);
	ktap_diag("%s: %d fault message(s) naming an order, %d of order %d; "
		  "first: %s", m->name, r.lines, r.pud_tries, PUD_ORDER_4K,
		  r.lines ? r.first : "(none)");
	if (r.lines == 0)
		return db_why("the kernel printed no fault message naming an "
			      "order for %s (dynamic debug '%s'): the values "
			      "were checked, the entry size cannot be", m->name,
			      query);
	if (!ktap_expect(r.pud_tries > 0, "%s: 1 GiB-aligned VMA over a 1 GiB-"
			 "aligned BAR range, but the kernel never tried a PUD "
			 "(order %d) fault; first message: %s", m->name,
			 PUD_ORDER_4K, r.first))
		return NULL;
	ktap_expect(r.pud_ret == FAULT_NOPAGE, "%s: the kernel's PUD fault "
		    "returned 0x%x, not VM_FAULT_NOPAGE (0x%x): no 1 GiB entry "
		    "(0x800 is VM_FAULT_FALLBACK)", m->name, r.pud_ret,
		    FAULT_NOPAGE);
	return NULL;
}

const char *case_huge_pud_device_mmap_1g(void)
{
	const char *why;
	struct db_map m;
	uint64_t off = 0;

	if (!db.opened)
		return "needs open_device";
	if ((why = pud_range(&off)))
		return why;
	if (!db_mmap_device(&db.ram, off, DB_PUD_ALIGN, "device mmap of 1 GiB",
			    &m)) {
		ktap_fail("device mmap of RAM BAR [0x%" PRIx64 ", +1G): %s", off,
			  db_errno_name(errno));
		return NULL;
	}
	ktap_diag("%s (RAM BAR+0x%" PRIx64 ") at %p", m.name, off,
		  (void *)m.base);
	why = judge_pud(&m, "func vfio_pci_mmap_huge_fault");
	db_munmap(&m);
	return why;
}

const char *case_huge_pud_dmabuf_1g(void)
{
	const char *why = db_need_mmap();
	struct db_map m;
	uint64_t off = 0;
	int fd;

#ifdef DB_SIMULATE_MMAP
	/* The simulation maps page by page, from this device only. */
	return "not simulated (DB_SIMULATE_MMAP): needs a kernel's DMABUF mmap";
#endif
	if (why || (why = pud_range(&off)))
		return why;
	fd = db_export_map(off, DB_PUD_ALIGN, "DMABUF of 1 GiB", &m);
	if (fd < 0)
		return NULL;
	ktap_diag("%s (RAM BAR+0x%" PRIx64 ") at %p", m.name, off,
		  (void *)m.base);
	why = judge_pud(&m, "module vfio_pci_core");
	db_munmap(&m);
	close(fd);
	return why;
}
