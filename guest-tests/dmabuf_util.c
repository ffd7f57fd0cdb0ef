/*
 * dmabuf_util.c - helpers of the DMABUF suite (see dmabuf_util.h).
 */
#define _GNU_SOURCE		/* memfd_create */
#include "dmabuf_util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/dma-heap.h>
#include <linux/udmabuf.h>

#include "fault_guard.h"
#include "ktap.h"

struct db_state db = { .dev = VU_DEVICE_INIT };

/* ---- the UAPI: the headers' definitions, else the series' v3 numbers ---- */

#ifdef VFIO_DEVICE_FEATURE_DMA_BUF
#define DB_FEAT_DMA_BUF		VFIO_DEVICE_FEATURE_DMA_BUF
#define DB_FEAT_DMA_BUF_SRC	"kernel headers"
/* The suite builds its own payload: it must match the headers' struct. */
_Static_assert(sizeof(struct vfio_device_feature_dma_buf) == 16 &&
	       sizeof(struct vfio_region_dma_range) == 16,
	       "struct vfio_device_feature_dma_buf changed");
#else
#define DB_FEAT_DMA_BUF		11	/* stock since 6.19 */
#define DB_FEAT_DMA_BUF_SRC	"fallback: headers lack it"
#endif

#ifdef VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE
#define DB_FEAT_REVOKE		VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE
#define DB_FEAT_REVOKE_HDR	true
#else
#define DB_FEAT_REVOKE		13	/* v3; stock 7.3: ZPCI_ERROR */
#define DB_FEAT_REVOKE_HDR	false
#endif

#ifdef VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR
#define DB_FEAT_MEMATTR		VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR
#define DB_FEAT_MEMATTR_HDR	true
#define DB_MEMATTR_NC		VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_NC
#define DB_MEMATTR_WC		VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_WC
#else
#define DB_FEAT_MEMATTR		14	/* v3 */
#define DB_FEAT_MEMATTR_HDR	false
#define DB_MEMATTR_NC		0
#define DB_MEMATTR_WC		1
#endif

const char *db_why(const char *fmt, ...)
{
	char buf[256], *s;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	s = strdup(buf);	/* skip reasons live until exit */
	return s ? s : "(out of memory)";
}

const char *db_errno_name(int err)
{
	static const struct { int err; const char *name; } names[] = {
		{ 0, "0" }, { EPERM, "EPERM" }, { ENOENT, "ENOENT" },
		{ EBADF, "EBADF" }, { ENOMEM, "ENOMEM" }, { EFAULT, "EFAULT" },
		{ EBUSY, "EBUSY" }, { ENODEV, "ENODEV" }, { EINVAL, "EINVAL" },
		{ ENOTTY, "ENOTTY" }, { ENOSPC, "ENOSPC" }, { EAGAIN, "EAGAIN" },
		{ EOVERFLOW, "EOVERFLOW" }, { EBADFD, "EBADFD" },
		{ EOPNOTSUPP, "EOPNOTSUPP" }, { EACCES, "EACCES" },
		{ ENXIO, "ENXIO" }, { EIO, "EIO" }, { E2BIG, "E2BIG" },
	};
	/*
	 * Unnamed errnos go to one of several buffers, taken in turn: two
	 * calls in one argument list must not share one, or which number is
	 * printed twice would depend on the (unspecified) argument order.
	 */
	static char other[4][24];
	static unsigned int next;
	char *buf;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].err == err)
			return names[i].name;
	buf = other[next++ % 4];
	snprintf(buf, sizeof(other[0]), "errno %d", err);
	return buf;
}

int db_feature(int devfd, uint32_t flags, const void *payload, size_t len)
{
	union {
		struct vfio_device_feature f;
		uint64_t align[(sizeof(struct vfio_device_feature) + 256) / 8];
	} u;

	if (len > 256) {
		errno = E2BIG;
		return -1;
	}
	memset(&u, 0, sizeof(u));
	u.f.argsz = (uint32_t)(sizeof(u.f) + len);
	u.f.flags = flags;
	if (len)
		memcpy(u.f.data, payload, len);
	return ioctl(devfd, VFIO_DEVICE_FEATURE, &u.f);
}

int db_probe(int devfd, uint32_t feature, uint32_t op)
{
	return db_feature(devfd, feature | op | VFIO_DEVICE_FEATURE_PROBE,
			  NULL, 0);
}

