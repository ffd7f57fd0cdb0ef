/*
 * dmabuf_revoke.c - DMABUF suite: permanent revocation of a DMABUF by the
 * exporting device fd: VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE (v3 of the series,
 * SET, struct { __s32 dmabuf_fd; }), or the v2 device ioctl
 * VFIO_DEVICE_PCI_DMABUF_REVOKE when the headers define it and the kernel
 * has it. Errnos from v3: already revoked EBADFD, not a DMABUF EINVAL (from
 * dma_buf_get), a DMABUF of another device or exporter ENODEV.
 *
 * After a revoke every existing mapping of the buffer faults (SIGBUS) while
 * other buffers of the same BAR bytes, and the device mmap, keep working.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "dmabuf_cases.h"
#include "dmabuf_util.h"
#include "ktap.h"

#define RAM_BAR db.ram_bar
#define P DB_PAGE

static bool revoke_ok(int fd, const char *what)
{
	if (db_revoke(db.dev.device, fd) == 0)
		return true;
	ktap_fail("revoke of %s: %s", what, db_errno_name(errno));
	return false;
}

/* A 4-page buffer at bar_off, mapped whole into *m (when mmap works). */
static int export_4p(uint64_t bar_off, struct db_map *m, const char *name)
{
	const struct db_range r[] = { { bar_off, 4 * P } };
	struct db_layout lay = db_layout(RAM_BAR, r, 1, 0);
	int fd = db_export_ok(db.dev.device, RAM_BAR, r, 1);

	m->base = NULL;
	if (fd < 0 || !db.mmap_ok)
		return fd;
	if (!db_mmap(fd, 4 * P, 0, NULL, &lay, name, m)) {
		ktap_fail("mmap of %s: %s", name, db_errno_name(errno));
		close(fd);
		return -1;
	}
	return fd;
}

const char *case_revoke_sigbus_all_mappings(void)
{
	const uint64_t off = 9 * DB_MIB;
	const char *why = db_need_revoke();
	struct db_map a1, a2, b;
	uint32_t v[4];
	int fa, fb;

	if (why || (why = db_need_mmap()))
		return why;
	fa = export_4p(off, &a1, "dmabuf A");
	if (fa < 0)
		return NULL;
	fb = export_4p(off, &b, "dmabuf B (same range)");
	if (fb < 0)
		goto out;
	if (!db_mmap(fa, 2 * P, P, NULL, &a1.lay, "dmabuf A @4K", &a2)) {
		ktap_fail("second mapping of A: %s", db_errno_name(errno));
		goto out;
	}
	for (uint32_t pg = 0; pg < 4; pg++) {
		v[pg] = db_next_value();
		db_write32(&a1, pg * P + 0x420, v[pg]);
	}
	if (revoke_ok(fa, "A")) {
		db_expect_fault(&a1, 0x420);
		db_expect_fault(&a1, 3 * P + 0x420);
		db_expect_fault(&a2, 0x420);
		db_expect_fault(&a2, P + 0x420);
		/* Not revoked: B and the device mmap still see the bytes. */
		for (uint32_t pg = 0; pg < 4; pg++) {
			db_expect32(&b, pg * P + 0x420, v[pg]);
			db_expect_ram(off + pg * P + 0x420, v[pg]);
		}
	}
	db_munmap(&a2);
out:
	db_munmap(&a1);
	db_munmap(&b);
	close(fa);
	if (fb >= 0)
		close(fb);
	return NULL;
}

const char *case_revoke_twice_ebadfd(void)
{
	const struct db_range r[] = { { 9 * DB_MIB + 64 * P, P } };
	const char *why = db_need_revoke();
	int fd;

	if (why)
		return why;
	fd = db_export_ok(db.dev.device, RAM_BAR, r, 1);
	if (fd < 0)
		return NULL;
	if (revoke_ok(fd, "a fresh buffer"))
		DB_EXPECT_ERRNO("second revoke", db_revoke(db.dev.device, fd),
				EBADFD);
	close(fd);
	return NULL;
}

const char *case_revoke_non_dmabuf_einval(void)
{
	const char *why = db_need_revoke();
	int efd, mfd;

	if (why)
		return why;
	efd = eventfd(0, EFD_CLOEXEC);
	DB_EXPECT_ERRNO("revoke of an eventfd", db_revoke(db.dev.device, efd),
			EINVAL);
	close(efd);
	/* The VFIO device fd itself is not a DMABUF either. */
	DB_EXPECT_ERRNO("revoke of the device fd",
			db_revoke(db.dev.device, db.dev.device), EINVAL);
	mfd = dup(0);
	close(mfd);	/* a number that is not open */
	DB_EXPECT_ERRNO("revoke of a closed fd", db_revoke(db.dev.device, mfd),
			EBADF);
	return NULL;
}

