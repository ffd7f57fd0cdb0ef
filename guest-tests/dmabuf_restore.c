/*
 * dmabuf_restore.c - DMABUF suite: the temporary revoke and restore of BAR
 * mappings around memory-disable (Memory Space Enable cleared in the PCI
 * command register) and device reset, and permanent revokes that must stay
 * revoked through both.
 *
 * While memory decoding is off, every mapping of a BAR must fault (SIGBUS):
 * stock vfio-pci zaps the device fd's mappings and refuses to fault them
 * back in, and temporarily revokes every DMABUF of the device. Once memory
 * is back, both kinds of mapping work again with the same bytes. The
 * DMABUF and the device-fd mappings are separate cases, and "revoked while
 * off" is separate from "restored after", so one defect fails one case and
 * cannot hide another behind the same "not ok". A DMABUF revoked for good
 * (VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE) must stay revoked through a memory
 * toggle or a reset: its mappings fault, a second revoke says EBADFD, and
 * mmap is refused.
 *
 * Every case leaves the command register as it found it. RAM BAR bytes:
 * 12 MiB + 256 KiB (reset), 13 MiB (DMABUF memory toggles), 14-16 MiB and
 * 22-24 MiB (device-fd memory toggles), 26 MiB (permanent revokes); in-page
 * offsets 0x470-0x47f and 0x540-0x5bf.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "dmabuf_cases.h"
#include "dmabuf_util.h"
#include "ktap.h"

#define RAM_BAR db.ram_bar
#define P DB_PAGE
#define PCI_COMMAND		0x04
#define PCI_COMMAND_MEMORY	0x2

/* A fresh value at a RAM BAR offset through the reference (memory is on). */
static void settle(uint64_t bar_off)
{
	db_write32(&db.ref, bar_off, db_next_value());
}

/* ---- the command register ---- */

static bool read_command(uint16_t *cmd)
{
	uint8_t b[2];

	if (vu_config_read(db.dev.device, PCI_COMMAND, b, sizeof(b))) {
		ktap_fail("%s", vu_error());
		return false;
	}
	*cmd = (uint16_t)(b[0] | b[1] << 8);
	return true;
}

static bool write_command(uint16_t cmd, const char *what)
{
	uint8_t b[2] = { (uint8_t)cmd, (uint8_t)(cmd >> 8) };

	if (vu_config_write(db.dev.device, PCI_COMMAND, b, sizeof(b)) == 0)
		return true;
	ktap_fail("%s (command 0x%04x): %s", what, cmd, vu_error());
	return false;
}

/* Memory Space Enable off; *cmd gets the register to restore. */
static bool memory_off(uint16_t *cmd)
{
	if (!read_command(cmd))
		return false;
	if (!ktap_expect(*cmd & PCI_COMMAND_MEMORY, "PCI command 0x%04x: "
			 "Memory Space Enable is already off (vfio-pci sets it "
			 "when it enables the device)", *cmd))
		return false;
	ktap_diag("PCI command 0x%04x: clearing Memory Space Enable", *cmd);
	return write_command(*cmd & ~PCI_COMMAND_MEMORY,
			     "clearing Memory Space Enable");
}

/* The command register as memory_off found it: Memory Space Enable on. */
static bool memory_on(uint16_t cmd)
{
	return write_command(cmd, "setting Memory Space Enable again");
}

/* ---- memory disable: DMABUF mappings ---- */