int db_export(int devfd, uint32_t region, const struct db_range *r,
	      uint32_t nr)
{
	/* struct vfio_device_feature_dma_buf, then the ranges. */
	uint64_t p[2 + 2 * DB_MAX_RANGES];
	uint32_t hdr[4] = { region, O_RDWR | O_CLOEXEC, 0, nr };
	size_t n = nr > DB_MAX_RANGES ? DB_MAX_RANGES : nr;

	memcpy(p, hdr, sizeof(hdr));
	for (size_t i = 0; i < n; i++) {
		p[2 + 2 * i] = r[i].offset;
		p[3 + 2 * i] = r[i].length;
	}
	return db_feature(devfd, db.feat_dma_buf | VFIO_DEVICE_FEATURE_GET, p,
			  16 + 16 * n);
}

int db_export_ok(int devfd, uint32_t region, const struct db_range *r,
		 uint32_t nr)
{
	int fd = db_export(devfd, region, r, nr);

	if (fd < 0)
		ktap_fail("export of region %u, %u range(s) from 0x%" PRIx64
			  " (+0x%" PRIx64 "): %s", region, nr, r[0].offset,
			  r[0].length, db_errno_name(errno));
	return fd;
}

int db_revoke_v3(int devfd, int dmabuf_fd)
{
	int32_t fd = dmabuf_fd;

	return db_feature(devfd, db.feat_revoke | VFIO_DEVICE_FEATURE_SET,
			  &fd, sizeof(fd));
}

int db_revoke_v2(int devfd, int dmabuf_fd)
{
#ifdef VFIO_DEVICE_PCI_DMABUF_REVOKE
	struct vfio_pci_dmabuf_revoke r = { .argsz = sizeof(r),
					    .dmabuf_fd = (uint32_t)dmabuf_fd };

	return ioctl(devfd, VFIO_DEVICE_PCI_DMABUF_REVOKE, &r);
#else
	(void)devfd;
	(void)dmabuf_fd;
	errno = ENOTTY;
	return -1;
#endif
}

int db_revoke(int devfd, int dmabuf_fd)
{
	if (db.revoke_kind == DB_REVOKE_V3_FEATURE)
		return db_revoke_v3(devfd, dmabuf_fd);
	return db_revoke_v2(devfd, dmabuf_fd);
}

int db_set_memattr(int devfd, int dmabuf_fd, uint32_t memattr)
{
	struct { int32_t fd; uint32_t memattr; } a = { dmabuf_fd, memattr };

	return db_feature(devfd, db.feat_memattr | VFIO_DEVICE_FEATURE_SET,
			  &a, sizeof(a));
}

bool db_check_errno(const char *what, int ret, int err, int expected)
{
	if (ret >= 0) {
		ktap_fail("%s: succeeded (returned %d), expected %s", what,
			  ret, db_errno_name(expected));
		if (ret > 2)
			close(ret);	/* an fd we did not want */
		return false;
	}
	ktap_diag("%s: %s", what, db_errno_name(err));
	return ktap_expect(err == expected, "%s: expected %s, got %s", what,
			   db_errno_name(expected), db_errno_name(err));
}

int64_t db_dmabuf_size(int fd)
{
	off_t end = lseek(fd, 0, SEEK_END);

	if (end < 0)
		return -1;
	lseek(fd, 0, SEEK_SET);
	return end;
}

int db_foreign_dmabuf(const char **why)
{
	struct dma_heap_allocation_data d = {
		.len = DB_PAGE, .fd_flags = O_RDWR | O_CLOEXEC };
	struct udmabuf_create c = { .flags = UDMABUF_FLAGS_CLOEXEC,
				    .size = DB_PAGE };
	int heap, u, m, fd = -1;

	heap = open("/dev/dma_heap/system", O_RDONLY | O_CLOEXEC);
	if (heap >= 0) {
		if (ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &d) == 0) {
			ktap_diag("foreign DMABUF from /dev/dma_heap/system");
			fd = (int)d.fd;
		}
		close(heap);
		if (fd >= 0)
			return fd;
	}
	u = open("/dev/udmabuf", O_RDWR | O_CLOEXEC);
	m = memfd_create("dmabuf-test", MFD_ALLOW_SEALING | MFD_CLOEXEC);
	if (u >= 0 && m >= 0 && ftruncate(m, DB_PAGE) == 0 &&
	    fcntl(m, F_ADD_SEALS, F_SEAL_SHRINK) == 0) {
		c.memfd = (uint32_t)m;
		fd = ioctl(u, UDMABUF_CREATE, &c);
		if (fd >= 0)
			ktap_diag("foreign DMABUF from /dev/udmabuf");
	}
	if (u >= 0)
		close(u);
	if (m >= 0)
		close(m);
	if (fd < 0)
		*why = "no other DMABUF exporter in this guest "
		       "(/dev/dma_heap/system and /dev/udmabuf unusable)";
	return fd;
}

