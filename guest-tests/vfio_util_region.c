/*
 * vfio_util_region.c - a device's regions: their info, mmap, 4-byte
 * pread/pwrite, config space and Bus Master Enable (see vfio_util.h).
 */
#include "vfio_util.h"
#include "vfio_util_internal.h"

#include <inttypes.h>
#include <stdbool.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

int vu_region_info(int devfd, uint32_t index, struct vfio_region_info *info)
{
	memset(info, 0, sizeof(*info));
	info->argsz = sizeof(*info);
	info->index = index;
	if (ioctl(devfd, VFIO_DEVICE_GET_REGION_INFO, info)) {
		vu_set_errno_error("ioctl(VFIO_DEVICE_GET_REGION_INFO, "
				   "index %u)", index);
		return -1;
	}
	return 0;
}

/* [off, off + len) within the region, without overflowing. */
static int check_range(const struct vfio_region_info *info, uint64_t off,
		       uint64_t len, const char *what)
{
	if (off > info->size || len > info->size - off) {
		vu_set_error("%s: [0x%" PRIx64 ", +0x%" PRIx64 ") is outside "
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
		vu_set_error("mmap: region %u does not advertise MMAP (flags "
			     "0x%x)", info->index, info->flags);
		return NULL;
	}
	if (check_range(info, offset, length, "mmap"))
		return NULL;
	p = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_SHARED, devfd,
		 (off_t)(info->offset + offset));
	if (p == MAP_FAILED) {
		vu_set_errno_error("mmap(region %u, offset 0x%" PRIx64
				   ", length 0x%zx)", info->index, offset,
				   length);
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
		vu_set_errno_error("pread(region %u + 0x%" PRIx64 ", 4)",
				   info->index, off);
		return -1;
	}
	if (n != sizeof(*val)) {
		vu_set_error("pread(region %u + 0x%" PRIx64 ", 4): short read "
			     "of %zd bytes", info->index, off, n);
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
		vu_set_errno_error("pwrite(region %u + 0x%" PRIx64 ", 4)",
				   info->index, off);
		return -1;
	}
	if (n != sizeof(val)) {
		vu_set_error("pwrite(region %u + 0x%" PRIx64 ", 4): short "
			     "write of %zd bytes", info->index, off, n);
		return -1;
	}
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
		vu_set_errno_error("%s(config space + 0x%x, %zu)",
				   write ? "pwrite" : "pread", off, len);
		return -1;
	}
	if ((size_t)n != len) {
		vu_set_error("%s(config space + 0x%x, %zu): short %s of %zd "
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
		vu_set_error("PCI command register: Bus Master Enable did not "
			     "stick (wrote 0x%04x, read back 0x%04x)",
			     (uint16_t)(*old_cmd | PCI_COMMAND_MASTER_BIT),
			     cmd);
		return -1;
	}
	return 0;
}
