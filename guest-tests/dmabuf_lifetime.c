/*
 * dmabuf_lifetime.c - DMABUF suite: how long a DMABUF mapping lives.
 *
 * - A mapping outlives the DMABUF fd it came from.
 * - (Reset and memory-disable, which revoke every DMABUF of the device for
 *   a while, are in dmabuf_restore.c.)
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

#define RAM_BAR db.ram_bar
#define P DB_PAGE

/* The buffer of lifetime_close_vfio_fds_revokes, for the next case. */
static struct {
	int fd;
	struct db_map m;
	bool ran;
} closed = { .fd = -1 };

const char *case_lifetime_mapping_survives_fd_close(void)
{
	const char *why = db_need_mmap();
	struct db_map m;
	int fd;

	if (why)
		return why;
	fd = db_export_map(12 * DB_MIB, 2 * P, "dmabuf (fd closed)", &m);
	if (fd < 0)
		return NULL;
	close(fd);
	db_write_check(&m, 0x460);
	db_write_check(&m, P + 0x464);
	db_munmap(&m);
	return NULL;
}

const char *case_lifetime_close_vfio_fds_revokes(void)
{
	const uint64_t off = 12 * DB_MIB + 192 * P;
	const char *why = db_need_mmap();
	uint32_t v = db_next_value();

	if (why)
		return why;
	closed.fd = db_export_map(off, 2 * P, "dmabuf (device closed)", &closed.m);
	if (closed.fd < 0)
		return NULL;
	if (!db_write32(&closed.m, 0x490, v))
		return NULL;
	closed.ran = true;
	/* Device, group and container fds; the device mmap still holds it. */
	vu_close_device(&db.dev);
	ktap_diag("VFIO fds closed; the RAM BAR device mmap is the last VFIO "
		  "mapping");
	db_expect32(&closed.m, 0x490, v);
	/* The last VFIO mapping goes: the device closes and revokes. */
	db_munmap(&db.ref);
	db.opened = false;
	ktap_diag("RAM BAR device mmap unmapped");
	db_expect_fault(&closed.m, 0x490);
	db_expect_fault(&closed.m, P + 0x494);
	return NULL;
}

const char *case_lifetime_mmap_after_close_refused(void)
{
	if (!closed.ran)
		return "needs lifetime_close_vfio_fds_revokes";
	db_expect_mmap_refused("mmap of a DMABUF of a closed device",
			       closed.fd, P, 0, MAP_SHARED, 0);
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
