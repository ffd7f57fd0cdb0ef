/*
 * vfio_util.c - sysfs and VFIO helpers for the guest tests (see vfio_util.h).
 *
 * The sequence follows the kernel's Documentation/driver-api/vfio.rst
 * ("Groups, Devices, and IOMMUs"): container first, then the group, then
 * the IOMMU model, and only then the device fd.
 */
#include "vfio_util.h"

#include <dirent.h>
#include <errno.h>
#include <time.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define PCI_DEVICES "/sys/bus/pci/devices"
#define VFIO_PCI_DRIVER "/sys/bus/pci/drivers/vfio-pci"

static char err_buf[512];

const char *vu_error(void)
{
	return err_buf;
}

static void set_error(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));
static void set_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err_buf, sizeof(err_buf), fmt, ap);
	va_end(ap);
}

/* Like set_error, then ": <strerror(errno)>" for the errno at entry. */
static void set_errno_error(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));
static void set_errno_error(const char *fmt, ...)
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
		set_errno_error("open(%s)", path);
		return -1;
	}
	n = write(fd, val, len);
	if (n < 0)
		set_errno_error("write(%s, \"%s\")", path, val);
	else if ((size_t)n != len)
		set_error("write(%s, \"%s\"): short write of %zd bytes", path,
			  val, n);
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
		set_errno_error("opendir(%s)", PCI_DEVICES);
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
		set_error("device %04x:%04x not found in " PCI_DEVICES, vendor,
			  device);
	return found;
}

int vu_current_driver(const char *bdf, char *name, size_t len)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), PCI_DEVICES "/%s", bdf);
	if (access(path, F_OK)) {
		set_errno_error("access(%s)", path);
		return -1;
	}
	snprintf(path, sizeof(path), PCI_DEVICES "/%s/driver", bdf);
	if (link_basename(path, name, len) == 0)
		return 0;
	if (errno == ENOENT) {		/* no driver link: unbound */
		name[0] = '\0';
		return 0;
	}
	set_errno_error("readlink(%s)", path);
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
		set_errno_error("vfio-pci is not loaded (access(%s); "
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
		set_error("after drivers_probe %s is bound to '%s', not "
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
		set_errno_error("readlink(%s)", path);
		return -1;
	}
	group = strtol(name, &end, 10);
	if (end == name || *end || group < 0 || group > INT_MAX) {
		set_error("readlink(%s): '%s' is not a group number", path,
			  name);
		return -1;
	}
	return (int)group;
}

/* VFIO_CHECK_EXTENSION: >0 supported, 0 not, -1 on error. */
static int check_extension(int container, int ext, const char *ext_name)
{
	int ret = ioctl(container, VFIO_CHECK_EXTENSION, ext);

	if (ret < 0)
		set_errno_error("ioctl(VFIO_CHECK_EXTENSION, %s)", ext_name);
	return ret;
}

static int open_container(struct vu_device *dev)
{
	int ret;

	dev->container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
	if (dev->container < 0) {
		set_errno_error("open(/dev/vfio/vfio)");
		return -1;
	}
	ret = ioctl(dev->container, VFIO_GET_API_VERSION);
	if (ret < 0) {
		set_errno_error("ioctl(VFIO_GET_API_VERSION)");
		return -1;
	}
	if (ret != VFIO_API_VERSION) {
		set_error("VFIO_GET_API_VERSION: kernel has %d, expected %d",
			  ret, VFIO_API_VERSION);
		return -1;
	}

	ret = check_extension(dev->container, VFIO_TYPE1v2_IOMMU,
			      "VFIO_TYPE1v2_IOMMU");
	if (ret > 0) {
		dev->iommu_type = VFIO_TYPE1v2_IOMMU;
		return 0;
	}
	if (ret == 0)
		ret = check_extension(dev->container, VFIO_TYPE1_IOMMU,
				      "VFIO_TYPE1_IOMMU");
	if (ret > 0) {
		dev->iommu_type = VFIO_TYPE1_IOMMU;
		return 0;
	}
	if (ret == 0)
		set_error("VFIO_CHECK_EXTENSION: neither VFIO_TYPE1v2_IOMMU "
			  "nor VFIO_TYPE1_IOMMU (is vfio_iommu_type1 loaded?)");
	return -1;
}