/* ---- feature detection ---- */

/* PROBE plus a harmless call with dmabuf_fd -1 whose errno fingerprints it. */
static bool detect(const char *name, uint32_t num, bool from_hdr,
		   size_t minsz, const char **skip)
{
	int32_t payload[2] = { -1, 0 };
	int ret = db_probe(db.dev.device, num, VFIO_DEVICE_FEATURE_SET);
	int err = errno;
	bool ok;

	ktap_diag("%s = %u (%s)", name, num, from_hdr ? "kernel headers" :
		  "v3 fallback: the headers lack it");
	if (ret) {
		*skip = db_why("%s (%u) not supported by this kernel "
			       "(PROBE: %s)", name, num, db_errno_name(err));
		ktap_diag("%s", *skip);
		return false;
	}
	/*
	 * REVOKE takes 4 bytes, MEMATTR 8: with dmabuf_fd -1 the right
	 * feature answers EBADF (dma_buf_get(-1)), a payload shorter than its
	 * struct EINVAL. Another feature under this number answers otherwise.
	 */
	ret = db_feature(db.dev.device, num | VFIO_DEVICE_FEATURE_SET, payload,
			 minsz);
	err = ret ? errno : 0;
	ok = err == EBADF;
	ktap_diag("%s: PROBE ok; SET with dmabuf_fd -1 -> %s (%s)", name,
		  db_errno_name(err), ok ? "as expected" : "expected EBADF");
	if (ok && minsz > 4) {
		ret = db_feature(db.dev.device, num | VFIO_DEVICE_FEATURE_SET,
				 payload, 4);
		err = ret ? errno : 0;
		ok = err == EINVAL;
		ktap_diag("%s: SET with a 4-byte payload -> %s (%s)", name,
			  db_errno_name(err), ok ? "as expected" :
			  "expected EINVAL");
	}
	if (!ok && !from_hdr) {
		*skip = db_why("feature %u answers PROBE but not like %s "
			       "(v3 fallback number, not trusted)", num, name);
		ktap_diag("%s", *skip);
		return false;
	}
	return true;
}

static void detect_mmap(void)
{
	struct db_range r = { 0, DB_PAGE };
	struct db_layout lay = db_layout(db.ram_bar, &r, 1, 0);
	struct db_map m;
	uint32_t v;
	int fd = db_export(db.dev.device, db.ram_bar, &r, 1);

#ifdef DB_SIMULATE_MMAP
	ktap_diag("DB_SIMULATE_MMAP: DMABUF mappings are SIMULATED with pieces "
		  "of the VFIO device mmap (a check of the suite, not the kernel)");
#endif

	if (fd < 0) {
		ktap_fail("export of the RAM BAR [0, 4 KiB): %s", db_errno_name(errno));
		db.mmap_skip = "needs feature_probe";
		return;
	}
	if (!db_mmap(fd, DB_PAGE, 0, NULL, &lay, "probe", &m)) {
		int err = errno;

		if (err == EINVAL) {
			db.mmap_skip = "mmap of DMABUFs not supported by this "
				       "kernel (EINVAL)";
		} else {
			ktap_fail("mmap of a DMABUF: %s", db_errno_name(err));
			db.mmap_skip = db_why("mmap of a DMABUF failed with %s",
					      db_errno_name(err));
		}
		ktap_diag("%s", db.mmap_skip);
	} else if (db_read32(&m, 0, &v)) {
		ktap_fail("read through a fresh DMABUF mapping faulted");
		db.mmap_skip = "a DMABUF mapping faulted in feature_probe";
		db_munmap(&m);
	} else {
		db.mmap_ok = true;
		ktap_diag("mmap of a DMABUF works");
		db_munmap(&m);
	}
	close(fd);
}

