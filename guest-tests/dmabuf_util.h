/*
 * dmabuf_util.h - shared state and helpers of the DMABUF suite (dmabuf.c and
 * the dmabuf_*.c case files): VFIO_DEVICE_FEATURE wrappers (export, probe,
 * revoke, memory attribute), run-time feature detection, fault-guarded
 * accesses through mappings, and the "# bar-write" device-side-truth lines.
 *
 * UAPI numbers: the kernel headers' definitions when present; otherwise the
 * numbers of v3 of the "vfio/pci: Add mmap() for DMABUFs" series, used only
 * after a PROBE (and a harmless fingerprint call) says the running kernel
 * has the feature under that number. Stock 7.3 defines feature 13 as
 * VFIO_DEVICE_FEATURE_ZPCI_ERROR (s390 only, ENOTTY on x86), which is why a
 * fallback number is never trusted on its own.
 *
 * Device-side truth: every write through any mapping of a BAR goes through
 * db_write32(), which prints, after the store completed,
 *	# bar-write region=<index> offset=0x<BAR offset> value=0x<u32>
 * where the offset is what the buffer's ranges imply, not what the kernel
 * did. The host compares the last value per offset of the RAM BAR's region
 * with the server's own memory behind that BAR. Region 0 lines name the
 * device's read/write register (struct db_device: edu-plus's liveness
 * register reads back inverted, the gpu's scratch register as written).
 */
#ifndef EDU_PLUS_DMABUF_UTIL_H
#define EDU_PLUS_DMABUF_UTIL_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vfio_util.h"

#define DB_PAGE			4096u
#define DB_MIB			(1u << 20)
#define DB_GIB			(1ull << 30)
#define DB_MAX_RANGES		8
/*
 * The cases use RAM BAR bytes below 64 MiB (dmabuf_cases.h), so the RAM BAR
 * must be at least that big; edu-plus's BAR1 is exactly that.
 */
#define DB_RAM_MIN		(64u << 20)

/*
 * What the suite knows about a device beyond what VFIO reports: which BAR
 * is plain memory (RAM, VRAM) that the cases carve up, and two BAR0
 * registers that identify the device through any mapping. The suite runs
 * against any device with such a BAR; the register facts come from the
 * table in dmabuf_device_table.c (edu-plus, the GPU-like device).
 */
struct db_device {
	const char *name;
	uint16_t vendor, device;
	int ram_bar;		/* region index of the RAM BAR; -1: probe */
	uint64_t bar0_size;	/* 0: not known */
	bool regs_known;	/* id and rw_reg below are valid */
	uint32_t id;		/* BAR0+0 reads this */
	uint32_t rw_reg;	/* a BAR0 register that keeps what is written */
	uint32_t rw_xor;	/* ...and reads back value ^ rw_xor */
};

/* The known device with these ids, or NULL. */
const struct db_device *db_known_device(uint16_t vendor, uint16_t device);

/*
 * The command line: [VENDOR:DEVICE | BDF] [RAM_BAR]. 0 to go on; 1 when
 * --help was printed; 2 after a usage error on stderr.
 */
int db_parse_args(int argc, char **argv);

/*
 * Find the device the command line names and fill db.bdf and db.dv: 0, or
 * -1 with vu_error() saying what is missing.
 */
int db_pick_device(void);

/* The first known device present in this guest other than bdf, or NULL. */
const struct db_device *db_other_known_device(const char *bdf,
					      char other[VU_BDF_LEN]);

/* One range of a DMABUF: [offset, offset + length) of the BAR. */
struct db_range {
	uint64_t offset, length;
};

/*
 * How a mapping's bytes correspond to BAR bytes: the buffer is the ranges
 * concatenated in order, and the mapping starts map_off bytes into it.
 */
struct db_layout {
	uint32_t region;
	uint32_t nr;
	struct db_range r[DB_MAX_RANGES];
	uint64_t map_off;
};

/* A mapping of (part of) a DMABUF or of a VFIO region. */
struct db_map {
	volatile uint8_t *base;
	size_t len;
	struct db_layout lay;
	const char *name;	/* for diagnostics: "dmabuf A", "device mmap" */
};

/* Where a revoke goes: the v3 feature or the v2 device ioctl. */
enum db_revoke_kind { DB_REVOKE_NONE, DB_REVOKE_V3_FEATURE, DB_REVOKE_V2_IOCTL };