static int open_group(struct vu_device *dev)
{
	struct vfio_group_status status = { .argsz = sizeof(status) };
	char path[64];

	snprintf(path, sizeof(path), "/dev/vfio/%d", dev->group_id);
	dev->group = open(path, O_RDWR | O_CLOEXEC);
	if (dev->group < 0) {
		set_errno_error("open(%s)", path);
		return -1;
	}
	if (ioctl(dev->group, VFIO_GROUP_GET_STATUS, &status)) {
		set_errno_error("ioctl(%s, VFIO_GROUP_GET_STATUS)", path);
		return -1;
	}
	if (!(status.flags & VFIO_GROUP_FLAGS_VIABLE)) {
		set_error("group %d is not viable (flags 0x%x): every device "
			  "in it must be bound to vfio-pci or no driver",
			  dev->group_id, status.flags);
		return -1;
	}
	if (ioctl(dev->group, VFIO_GROUP_SET_CONTAINER, &dev->container)) {
		set_errno_error("ioctl(%s, VFIO_GROUP_SET_CONTAINER)", path);
		return -1;
	}
	return 0;
}

int vu_open_device(const char *bdf, struct vu_device *dev)
{
	*dev = (struct vu_device)VU_DEVICE_INIT;
	dev->group_id = vu_iommu_group(bdf);
	if (dev->group_id < 0 || open_container(dev) || open_group(dev))
		goto fail;

	/* The IOMMU model can only be set once a group is in the container. */
	if (ioctl(dev->container, VFIO_SET_IOMMU, dev->iommu_type)) {
		set_errno_error("ioctl(VFIO_SET_IOMMU, %s)",
				dev->iommu_type == VFIO_TYPE1v2_IOMMU ?
				"VFIO_TYPE1v2_IOMMU" : "VFIO_TYPE1_IOMMU");
		goto fail;
	}
	dev->device = ioctl(dev->group, VFIO_GROUP_GET_DEVICE_FD, bdf);
	if (dev->device < 0) {
		set_errno_error("ioctl(VFIO_GROUP_GET_DEVICE_FD, \"%s\")", bdf);
		goto fail;
	}
	return 0;

fail:
	vu_close_device(dev);
	return -1;
}

void vu_close_device(struct vu_device *dev)
{
	/* Device before group before container: the reverse of opening. */
	int *fds[] = { &dev->device, &dev->group, &dev->container };

	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
		if (*fds[i] >= 0)
			close(*fds[i]);
		*fds[i] = -1;
	}
}

int vu_device_info(int devfd, struct vfio_device_info *info)
{
	memset(info, 0, sizeof(*info));
	info->argsz = sizeof(*info);
	if (ioctl(devfd, VFIO_DEVICE_GET_INFO, info)) {
		set_errno_error("ioctl(VFIO_DEVICE_GET_INFO)");
		return -1;
	}
	return 0;
}

int vu_region_info(int devfd, uint32_t index, struct vfio_region_info *info)
{
	memset(info, 0, sizeof(*info));
	info->argsz = sizeof(*info);
	info->index = index;
	if (ioctl(devfd, VFIO_DEVICE_GET_REGION_INFO, info)) {
		set_errno_error("ioctl(VFIO_DEVICE_GET_REGION_INFO, index %u)",
				index);
		return -1;
	}
	return 0;
}

/* [off, off + len) within the region, without overflowing. */
static int check_range(const struct vfio_region_info *info, uint64_t off,
		       uint64_t len, const char *what)
{
	if (off > info->size || len > info->size - off) {
		set_error("%s: [0x%" PRIx64 ", +0x%" PRIx64 ") is outside "
			  "region %u of size 0x%" PRIx64, what, off, len,
			  info->index, (uint64_t)info->size);
		return -1;
	}
	return 0;
}

void *vu_mmap_region(int devfd, const struct vfio_region_info *info,
		     uint64_t offset, size_t length)
{
	void *p;

	if (!(info->flags & VFIO_REGION_INFO_FLAG_MMAP)) {
		set_error("mmap: region %u does not advertise MMAP (flags "
			  "0x%x)", info->index, info->flags);
		return NULL;
	}
	if (check_range(info, offset, length, "mmap"))
		return NULL;
	p = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_SHARED, devfd,
		 (off_t)(info->offset + offset));
	if (p == MAP_FAILED) {
		set_errno_error("mmap(region %u, offset 0x%" PRIx64 ", length "
				"0x%zx)", info->index, offset, length);
		return NULL;
	}
	return p;
}