const char *case_lifetime_memory_disable_revokes_dmabuf(void)
{
	const char *why = db_need_mmap();
	struct db_map m;
	uint16_t cmd;
	void *p;
	int fd;

	if (why)
		return why;
	fd = db_export_map(13 * DB_MIB, 2 * P, "dmabuf (memory off)", &m);
	if (fd < 0)
		return NULL;
	if (db_write_check(&m, 0x540) && memory_off(&cmd)) {
		db_expect_fault_memory_off(&m, 0x540);
		db_expect_fault_memory_off(&m, P + 0x544);	/* untouched */
		p = mmap(NULL, P, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		ktap_diag("new mmap while memory is off: %s",
			  p == MAP_FAILED ? db_errno_name(errno) : "succeeded");
		if (p != MAP_FAILED)
			munmap(p, P);
		if (memory_on(cmd)) {
			settle(13 * DB_MIB + 0x540);
			settle(13 * DB_MIB + P + 0x544);
		}
	}
	db_munmap(&m);
	close(fd);
	return NULL;
}

const char *case_lifetime_memory_enable_restores_dmabuf(void)
{
	const uint64_t off = 13 * DB_MIB + 64 * P;
	const char *why = db_need_mmap();
	uint32_t v = db_next_value();
	struct db_map m;
	uint16_t cmd;
	int fd;

	if (why)
		return why;
	fd = db_export_map(off, 2 * P, "dmabuf (memory back on)", &m);
	if (fd < 0)
		return NULL;
	/* Page 1 stays untouched until memory is back. */
	if (db_write32(&m, 0x548, v) && memory_off(&cmd) && memory_on(cmd)) {
		db_expect32(&m, 0x548, v);		/* same bytes */
		db_write_check(&m, 0x54c);
		db_write_check(&m, P + 0x550);
	}
	db_munmap(&m);
	close(fd);
	return NULL;
}

/* ---- memory disable: device-fd mappings (no DMABUF feature needed) ---- */

static bool map_device(uint64_t bar_off, const char *name, struct db_map *m)
{
	if (db_mmap_device(&db.ram, bar_off, DB_HUGE_ALIGN, name, m))
		return true;
	ktap_fail("mmap of %s: %s", name, db_errno_name(errno));
	return false;
}

const char *case_lifetime_memory_disable_revokes_device_mmap(void)
{
	const uint64_t off = 14 * DB_MIB;
	static const size_t probe[] = { 3 * P + 0x560, 300 * P + 0x564 };
	struct db_map m;
	uint16_t cmd;

	if (!db.opened)
		return "needs open_device";
	if (!map_device(off, "device mmap @14M", &m))
		return NULL;
	/* Page 3 mapped (maybe as part of a PMD), page 300 maybe not. */
	if (db_write_check(&m, probe[0]) && memory_off(&cmd)) {
		for (size_t i = 0; i < 2; i++)
			db_expect_fault_memory_off(&m, probe[i]);
		/* The offset-0 mapping of all of RAM_BAR, too. */
		db_expect_fault_memory_off(&db.ref, off + 5 * P + 0x568);
		if (memory_on(cmd)) {
			for (size_t i = 0; i < 2; i++)
				settle(off + probe[i]);
			settle(off + 5 * P + 0x568);
		}
	}
	db_munmap(&m);
	return NULL;
}

const char *case_lifetime_memory_enable_restores_device_mmap(void)
{
	const uint64_t off = 22 * DB_MIB;
	uint32_t v = db_next_value();
	struct db_map m;
	uint16_t cmd;

	if (!db.opened)
		return "needs open_device";
	if (!map_device(off, "device mmap @22M", &m))
		return NULL;
	if (db_write32(&m, 7 * P + 0x570, v) && memory_off(&cmd) &&
	    memory_on(cmd)) {
		db_expect32(&m, 7 * P + 0x570, v);
		db_write_check(&m, 7 * P + 0x574);
		db_write_check(&m, 400 * P + 0x578);	/* not touched before */
		db_write_check(&db.ref, off + 9 * P + 0x57c);
	}
	db_munmap(&m);
	return NULL;
}

/* ---- permanent revokes through a memory toggle or a reset ---- */

/* Why VFIO_DEVICE_RESET cannot run here (a skip reason), or NULL. */
static const char *need_reset(void)
{
	struct vfio_device_info info;
	int ret, err;

	if (vu_device_info(db.dev.device, &info)) {
		ktap_fail("%s", vu_error());
		return "VFIO_DEVICE_GET_INFO failed";
	}
	if (info.flags & VFIO_DEVICE_FLAGS_RESET)
		return NULL;
	ret = ioctl(db.dev.device, VFIO_DEVICE_RESET);
	err = errno;
	return db_why("VFIO_DEVICE_RESET not supported for this device: %s "
		      "(device flags 0x%x lack VFIO_DEVICE_FLAGS_RESET: the "
		      "kernel found no reset method)",
		      ret ? db_errno_name(err) : "0", info.flags);
}

/* VFIO_DEVICE_RESET: NULL when it worked, else what went wrong. */
static const char *device_reset(void)
{
	if (ioctl(db.dev.device, VFIO_DEVICE_RESET) == 0)
		return NULL;
	return db_why("VFIO_DEVICE_RESET failed: %s", db_errno_name(errno));
}

/*
 * Revoke a buffer for good, then run() the event it names: a temporary
 * revoke and restore of every DMABUF of the device, which must not restore
 * this one.
 */
static void revoke_then(uint64_t off, const char *event,
			const char *(*run)(void))
{
	struct db_map m = { .base = NULL };
	const struct db_range r[] = { { off, 2 * P } };
	struct db_layout lay = db_layout(RAM_BAR, r, 1, 0);
	const char *why;
	int fd = db_export_ok(db.dev.device, RAM_BAR, r, 1);

	if (fd < 0)
		return;
	if (db.mmap_ok) {
		if (!db_mmap(fd, 2 * P, 0, NULL, &lay, "revoked dmabuf", &m)) {
			ktap_fail("mmap: %s", db_errno_name(errno));
			close(fd);
			return;
		}
		db_write_check(&m, 0x580);
	}
	if (db_revoke(db.dev.device, fd)) {
		ktap_fail("revoke: %s", db_errno_name(errno));
	} else {
		if (m.base)
			db_expect_fault(&m, 0x580);
		why = run();
		if (why) {
			ktap_fail("%s: %s", event, why);
		} else {
			ktap_diag("revoked, then %s", event);
			if (m.base) {
				db_expect_fault(&m, 0x580);
				db_expect_fault(&m, P + 0x584);
			}
			DB_EXPECT_ERRNO("second revoke", db_revoke(db.dev.device,
					fd), EBADFD);
			if (db.mmap_ok)
				db_expect_mmap_refused("mmap of the revoked "
						       "buffer", fd, P, 0,
						       MAP_SHARED, 0);
			else
				ktap_diag("mmap of DMABUFs unsupported: not "
					  "checked");
		}
	}
	db_munmap(&m);
	close(fd);
}

/* A memory toggle as an event for revoke_then: NULL when it happened. */
static const char *memory_toggle(void)
{
	uint16_t cmd;

	if (!memory_off(&cmd))
		return "could not clear Memory Space Enable";
	return memory_on(cmd) ? NULL : "could not set Memory Space Enable";
}

const char *case_revoke_survives_memory_toggle(void)
{
	const char *why = db_need_revoke();

	if (why)
		return why;
	revoke_then(26 * DB_MIB, "memory disabled and enabled again",
		    memory_toggle);
	return NULL;
}

const char *case_revoke_survives_reset(void)
{
	const char *why = db_need_revoke();

	if (why || (why = need_reset()))
		return why;
	revoke_then(26 * DB_MIB + 64 * P, "VFIO_DEVICE_RESET", device_reset);
	return NULL;
}

/* ---- reset: the temporary revoke is undone ---- */

const char *case_lifetime_reset_restores_dmabuf(void)
{
	const char *why = db_need_mmap();
	struct db_map m;
	uint32_t v = db_next_value();
	int fd;

	if (why || (why = need_reset()))
		return why;
	fd = db_export_map(12 * DB_MIB + 64 * P, 2 * P, "dmabuf (reset)", &m);
	if (fd < 0)
		return NULL;
	if (db_write32(&m, 0x470, v)) {
		why = device_reset();
		if (why) {
			ktap_fail("%s", why);
		} else {
			/* edu-plus and the gpu keep their RAM BAR across a reset. */
			db_expect32(&m, 0x470, v);
			db_write_check(&m, P + 0x474);
		}
	}
	db_munmap(&m);
	close(fd);
	return NULL;
}
