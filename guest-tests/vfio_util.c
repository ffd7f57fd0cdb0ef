/*
 * vfio_util.c - the failure message every vu_* function leaves for
 * vu_error(), and the sysfs and clock helpers (see vfio_util.h). The rest
 * of vfio_util.h lives in vfio_util_device.c (container, group, device fd,
 * DMA mappings), vfio_util_region.c (region info, mmap, pread/pwrite,
 * config space) and vfio_util_irq.c (interrupts and eventfds).
 */
#include "vfio_util.h"
#include "vfio_util_internal.h"

#include <dirent.h>
#include <errno.h>
#include <time.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PCI_DEVICES "/sys/bus/pci/devices"
#define VFIO_PCI_DRIVER "/sys/bus/pci/drivers/vfio-pci"

static char err_buf[512];

const char *vu_error(void)
{
	return err_buf;
}

void vu_set_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err_buf, sizeof(err_buf), fmt, ap);
	va_end(ap);
}

void vu_set_errno_error(const char *fmt, ...)
{
	int err = errno;
	size_t n;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err_buf, sizeof(err_buf), fmt, ap);
	va_end(ap);
	n = strlen(err_buf);
	snprintf(err_buf + n, sizeof(err_buf) - n, ": %s (errno %d)",
		 strerror(err), err);
	errno = err;
}

/* Parse a sysfs attribute such as "0x1234\n". */
static int read_sysfs_hex(const char *path, unsigned long *val)
{
	char buf[32], *end;
	FILE *f = fopen(path, "re");

	if (!f)
		return -1;
	if (!fgets(buf, sizeof(buf), f)) {
		fclose(f);
		errno = EIO;
		return -1;
	}
	fclose(f);
	errno = 0;
	*val = strtoul(buf, &end, 16);
	if (errno || end == buf) {
		errno = EINVAL;
		return -1;
	}
	return 0;
}

int vu_sysfs_hex(const char *bdf, const char *attr, unsigned long *val)
{
	char path[256];

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/%s", bdf, attr);
	return read_sysfs_hex(path, val);
}

uint64_t vu_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int write_sysfs(const char *path, const char *val)
{
	size_t len = strlen(val);
	ssize_t n;
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	if (fd < 0) {
		vu_set_errno_error("open(%s)", path);
		return -1;
	}
	n = write(fd, val, len);
	if (n < 0)
		vu_set_errno_error("write(%s, \"%s\")", path, val);
	else if ((size_t)n != len)
		vu_set_error("write(%s, \"%s\"): short write of %zd bytes",
			     path, val, n);
	close(fd);
	return (n >= 0 && (size_t)n == len) ? 0 : -1;
}

/* The last path component a symlink points to; -1 with errno set. */
static int link_basename(const char *path, char *name, size_t len)
{
	char target[PATH_MAX];
	const char *base;
	ssize_t n = readlink(path, target, sizeof(target) - 1);

	if (n < 0)
		return -1;
	target[n] = '\0';
	base = strrchr(target, '/');
	base = base ? base + 1 : target;
	if (strlen(base) >= len) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(name, base, strlen(base) + 1);
	return 0;
}

int vu_find_pci_device(uint16_t vendor, uint16_t device, char bdf[VU_BDF_LEN])
{
	DIR *dir = opendir(PCI_DEVICES);
	struct dirent *de;
	int found = -1;

	if (!dir) {
		vu_set_errno_error("opendir(%s)", PCI_DEVICES);
		return -1;
	}
	while (found < 0 && (de = readdir(dir))) {
		char path[PATH_MAX];
		unsigned long v, d;

		if (de->d_name[0] == '.' || strlen(de->d_name) >= VU_BDF_LEN)
			continue;
		snprintf(path, sizeof(path), PCI_DEVICES "/%s/vendor",
			 de->d_name);
		if (read_sysfs_hex(path, &v) || v != vendor)
			continue;
		snprintf(path, sizeof(path), PCI_DEVICES "/%s/device",
			 de->d_name);
		if (read_sysfs_hex(path, &d) || d != device)
			continue;
		memcpy(bdf, de->d_name, strlen(de->d_name) + 1);
		found = 0;
	}
	closedir(dir);
	if (found < 0)
		vu_set_error("device %04x:%04x not found in " PCI_DEVICES,
			     vendor, device);
	return found;
}

int vu_current_driver(const char *bdf, char *name, size_t len)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), PCI_DEVICES "/%s", bdf);
	if (access(path, F_OK)) {
		vu_set_errno_error("access(%s)", path);
		return -1;
	}
	snprintf(path, sizeof(path), PCI_DEVICES "/%s/driver", bdf);
	if (link_basename(path, name, len) == 0)
		return 0;
	if (errno == ENOENT) {		/* no driver link: unbound */
		name[0] = '\0';
		return 0;
	}
	vu_set_errno_error("readlink(%s)", path);
	return -1;
}

int vu_bind_vfio_pci(const char *bdf)
{
	char path[PATH_MAX], driver[64];

	if (vu_current_driver(bdf, driver, sizeof(driver)))
		return -1;
	if (strcmp(driver, "vfio-pci") == 0)
		return 0;	/* e.g. /init already did it through new_id */
	if (access(VFIO_PCI_DRIVER, F_OK)) {
		vu_set_errno_error("vfio-pci is not loaded (access(%s); "
				   "modprobe vfio-pci)", VFIO_PCI_DRIVER);
		return -1;
	}

	/*
	 * driver_override makes vfio-pci the only driver allowed to claim
	 * the device, so the probe below cannot hand it back to its old
	 * driver (or any other).
	 */
	snprintf(path, sizeof(path), PCI_DEVICES "/%s/driver_override", bdf);
	if (write_sysfs(path, "vfio-pci"))
		return -1;
	if (driver[0]) {
		snprintf(path, sizeof(path), PCI_DEVICES "/%s/driver/unbind",
			 bdf);
		if (write_sysfs(path, bdf))
			return -1;
	}
	if (write_sysfs("/sys/bus/pci/drivers_probe", bdf))
		return -1;

	if (vu_current_driver(bdf, driver, sizeof(driver)))
		return -1;
	if (strcmp(driver, "vfio-pci") != 0) {
		vu_set_error("after drivers_probe %s is bound to '%s', not "
			     "vfio-pci (see dmesg)", bdf, driver);
		return -1;
	}
	return 0;
}

int vu_iommu_group(const char *bdf)
{
	char path[PATH_MAX], name[32], *end;
	long group;

	snprintf(path, sizeof(path), PCI_DEVICES "/%s/iommu_group", bdf);
	if (link_basename(path, name, sizeof(name))) {
		/* ENOENT here means no IOMMU (or intel_iommu=off). */
		vu_set_errno_error("readlink(%s)", path);
		return -1;
	}
	group = strtol(name, &end, 10);
	if (end == name || *end || group < 0 || group > INT_MAX) {
		vu_set_error("readlink(%s): '%s' is not a group number", path,
			     name);
		return -1;
	}
	return (int)group;
}