int vu_pread32(int devfd, const struct vfio_region_info *info, uint64_t off,
	       uint32_t *val)
{
	ssize_t n;

	if (check_range(info, off, sizeof(*val), "pread"))
		return -1;
	n = pread(devfd, val, sizeof(*val), (off_t)(info->offset + off));
	if (n < 0) {
		set_errno_error("pread(region %u + 0x%" PRIx64 ", 4)",
				info->index, off);
		return -1;
	}
	if (n != sizeof(*val)) {
		set_error("pread(region %u + 0x%" PRIx64 ", 4): short read of "
			  "%zd bytes", info->index, off, n);
		return -1;
	}
	return 0;
}

int vu_pwrite32(int devfd, const struct vfio_region_info *info, uint64_t off,
		uint32_t val)
{
	ssize_t n;

	if (check_range(info, off, sizeof(val), "pwrite"))
		return -1;
	n = pwrite(devfd, &val, sizeof(val), (off_t)(info->offset + off));
	if (n < 0) {
		set_errno_error("pwrite(region %u + 0x%" PRIx64 ", 4)",
				info->index, off);
		return -1;
	}
	if (n != sizeof(val)) {
		set_error("pwrite(region %u + 0x%" PRIx64 ", 4): short write "
			  "of %zd bytes", info->index, off, n);
		return -1;
	}
	return 0;
}

int vu_irq_info(int devfd, uint32_t index, struct vfio_irq_info *info)
{
	memset(info, 0, sizeof(*info));
	info->argsz = sizeof(*info);
	info->index = index;
	if (ioctl(devfd, VFIO_DEVICE_GET_IRQ_INFO, info)) {
		set_errno_error("ioctl(VFIO_DEVICE_GET_IRQ_INFO, index %u)",
				index);
		return -1;
	}
	return 0;
}

static const char *irq_index_name(uint32_t index)
{
	switch (index) {
	case VFIO_PCI_INTX_IRQ_INDEX:
		return "INTx";
	case VFIO_PCI_MSI_IRQ_INDEX:
		return "MSI";
	case VFIO_PCI_MSIX_IRQ_INDEX:
		return "MSI-X";
	case VFIO_PCI_ERR_IRQ_INDEX:
		return "ERR";
	case VFIO_PCI_REQ_IRQ_INDEX:
		return "REQ";
	default:
		return "?";
	}
}

/* VFIO_DEVICE_SET_IRQS of vector 0 (count 0 or 1), with an optional fd. */
static int set_irqs(int devfd, uint32_t index, uint32_t flags, uint32_t count,
		    int efd, const char *what)
{
	union {
		struct vfio_irq_set set;
		/* the header plus one __s32 of data, suitably aligned */
		uint8_t bytes[sizeof(struct vfio_irq_set) + sizeof(int32_t)];
	} u;
	int32_t fd = efd;

	memset(&u, 0, sizeof(u));
	u.set.argsz = sizeof(u.set);
	u.set.flags = flags;
	u.set.index = index;
	u.set.start = 0;
	u.set.count = count;
	if (flags & VFIO_IRQ_SET_DATA_EVENTFD) {
		u.set.argsz += sizeof(fd);
		memcpy(u.set.data, &fd, sizeof(fd));
	}
	if (ioctl(devfd, VFIO_DEVICE_SET_IRQS, &u.set)) {
		set_errno_error("ioctl(VFIO_DEVICE_SET_IRQS, %s, %s)",
				irq_index_name(index), what);
		return -1;
	}
	return 0;
}

int vu_irq_set_eventfd(int devfd, uint32_t index, int efd)
{
	return set_irqs(devfd, index,
			VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
			1, efd, "DATA_EVENTFD|ACTION_TRIGGER");
}

int vu_irq_disable(int devfd, uint32_t index)
{
	return set_irqs(devfd, index,
			VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
			0, -1, "DATA_NONE|ACTION_TRIGGER, count 0");
}

int vu_irq_unmask(int devfd, uint32_t index)
{
	return set_irqs(devfd, index,
			VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK,
			1, -1, "DATA_NONE|ACTION_UNMASK");
}