void db_detect_features(void)
{
	int fd = db.dev.device;

	ktap_diag("VFIO_DEVICE_FEATURE = 0x%lx; GET 0x%x, SET 0x%x, PROBE 0x%x",
		  (unsigned long)VFIO_DEVICE_FEATURE, VFIO_DEVICE_FEATURE_GET,
		  VFIO_DEVICE_FEATURE_SET, VFIO_DEVICE_FEATURE_PROBE);
#ifdef VFIO_DEVICE_FEATURE_ZPCI_ERROR
	ktap_diag("the headers define VFIO_DEVICE_FEATURE_ZPCI_ERROR = %u",
		  VFIO_DEVICE_FEATURE_ZPCI_ERROR);
#endif
	db.feat_dma_buf = DB_FEAT_DMA_BUF;
	db.feat_revoke = DB_FEAT_REVOKE;
	db.feat_memattr = DB_FEAT_MEMATTR;
	db.memattr_nc = DB_MEMATTR_NC;
	db.memattr_wc = DB_MEMATTR_WC;

	ktap_diag("VFIO_DEVICE_FEATURE_DMA_BUF = %u (%s)", db.feat_dma_buf,
		  DB_FEAT_DMA_BUF_SRC);
	if (db_probe(fd, db.feat_dma_buf, VFIO_DEVICE_FEATURE_GET) == 0) {
		db.export_ok = true;
	} else {
		db.export_skip = db_why("VFIO_DEVICE_FEATURE_DMA_BUF (%u) not "
					"supported by this kernel (PROBE: %s)",
					db.feat_dma_buf, db_errno_name(errno));
		ktap_diag("%s", db.export_skip);
	}

	db.revoke_feature = detect("VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE",
				   db.feat_revoke, DB_FEAT_REVOKE_HDR, 4,
				   &db.revoke_skip);
	db.memattr_feature = detect("VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR",
				    db.feat_memattr, DB_FEAT_MEMATTR_HDR, 8,
				    &db.memattr_skip);
	if (db.memattr_feature)
		ktap_diag("MEMATTR values: NC %u, WC %u", db.memattr_nc,
			  db.memattr_wc);

#ifdef VFIO_DEVICE_PCI_DMABUF_REVOKE
	ktap_diag("VFIO_DEVICE_PCI_DMABUF_REVOKE (v2) = 0x%lx",
		  (unsigned long)VFIO_DEVICE_PCI_DMABUF_REVOKE);
	if (db_revoke_v2(fd, -1) == 0 || errno == EBADF) {
		db.v2_ioctl = true;
	} else {
		db.v2_skip = db_why("VFIO_DEVICE_PCI_DMABUF_REVOKE (v2) not "
				    "supported by this kernel (%s)",
				    db_errno_name(errno));
		ktap_diag("%s", db.v2_skip);
	}
#else
	db.v2_skip = "VFIO_DEVICE_PCI_DMABUF_REVOKE (v2 of the series) is not "
		     "defined by the headers this test was built with";
#endif
	if (db.revoke_feature) {
		db.revoke_kind = DB_REVOKE_V3_FEATURE;
	} else if (db.v2_ioctl) {
		db.revoke_kind = DB_REVOKE_V2_IOCTL;
		ktap_diag("revoking with the v2 ioctl");
	} else {
		db.revoke_kind = DB_REVOKE_NONE;
	}

	if (db.export_ok)
		detect_mmap();
	else
		db.mmap_skip = db.export_skip;
}

const char *db_need_export(void)
{
	if (!db.opened)
		return "needs open_device";
	return db.export_ok ? NULL : db.export_skip;
}

const char *db_need_mmap(void)
{
	const char *why = db_need_export();

	if (why)
		return why;
	return db.mmap_ok ? NULL : db.mmap_skip;
}

const char *db_need_revoke(void)
{
	const char *why = db_need_export();

	if (why)
		return why;
	return db.revoke_kind != DB_REVOKE_NONE ? NULL : db.revoke_skip;
}

const char *db_need_memattr(void)
{
	const char *why = db_need_export();

	if (why)
		return why;
	return db.memattr_feature ? NULL : db.memattr_skip;
}
