/*
 * vfio_util.h - the VFIO plumbing every guest test needs: find the device in
 * sysfs, bind it to vfio-pci, open it through a type1 container, and reach
 * its regions by mmap or by pread/pwrite.
 *
 * The guest kernel has no iommufd (IOMMUFD unset), so this is the legacy
 * container/group API: /dev/vfio/vfio + /dev/vfio/<group>.
 *
 * Functions returning int return 0 (or a non-negative value) on success
 * and -1 on failure; pointer-returning ones return NULL. On failure,
 * vu_error() says which syscall or ioctl failed, on what, and the errno
 * text, ready to go into a test diagnostic.
 */
#ifndef EDU_PLUS_VFIO_UTIL_H
#define EDU_PLUS_VFIO_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include <linux/vfio.h>

/* "dddd:bb:dd.f" plus NUL, with room to spare. */
#define VU_BDF_LEN 32

/* Message describing the last failure of a vu_* function. */
const char *vu_error(void);

/* Read /sys/bus/pci/devices/<bdf>/<attr> as a hex number ("0x1234\n"). */
int vu_sysfs_hex(const char *bdf, const char *attr, unsigned long *val);

/* CLOCK_MONOTONIC in nanoseconds (for the bench programs' timings). */
uint64_t vu_now_ns(void);

/*
 * Find the first PCI device with this vendor:device in /sys/bus/pci/devices
 * and store its BDF (e.g. "0000:00:03.0") in bdf. Fails with a message
 * naming the IDs when no device matches.
 */
int vu_find_pci_device(uint16_t vendor, uint16_t device, char bdf[VU_BDF_LEN]);

/*
 * The name of the driver bound to bdf, or "" when unbound. Fails only when
 * the device does not exist or the link cannot be read.
 */
int vu_current_driver(const char *bdf, char *name, size_t len);

/*
 * Make vfio-pci the driver of bdf: driver_override, unbind from the current
 * driver, drivers_probe. A device already bound to vfio-pci is left alone.
 * Fails with a clear message when the vfio-pci module is not loaded.
 */
int vu_bind_vfio_pci(const char *bdf);

/* The IOMMU group number of bdf (from its iommu_group link), or -1. */
int vu_iommu_group(const char *bdf);

/* A device opened through a type1 container. Fds are -1 when not open. */
struct vu_device {
	int container;		/* /dev/vfio/vfio */
	int group;		/* /dev/vfio/<group_id> */
	int device;		/* from VFIO_GROUP_GET_DEVICE_FD */
	int group_id;
	int iommu_type;		/* VFIO_TYPE1v2_IOMMU or VFIO_TYPE1_IOMMU */
};

#define VU_DEVICE_INIT \
	{ .container = -1, .group = -1, .device = -1, .group_id = -1 }

/*
 * Open bdf (already bound to vfio-pci): container, API version, type1
 * extension (v2 preferred), group, viability, SET_CONTAINER, SET_IOMMU,
 * GET_DEVICE_FD. On failure everything opened so far is closed again.
 */
int vu_open_device(const char *bdf, struct vu_device *dev);

/* Close whatever dev holds; safe on a partly opened or closed device. */
void vu_close_device(struct vu_device *dev);

/* VFIO_DEVICE_GET_INFO. */
int vu_device_info(int devfd, struct vfio_device_info *info);

/*
 * VFIO_DEVICE_GET_REGION_INFO for one region index (the fixed part only;
 * capability chains are not fetched).
 */
int vu_region_info(int devfd, uint32_t index, struct vfio_region_info *info);

/*
 * mmap length bytes of a region, starting offset bytes into it, shared and
 * read/write. Checks the region advertises MMAP and that the range fits
 * before asking the kernel, so the message says which one was wrong.
 */
void *vu_mmap_region(int devfd, const struct vfio_region_info *info,
		     uint64_t offset, size_t length);

/*
 * One 4-byte access through the device fd at a region's file offset plus
 * off: the read/write path that does not need mmap (vfio-pci turns it into
 * an access of the BAR, which for a vfio-user device is a message to the
 * server).
 */