/* What earlier cases established for later ones. */
struct db_state {
	bool opened;
	char bdf[VU_BDF_LEN];
	/* The command line (db_parse_args), then what it found. */
	uint16_t want_vendor, want_device;
	const char *want_bdf;		/* or NULL */
	int ram_bar_arg;		/* -1: not given */
	struct db_device dv;		/* the device under test */
	uint32_t ram_bar;		/* region index of the RAM BAR */
	struct vu_device dev;
	struct vfio_region_info bar0, ram;
	uint64_t ram_phys;		/* guest-physical RAM BAR start (sysfs) */
	/* device-fd mmap of the RAM BAR's first DB_RAM_MIN bytes: the part
	   the cases use (a 4 GiB VRAM BAR is never mapped whole) */
	struct db_map ref;
	bool export_ok;			/* DMA_BUF feature present */
	const char *export_skip;
	bool mmap_ok;			/* mmap of a DMABUF fd works */
	const char *mmap_skip;
	uint32_t feat_dma_buf, feat_revoke, feat_memattr;
	bool revoke_feature, memattr_feature, v2_ioctl;
	const char *revoke_skip, *memattr_skip, *v2_skip;
	enum db_revoke_kind revoke_kind;
	uint32_t memattr_nc, memattr_wc;
	uint32_t seq;			/* distinct written values */
};

extern struct db_state db;

