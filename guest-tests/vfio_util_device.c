/*
 * vfio_util_device.c - a device opened through a type1 container, and the
 * container's DMA mappings (see vfio_util.h).
 *
 * The sequence follows the kernel's Documentation/driver-api/vfio.rst
 * ("Groups, Devices, and IOMMUs"): container first, then the group, then
 * the IOMMU model, and only then the device fd.
 */
#include "vfio_util.h"
#include "vfio_util_internal.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* VFIO_CHECK_EXTENSION: >0 supported, 0 not, -1 on error. */
static int check_extension(int container, int ext, const char *ext_name)
{
	int ret = ioctl(container, VFIO_CHECK_EXTENSION, ext);

	if (ret < 0)
		vu_set_errno_error("ioctl(VFIO_CHECK_EXTENSION, %s)", ext_name);
	return ret;
}

static int open_container(struct vu_device *dev)
{
	int ret;

	dev->container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
	if (dev->container < 0) {
		vu_set_errno_error("open(/dev/vfio/vfio)");
		return -1;
	}
	ret = ioctl(dev->container, VFIO_GET_API_VERSION);
	if (ret < 0) {
		vu_set_errno_error("ioctl(VFIO_GET_API_VERSION)");
		return -1;
	}
	if (ret != VFIO_API_VERSION) {
		vu_set_error("VFIO_GET_API_VERSION: kernel has %d, expected %d",
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
		vu_set_error("VFIO_CHECK_EXTENSION: neither "
			     "VFIO_TYPE1v2_IOMMU nor VFIO_TYPE1_IOMMU (is "
			     "vfio_iommu_type1 loaded?)");
	return -1;
}

static int open_group(struct vu_device *dev)
{
	struct vfio_group_status status = { .argsz = sizeof(status) };
	char path[64];

	snprintf(path, sizeof(path), "/dev/vfio/%d", dev->group_id);
	dev->group = open(path, O_RDWR | O_CLOEXEC);
	if (dev->group < 0) {
		vu_set_errno_error("open(%s)", path);
		return -1;
	}
	if (ioctl(dev->group, VFIO_GROUP_GET_STATUS, &status)) {
		vu_set_errno_error("ioctl(%s, VFIO_GROUP_GET_STATUS)", path);
		return -1;
	}
	if (!(status.flags & VFIO_GROUP_FLAGS_VIABLE)) {
		vu_set_error("group %d is not viable (flags 0x%x): every "
			     "device in it must be bound to vfio-pci or no "
			     "driver", dev->group_id, status.flags);
		return -1;
	}
	if (ioctl(dev->group, VFIO_GROUP_SET_CONTAINER, &dev->container)) {
		vu_set_errno_error("ioctl(%s, VFIO_GROUP_SET_CONTAINER)", path);
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
		vu_set_errno_error("ioctl(VFIO_SET_IOMMU, %s)",
				   dev->iommu_type == VFIO_TYPE1v2_IOMMU ?
				   "VFIO_TYPE1v2_IOMMU" : "VFIO_TYPE1_IOMMU");
		goto fail;
	}
	dev->device = ioctl(dev->group, VFIO_GROUP_GET_DEVICE_FD, bdf);
	if (dev->device < 0) {
		vu_set_errno_error("ioctl(VFIO_GROUP_GET_DEVICE_FD, \"%s\")",
				   bdf);
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
		vu_set_errno_error("ioctl(VFIO_DEVICE_GET_INFO)");
		return -1;
	}
	return 0;
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
		vu_set_errno_error("ioctl(VFIO_IOMMU_MAP_DMA, iova 0x%" PRIx64
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
		vu_set_errno_error("ioctl(VFIO_IOMMU_UNMAP_DMA, iova 0x%" PRIx64
				   ", size 0x%" PRIx64 ")", iova, size);
		return -1;
	}
	*unmapped = unmap.size;
	return 0;
}