int vu_eventfd_wait(int efd, int timeout_ms, uint64_t *count)
{
	struct pollfd pfd = { .fd = efd, .events = POLLIN };
	ssize_t n;
	int ret;

	do
		ret = poll(&pfd, 1, timeout_ms);
	while (ret < 0 && errno == EINTR);
	if (ret < 0) {
		set_errno_error("poll(eventfd)");
		return -1;
	}
	if (ret == 0)
		return 0;
	if (!(pfd.revents & POLLIN)) {
		set_error("poll(eventfd): revents 0x%x without POLLIN",
			  pfd.revents);
		return -1;
	}
	n = read(efd, count, sizeof(*count));
	if (n < 0) {
		set_errno_error("read(eventfd)");
		return -1;
	}
	if (n != sizeof(*count)) {
		set_error("read(eventfd): short read of %zd bytes", n);
		return -1;
	}
	return 1;
}

int vu_dma_map(int container, void *vaddr, uint64_t iova, uint64_t size)
{
	struct vfio_iommu_type1_dma_map map = {
		.argsz = sizeof(map),
		.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
		.vaddr = (uintptr_t)vaddr,
		.iova = iova,
		.size = size,
	};

	if (ioctl(container, VFIO_IOMMU_MAP_DMA, &map)) {
		set_errno_error("ioctl(VFIO_IOMMU_MAP_DMA, iova 0x%" PRIx64
				", size 0x%" PRIx64 ")", iova, size);
		return -1;
	}
	return 0;
}

int vu_dma_unmap(int container, uint64_t iova, uint64_t size,
		 uint64_t *unmapped)
{
	struct vfio_iommu_type1_dma_unmap unmap = {
		.argsz = sizeof(unmap),
		.iova = iova,
		.size = size,
	};

	if (ioctl(container, VFIO_IOMMU_UNMAP_DMA, &unmap)) {
		set_errno_error("ioctl(VFIO_IOMMU_UNMAP_DMA, iova 0x%" PRIx64
				", size 0x%" PRIx64 ")", iova, size);
		return -1;
	}
	*unmapped = unmap.size;
	return 0;
}

/* pread/pwrite of config space, with one message for every failure. */
static int config_rw(int devfd, uint32_t off, void *buf, size_t len,
		     bool write)
{
	struct vfio_region_info cfg;
	ssize_t n;

	if (vu_region_info(devfd, VFIO_PCI_CONFIG_REGION_INDEX, &cfg))
		return -1;
	if (check_range(&cfg, off, len, write ? "config write" :
			"config read"))
		return -1;
	n = write ? pwrite(devfd, buf, len, (off_t)(cfg.offset + off)) :
		    pread(devfd, buf, len, (off_t)(cfg.offset + off));
	if (n < 0) {
		set_errno_error("%s(config space + 0x%x, %zu)",
				write ? "pwrite" : "pread", off, len);
		return -1;
	}
	if ((size_t)n != len) {
		set_error("%s(config space + 0x%x, %zu): short %s of %zd "
			  "bytes", write ? "pwrite" : "pread", off, len,
			  write ? "write" : "read", n);
		return -1;
	}
	return 0;
}

int vu_config_read(int devfd, uint32_t off, void *buf, size_t len)
{
	return config_rw(devfd, off, buf, len, false);
}

int vu_config_write(int devfd, uint32_t off, const void *buf, size_t len)
{
	return config_rw(devfd, off, (void *)buf, len, true);
}

#define PCI_COMMAND_REG		0x04	/* little-endian u16 */
#define PCI_COMMAND_MASTER_BIT	0x0004

int vu_enable_bus_master(int devfd, uint16_t *old_cmd)
{
	uint8_t b[2];
	uint16_t cmd;

	if (vu_config_read(devfd, PCI_COMMAND_REG, b, sizeof(b)))
		return -1;
	cmd = (uint16_t)(b[0] | b[1] << 8);
	*old_cmd = cmd;
	if (cmd & PCI_COMMAND_MASTER_BIT)
		return 0;
	cmd |= PCI_COMMAND_MASTER_BIT;
	b[0] = (uint8_t)cmd;
	b[1] = (uint8_t)(cmd >> 8);
	if (vu_config_write(devfd, PCI_COMMAND_REG, b, sizeof(b)) ||
	    vu_config_read(devfd, PCI_COMMAND_REG, b, sizeof(b)))
		return -1;
	cmd = (uint16_t)(b[0] | b[1] << 8);
	if (!(cmd & PCI_COMMAND_MASTER_BIT)) {
		set_error("PCI command register: Bus Master Enable did not "
			  "stick (wrote 0x%04x, read back 0x%04x)",
			  (uint16_t)(*old_cmd | PCI_COMMAND_MASTER_BIT), cmd);
		return -1;
	}
	return 0;
}