/* A skip reason or message with values in it (a new string every call). */
const char *db_why(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * strerror-free errno names for diagnostics: "EINVAL", or "errno 524" (in
 * one of 4 buffers used in turn, so up to 4 may appear in one call).
 */
const char *db_errno_name(int err);

/* ---- a second device, for the cross-device cases ---- */

struct db_other {
	char bdf[VU_BDF_LEN];
	const char *name;
	struct vu_device dev;		/* .device < 0: not opened */
	struct vfio_region_info ram;	/* its RAM BAR */
};

/*
 * Open another device of this VM through its own container: one already
 * bound to vfio-pci, else a known device present (bound here). Returns a
 * skip reason when there is none; NULL otherwise, with o->dev.device < 0
 * after a failure it reported (ktap_fail).
 */
const char *db_open_other(struct db_other *o);

/* ---- ioctls ---- */

/* VFIO_DEVICE_FEATURE with flags (feature | GET/SET/PROBE) and a payload. */
int db_feature(int devfd, uint32_t flags, const void *payload, size_t len);

/* PROBE feature for op (VFIO_DEVICE_FEATURE_GET or _SET): 0 or -1/errno. */
int db_probe(int devfd, uint32_t feature, uint32_t op);

/* Export a DMABUF of ranges of region: the new fd, or -1 with errno. */
int db_export(int devfd, uint32_t region, const struct db_range *r,
	      uint32_t nr);

/* Export, failing the case with a message when it does not work. */
int db_export_ok(int devfd, uint32_t region, const struct db_range *r,
		 uint32_t nr);

/* Revoke through whatever the kernel has (db.revoke_kind): 0 or -1/errno. */
int db_revoke(int devfd, int dmabuf_fd);
int db_revoke_v3(int devfd, int dmabuf_fd);
int db_revoke_v2(int devfd, int dmabuf_fd);

/* SET the memory attribute of a DMABUF: 0 or -1/errno. */
int db_set_memattr(int devfd, int dmabuf_fd, uint32_t memattr);

/*
 * Expect call to fail with errno expected; "what" names the call. A macro so
 * that errno is read in the statement right after call and before anything
 * else runs: passing errno as an argument beside the call that sets it
 * (f(call(), errno)) reads a stale errno, because C leaves the order of
 * arguments open and gcc evaluates them right to left. build.ts rejects that
 * shape (source-checks.ts). Evaluates to true when the errno was expected.
 */
#define DB_EXPECT_ERRNO(what, call, expected)				\
	({								\
		int db_ret_ = (call);					\
		int db_err_ = errno;					\
		db_check_errno((what), db_ret_, db_err_, (expected));	\
	})

/* The check behind DB_EXPECT_ERRNO: ret == -1 with err == expected. */
bool db_check_errno(const char *what, int ret, int err, int expected);

/* The DMABUF's size as the kernel reports it (lseek SEEK_END). */
int64_t db_dmabuf_size(int fd);

/* A DMABUF of another exporter (dma-heap, else udmabuf), or -1 + *why. */
int db_foreign_dmabuf(const char **why);

/* Fill in the feature numbers and detection results (case feature_probe). */
void db_detect_features(void);

/* ---- mappings ---- */

/* Layout helpers: one range, or several. */
struct db_layout db_layout(uint32_t region, const struct db_range *r,
			   uint32_t nr, uint64_t map_off);
uint64_t db_layout_size(const struct db_layout *lay);

/* The BAR offset of byte off of a mapping with this layout. */
uint64_t db_bar_offset(const struct db_layout *lay, uint64_t off);

/*
 * Mappings are placed so that virtual and BAR addresses agree modulo
 * DB_HUGE_ALIGN (a PMD's reach), or DB_PUD_ALIGN for mappings of 1 GiB or
 * more: the kernel may then use huge entries, and a huge entry that points
 * at the wrong block shows in the data.
 */
#define DB_HUGE_ALIGN		(2u << 20)
/* A PUD's reach: mappings of 1 GiB or more are placed modulo this. */
#define DB_PUD_ALIGN		(1ul << 30)

/*
 * mmap len bytes of a DMABUF fd at byte offset off (MAP_SHARED, RW), at
 * addr if non-NULL (MAP_FIXED), else at an address aligned like the BAR
 * bytes it maps (DB_HUGE_ALIGN). Fills *m and returns true; on failure
 * returns false with errno set and *m untouched.
 */
bool db_mmap(int fd, size_t len, uint64_t off, void *addr,
	     const struct db_layout *buf, const char *name, struct db_map *m);

/*
 * mmap len bytes of a region of the VFIO device fd, from byte bar_off of
 * the BAR, aligned like db_mmap; the layout says BAR offset bar_off + i for
 * mapping byte i. Returns false with errno set on failure.
 */
bool db_mmap_device(const struct vfio_region_info *info, uint64_t bar_off,
		    size_t len, const char *name, struct db_map *m);
void db_munmap(struct db_map *m);

/* One guarded 32-bit access: 0, or the signal that stopped it. */
int db_read32(const struct db_map *m, size_t off, uint32_t *val);
int db_write32_raw(const struct db_map *m, size_t off, uint32_t val);

/*
 * A write that must work: prints the "# bar-write" line after it, or fails
 * the case with the signal. Returns true when the value was stored.
 */
bool db_write32(const struct db_map *m, size_t off, uint32_t val);

/* A read that must work and give expected; fails the case otherwise. */
bool db_expect32(const struct db_map *m, size_t off, uint32_t expected);

/* The same through the device-fd reference mapping of the RAM BAR. */
bool db_expect_ram(uint64_t bar_off, uint32_t expected);

/*
 * An access that must fault (revoked mapping): a read, then a write of a
 * fresh value. A write that does not fault landed and is reported as a
 * bar-write. Returns true when both faulted with SIGBUS.
 */
bool db_expect_fault(const struct db_map *m, size_t off);

/*
 * The same while the device's memory decoding is off: a write that does not
 * fault reached no BAR memory, so it is reported without a bar-write line.
 * The case writes the offset again once memory is back, so the host knows
 * its last value.
 */
bool db_expect_fault_memory_off(const struct db_map *m, size_t off);

/*
 * mmap(NULL, len, RW, flags, fd, off) must fail with errno expected, or with
 * any errno (printed) when expected is 0.
 */
bool db_expect_mmap_refused(const char *what, int fd, size_t len,
			    uint64_t off, int flags, int expected);

/*
 * A fresh value written through m at off, then read back through the
 * device-fd reference at the BAR offset m's layout implies and through m.
 */
bool db_write_check(const struct db_map *m, size_t off);

/* A fresh value written through the reference, read back through m at off. */
bool db_ref_write_check(const struct db_map *m, size_t off);

/*
 * Export [bar_off, +len) of the RAM BAR and map it whole (db_mmap): the
 * DMABUF fd, or -1 after failing the case.
 */
int db_export_map(uint64_t bar_off, size_t len, const char *name,
		  struct db_map *m);

/* The next distinctive value to write. */
uint32_t db_next_value(void);

/* ---- the cache mode the kernel installs (dmabuf_pat.c, x86) ---- */

#define DB_PAT_MAX 1024
struct db_pat_entry {
	uint64_t start, end;
	char type[24];
};
struct db_pat_list {
	int n;
	bool ok;
	struct db_pat_entry e[DB_PAT_MAX];
};

/* Read debugfs x86/pat_memtype_list (l->ok false when it is not there). */
void db_pat_read(struct db_pat_list *l);

/*
 * The memory type a PFN at physical address phys gets when it is put in a
 * page table: the type of the reservation covering it (*found), else
 * "uncached-minus", which is what the kernel's lookup gives a PFN nobody
 * reserved (*found zeroed).
 */
const char *db_pat_lookup(const struct db_pat_list *l, uint64_t phys,
			  struct db_pat_entry *found);

/* Print what PAT says about phys (which reservation, which cache mode). */
void db_pat_diag(const char *what, uint64_t phys);

/* Whether debugfs shows this process's page tables (CONFIG_PTDUMP_DEBUGFS). */
bool db_ptdump_available(void);

/*
 * The cache mode of the page-table entry that maps vaddr in this process
 * ("write-combining", "uncached-minus", ...), decoded from its PAT/PCD/PWT
 * bits with the PAT layout the kernel logged at boot; NULL when no present
 * entry maps vaddr. detail says what was read, for diagnostics.
 */
const char *db_pte_cache_mode(uintptr_t vaddr, char *detail, size_t len);

/* ---- case plumbing ---- */

/* The common prerequisites, as a skip reason or NULL. */
const char *db_need_export(void);
const char *db_need_mmap(void);
const char *db_need_revoke(void);
const char *db_need_memattr(void);

/* Every case: NULL when it ran, or why it was skipped. */
typedef const char *(*db_case_fn)(void);

#endif /* EDU_PLUS_DMABUF_UTIL_H */