const char *case_revoke_other_device_enodev(void)
{
	const struct db_range r[] = { { 0, P } };
	const char *why = db_need_revoke();
	struct db_other other;
	int fd;

	if (why || (why = db_open_other(&other)))
		return why;
	if (other.dev.device < 0)
		return NULL;	/* reported */
	fd = db_export_ok(other.dev.device, other.ram.index, r, 1);
	if (fd >= 0) {
		ktap_diag("DMABUF of %s (%s)", other.bdf, other.name);
		DB_EXPECT_ERRNO("revoke of another device's DMABUF",
				db_revoke(db.dev.device, fd), ENODEV);
		close(fd);
	}
	vu_close_device(&other.dev);
	return NULL;
}

const char *case_revoke_foreign_exporter_enodev(void)
{
	const char *why = db_need_revoke();
	int fd;

	if (why)
		return why;
	fd = db_foreign_dmabuf(&why);
	if (fd < 0)
		return why;
	DB_EXPECT_ERRNO("revoke of another exporter's DMABUF",
			db_revoke(db.dev.device, fd), ENODEV);
	close(fd);
	return NULL;
}

const char *case_revoke_mmap_refused(void)
{
	const char *why = db_need_revoke();
	struct db_map m;
	int fd;

	if (why || (why = db_need_mmap()))
		return why;
	fd = export_4p(9 * DB_MIB + 128 * P, &m, "dmabuf");
	if (fd < 0)
		return NULL;
	db_munmap(&m);		/* mapping worked before the revoke */
	if (revoke_ok(fd, "the buffer"))
		db_expect_mmap_refused("mmap of a revoked DMABUF", fd, P, 0,
				       MAP_SHARED, 0);
	close(fd);
	return NULL;
}

const char *case_revoke_fresh_export_works(void)
{
	const uint64_t off = 9 * DB_MIB + 192 * P;
	const char *why = db_need_revoke();
	struct db_map a, b;
	uint32_t v[4];
	int fa, fb;

	if (why || (why = db_need_mmap()))
		return why;
	fa = export_4p(off, &a, "dmabuf (to revoke)");
	if (fa < 0)
		return NULL;
	for (uint32_t pg = 0; pg < 4; pg++) {
		v[pg] = db_next_value();
		db_write32(&a, pg * P + 0x430, v[pg]);
	}
	if (revoke_ok(fa, "the first buffer")) {
		fb = export_4p(off, &b, "fresh dmabuf (same range)");
		if (fb >= 0) {
			for (uint32_t pg = 0; pg < 4; pg++)
				db_expect32(&b, pg * P + 0x430, v[pg]);
			v[0] = db_next_value();
			if (db_write32(&b, 0x434, v[0]))
				db_expect_ram(off + 0x434, v[0]);
			db_munmap(&b);
			close(fb);
		}
	}
	db_munmap(&a);
	close(fa);
	return NULL;
}

const char *case_revoke_dup_fd_same_buffer(void)
{
	const char *why = db_need_revoke();
	struct db_map m;
	int fd, dfd;

	if (why)
		return why;
	fd = export_4p(9 * DB_MIB + 256 * P, &m, "dmabuf");
	if (fd < 0)
		return NULL;
	dfd = dup(fd);
	if (m.base)
		db_write32(&m, 0x440, db_next_value());
	if (revoke_ok(dfd, "the dup()ed fd")) {
		if (m.base)
			db_expect_fault(&m, 0x440);
		DB_EXPECT_ERRNO("revoke through the original fd",
				db_revoke(db.dev.device, fd), EBADFD);
	}
	db_munmap(&m);
	close(dfd);
	close(fd);
	return NULL;
}

const char *case_revoke_v2_ioctl(void)
{
	const char *why = db_need_export();
	struct db_map m;
	int fd, efd;

	if (why)
		return why;
	if (!db.v2_ioctl)
		return db.v2_skip;
	fd = export_4p(9 * DB_MIB + 320 * P, &m, "dmabuf (v2 revoke)");
	if (fd < 0)
		return NULL;
	if (m.base)
		db_write32(&m, 0x450, db_next_value());
	if (db_revoke_v2(db.dev.device, fd)) {
		ktap_fail("VFIO_DEVICE_PCI_DMABUF_REVOKE: %s",
			  db_errno_name(errno));
	} else {
		if (m.base)
			db_expect_fault(&m, 0x450);
		DB_EXPECT_ERRNO("second v2 revoke",
				db_revoke_v2(db.dev.device, fd), EBADFD);
	}
	efd = eventfd(0, EFD_CLOEXEC);
	DB_EXPECT_ERRNO("v2 revoke of an eventfd",
			db_revoke_v2(db.dev.device, efd), EINVAL);
	close(efd);
	db_munmap(&m);
	close(fd);
	return NULL;
}