int vu_pread32(int devfd, const struct vfio_region_info *info, uint64_t off,
	       uint32_t *val);
int vu_pwrite32(int devfd, const struct vfio_region_info *info, uint64_t off,
		uint32_t val);

/*
 * Config space through region 7 (VFIO_PCI_CONFIG_REGION_INDEX) of the
 * device fd, at any size vfio-pci accepts (1, 2 or 4 bytes per access).
 */
int vu_config_read(int devfd, uint32_t off, void *buf, size_t len);
int vu_config_write(int devfd, uint32_t off, const void *buf, size_t len);

/*
 * Set Bus Master Enable in the PCI command register. vfio-pci enables the
 * device's memory decoding but leaves bus mastering to the user: without
 * it, the device's DMA and its MSI writes (which are DMA too) go nowhere.
 * Stores the command register as read before the change in *old_cmd.
 */
int vu_enable_bus_master(int devfd, uint16_t *old_cmd);

/*
 * Interrupts (VFIO_DEVICE_GET_IRQ_INFO / VFIO_DEVICE_SET_IRQS) for one index
 * (VFIO_PCI_INTX_IRQ_INDEX, VFIO_PCI_MSI_IRQ_INDEX, ...), vector 0 only.
 */
int vu_irq_info(int devfd, uint32_t index, struct vfio_irq_info *info);

/* Wire vector 0 of index to eventfd efd: DATA_EVENTFD | ACTION_TRIGGER. */
int vu_irq_set_eventfd(int devfd, uint32_t index, int efd);

/* Tear index down: DATA_NONE | ACTION_TRIGGER with count 0. */
int vu_irq_disable(int devfd, uint32_t index);

/* DATA_NONE | ACTION_UNMASK of vector 0 (INTx is automasked on each fire). */
int vu_irq_unmask(int devfd, uint32_t index);

/*
 * Wait up to timeout_ms for eventfd efd to become readable, then read its
 * counter into *count. Returns 1 when it fired, 0 on timeout, -1 on error.
 */
int vu_eventfd_wait(int efd, int timeout_ms, uint64_t *count);

/*
 * Type1 IOMMU mappings in the container: VFIO_IOMMU_MAP_DMA of size bytes
 * at vaddr to iova, readable and writable by the device, and the reverse.
 * vu_dma_unmap stores the size the kernel reports unmapped in *unmapped.
 */
int vu_dma_map(int container, void *vaddr, uint64_t iova, uint64_t size);
int vu_dma_unmap(int container, uint64_t iova, uint64_t size,
		 uint64_t *unmapped);

/*
 * MMIO through a mapping. volatile so that every access happens, once, at
 * exactly 32 bits: BAR0 registers have side effects and check access size.
 */
static inline uint32_t vu_mmio_read32(volatile void *base, size_t off)
{
	return *(volatile uint32_t *)((volatile uint8_t *)base + off);
}

static inline void vu_mmio_write32(volatile void *base, size_t off,
				   uint32_t val)
{
	*(volatile uint32_t *)((volatile uint8_t *)base + off) = val;
}

/*
 * The same at 16 and 64 bits, for access-size tests and 64-bit registers.
 * On x86-64 each is one load or store instruction of exactly that width.
 */
static inline uint16_t vu_mmio_read16(volatile void *base, size_t off)
{
	return *(volatile uint16_t *)((volatile uint8_t *)base + off);
}

static inline void vu_mmio_write16(volatile void *base, size_t off,
				   uint16_t val)
{
	*(volatile uint16_t *)((volatile uint8_t *)base + off) = val;
}

static inline uint64_t vu_mmio_read64(volatile void *base, size_t off)
{
	return *(volatile uint64_t *)((volatile uint8_t *)base + off);
}

static inline void vu_mmio_write64(volatile void *base, size_t off,
				   uint64_t val)
{
	*(volatile uint64_t *)((volatile uint8_t *)base + off) = val;
}

#endif /* EDU_PLUS_VFIO_UTIL_H */
