/*
 * dmabuf_lifetime.c - DMABUF suite: how long a DMABUF mapping lives.
 *
 * - A mapping outlives the DMABUF fd it came from.
 * - Device reset and memory-disable (PCI command register) revoke every
 *   DMABUF of the device temporarily and restore it afterwards: mappings
 *   fault (SIGBUS) meanwhile and work again after, with the same bytes.
 * - Closing the VFIO fds closes the device only once its last VFIO mapping
 *   is gone (a mapping holds the device file); that close revokes every
 *   DMABUF of the device for good, so its mappings fault and new mmaps of
 *   it fail. These two cases run last: the device is closed afterwards.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "dmabuf_cases.h"
#include "dmabuf_util.h"
#include "ktap.h"

#define BAR1 VFIO_PCI_BAR1_REGION_INDEX
#define P DB_PAGE
#define PCI_COMMAND		0x04
#define PCI_COMMAND_MEMORY	0x2

/* The buffer of lifetime_close_vfio_fds_revokes, for the next case. */
static struct {
	int fd;
	struct db_map m;
	bool ran;
} closed = { .fd = -1 };

/* A 2-page buffer at bar_off mapped whole; fails the case on error. */
static int export_map2(uint64_t bar_off, const char *name, struct db_map *m)
{
	const struct db_range r[] = { { bar_off, 2 * P } };
	struct db_layout lay = db_layout(BAR1, r, 1, 0);
	int fd = db_export_ok(db.dev.device, BAR1, r, 1);

	if (fd < 0)
		return -1;
	if (!db_mmap(fd, 2 * P, 0, NULL, &lay, name, m)) {
		ktap_fail("mmap of %s: %s", name, db_errno_name(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static bool write_check(const struct db_map *m, size_t off)
{
	uint32_t v = db_next_value();

	return db_write32(m, off, v) &&
	       db_expect_bar1(db_bar_offset(&m->lay, off), v);
}

const char *case_lifetime_mapping_survives_fd_close(void)
{
	const char *why = db_need_mmap();
	struct db_map m;
	int fd;

	if (why)
		return why;
	fd = export_map2(12 * DB_MIB, "dmabuf (fd closed)", &m);
	if (fd < 0)
		return NULL;
	close(fd);
	write_check(&m, 0x460);
	write_check(&m, P + 0x464);
	db_munmap(&m);
	return NULL;
}

const char *case_lifetime_reset_revokes_and_restores(void)
{
	const char *why = db_need_mmap();
	struct vfio_device_info info;
	struct db_map m;
	uint32_t v = db_next_value();
	int fd, ret;

	if (why)
		return why;
	if (vu_device_info(db.dev.device, &info)) {
		ktap_fail("%s", vu_error());
		return NULL;
	}
	if (!(info.flags & VFIO_DEVICE_FLAGS_RESET)) {
		ret = ioctl(db.dev.device, VFIO_DEVICE_RESET);
		return db_why("VFIO_DEVICE_RESET not supported for this device: "
			      "%s (device flags 0x%x lack VFIO_DEVICE_FLAGS_RESET)",
			      ret ? db_errno_name(errno) : "0", info.flags);
	}
	fd = export_map2(12 * DB_MIB + 64 * P, "dmabuf (reset)", &m);
	if (fd < 0)
		return NULL;
	if (db_write32(&m, 0x470, v)) {
		if (ioctl(db.dev.device, VFIO_DEVICE_RESET)) {
			why = db_why("VFIO_DEVICE_RESET failed: %s",
				     db_errno_name(errno));
		} else {
			/* edu-plus keeps BAR1 across a function reset. */
			db_expect32(&m, 0x470, v);
			write_check(&m, P + 0x474);
		}
	}
	db_munmap(&m);
	close(fd);
	return why;
}

static int set_command(uint16_t cmd)
{
	uint8_t b[2] = { (uint8_t)cmd, (uint8_t)(cmd >> 8) };

	return vu_config_write(db.dev.device, PCI_COMMAND, b, sizeof(b));
}

const char *case_lifetime_memory_disable_revokes_and_restores(void)
{
	const uint64_t off = 12 * DB_MIB + 128 * P;
	const char *why = db_need_mmap();
	struct db_map m;
	uint32_t v = db_next_value(), got;
	uint8_t b[2];
	uint16_t cmd;
	void *p;
	int fd, sig;

	if (why)
		return why;
	if (vu_config_read(db.dev.device, PCI_COMMAND, b, sizeof(b))) {
		ktap_fail("%s", vu_error());
		return NULL;
	}
	cmd = (uint16_t)(b[0] | b[1] << 8);
	fd = export_map2(off, "dmabuf (memory disable)", &m);
	if (fd < 0)
		return NULL;
	if (!db_write32(&m, 0x480, v))
		goto out;
	ktap_diag("PCI command 0x%04x: clearing Memory Space Enable", cmd);
	if (set_command(cmd & ~PCI_COMMAND_MEMORY)) {
		ktap_fail("%s", vu_error());
		goto out;
	}
	db_expect_fault(&m, 0x480);
	sig = db_read32(&db.ref, off + 0x480, &got);
	ktap_expect(sig == SIGBUS, "device mmap with memory disabled: "
		    "expected SIGBUS, got %s", sig ? strsignal(sig) : "no fault");
	p = mmap(NULL, P, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ktap_diag("mmap while memory is disabled: %s",
		  p == MAP_FAILED ? db_errno_name(errno) : "succeeded");
	if (p != MAP_FAILED)
		munmap(p, P);
	if (set_command(cmd)) {
		ktap_fail("restoring the command register: %s", vu_error());
		goto out;
	}
	db_expect32(&m, 0x480, v);		/* restored, same bytes */
	write_check(&m, P + 0x484);
out:
	db_munmap(&m);
	close(fd);
	return NULL;
}

const char *case_lifetime_close_vfio_fds_revokes(void)
{
	const uint64_t off = 12 * DB_MIB + 192 * P;
	const char *why = db_need_mmap();
	uint32_t v = db_next_value();

	if (why)
		return why;
	closed.fd = export_map2(off, "dmabuf (device closed)", &closed.m);
	if (closed.fd < 0)
		return NULL;
	if (!db_write32(&closed.m, 0x490, v))
		return NULL;
	closed.ran = true;
	/* Device, group and container fds; the device mmap still holds it. */
	vu_close_device(&db.dev);
	ktap_diag("VFIO fds closed; the BAR1 device mmap is the last VFIO "
		  "mapping");
	db_expect32(&closed.m, 0x490, v);
	/* The last VFIO mapping goes: the device closes and revokes. */
	db_munmap(&db.ref);
	db.opened = false;
	ktap_diag("BAR1 device mmap unmapped");
	db_expect_fault(&closed.m, 0x490);
	db_expect_fault(&closed.m, P + 0x494);
	return NULL;
}

const char *case_lifetime_mmap_after_close_refused(void)
{
	void *p;

	if (!closed.ran)
		return "needs lifetime_close_vfio_fds_revokes";
	p = mmap(NULL, P, PROT_READ | PROT_WRITE, MAP_SHARED, closed.fd, 0);
	if (p != MAP_FAILED) {
		ktap_fail("mmap of a DMABUF of a closed device succeeded");
		munmap(p, P);
	} else {
		ktap_diag("mmap after the device closed: %s",
			  db_errno_name(errno));
	}
	return NULL;
}

const char *case_cleanup(void)
{
	db_munmap(&closed.m);
	if (closed.fd >= 0)
		close(closed.fd);
	closed.fd = -1;
	db_munmap(&db.ref);
	vu_close_device(&db.dev);
	db.opened = false;
	return NULL;
}
