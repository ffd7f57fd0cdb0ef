// SPDX-License-Identifier: GPL-2.0-only
/*
 * edu-plus driver for the kernel's VFIO selftests library
 * (tools/testing/selftests/vfio/lib, struct vfio_pci_driver_ops), so that
 * vfio_pci_driver_test can drive edu-plus's DMA engine from a guest.
 *
 * This file is edu-plus's own; `vm --selftests` copies it into a scratch copy
 * of the selftests as lib/drivers/edu_plus/edu_plus.c and lists it in
 * libvfio.mk and in lib/vfio_pci_driver.c's driver table, exactly where the
 * library's in-tree drivers (ioat, dsa, ...) are listed. It is GPL-2.0-only
 * because it is linked into those GPL-2.0-only programs.
 *
 * The device (QEMU's edu, BAR0): a 4 KiB buffer at device address 0x40000
 * and one DMA channel: DMA_SRC 0x80, DMA_DST 0x88, DMA_COUNT 0x90,
 * DMA_CMD 0x98 (bit 0 run, bit 1 buffer-to-RAM, bit 2 interrupt when done;
 * run clears when the transfer ends). edu-plus adds DMA_ERROR at 0xa8: the
 * reason the last transfer was refused, 0 when it ran. So:
 *  - memcpy of up to 4 KiB is two transfers through the buffer: RAM to
 *    buffer, then buffer to RAM; a count of N repeats it N times;
 *  - a refused transfer (unmapped IOVA, beyond dma_mask, ...) is reported by
 *    memcpy_wait() as an error, read from DMA_ERROR;
 *  - send_msi() runs one small transfer with the interrupt bit: edu raises
 *    status bit 0x100 when it is done, which is an MSI once MSI is enabled,
 *    then acknowledges it so the next request raises a fresh one.
 *
 * One more thing lives here because this file is linked into every selftest:
 * the library picks the IOMMU mode of tests that do not iterate over all modes
 * (vfio_pci_device_test, and vfio_pci_driver_test's device probe) from its
 * global default_iommu_mode, "iommufd", with no option to change it. On a
 * kernel without CONFIG_IOMMUFD those could not run at all. When the
 * environment names a mode in EDU_PLUS_IOMMU_MODE, a constructor sets the
 * default to it before main() and says so; `vm --selftests` sets it to
 * vfio_type1v2_iommu only when the guest has no /dev/iommu.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <linux/errno.h>
#include <linux/io.h>

#include <libvfio.h>

#define EDU_VENDOR_ID		0x1234
#define EDU_DEVICE_ID		0x11e8
#define EDU_REG_ID		0x00
#define EDU_ID_VALUE		0x010000ed
#define EDU_REG_IRQ_STATUS	0x24
#define EDU_REG_IRQ_ACK		0x64
#define EDU_REG_DMA_SRC		0x80
#define EDU_REG_DMA_DST		0x88
#define EDU_REG_DMA_COUNT	0x90
#define EDU_REG_DMA_CMD		0x98
#define EDU_PLUS_REG_DMA_ERROR	0xa8

#define EDU_DMA_RUN		0x1
#define EDU_DMA_TO_RAM		0x2
#define EDU_DMA_IRQ		0x4
#define EDU_IRQ_DMA		0x100

#define EDU_BUFFER_ADDR		0x40000
#define EDU_BUFFER_SIZE		4096

/*
 * Copies one memcpy_start() may ask for. Each is two transfers of a few
 * trapped register accesses, a few milliseconds under TCG: 1024 keeps
 * memcpy_storm (60 s limit) to seconds.
 */
#define EDU_PLUS_MAX_COPIES	1024

/* A transfer that has not finished after this long is reported, not waited on forever. */
#define EDU_PLUS_DMA_TIMEOUT_S	10

/* Driver state, kept in driver->region (memory the device may DMA from). */
struct edu_plus_state {
	/* Source of the transfer send_msi() runs. */
	u64 msi_source;
	/* The memcpy in progress. */
	iova_t src;
	iova_t dst;
	u64 size;
	u64 count;
	u64 done;
	/* The leg running: RAM to buffer (false) or buffer to RAM (true). */
	bool to_ram;
};

static struct edu_plus_state *state_of(struct vfio_pci_device *device)
{
	return device->driver.region.vaddr;
}

static void *bar0(struct vfio_pci_device *device)
{
	return device->bars[0].vaddr;
}

static const char *dma_error_name(u32 code)
{
	switch (code) {
	case 1: return "bus mastering off";
	case 2: return "device range outside the buffer";
	case 3: return "beyond dma_mask";
	case 4: return "guest range not DMA-mapped";
	case 5: return "server error";
	default: return "unknown reason";
	}
}

static int edu_plus_probe(struct vfio_pci_device *device)
{
	if (!vfio_pci_device_match(device, EDU_VENDOR_ID, EDU_DEVICE_ID))
		return -EINVAL;

	VFIO_ASSERT_NOT_NULL(bar0(device));
	if (readl(bar0(device) + EDU_REG_ID) != EDU_ID_VALUE)
		return -EINVAL;

	/*
	 * QEMU's own edu reads all-ones at 0xa8; only edu-plus can report a
	 * refused transfer, which memcpy_wait() must be able to return.
	 */
	if (readl(bar0(device) + EDU_PLUS_REG_DMA_ERROR) == 0xffffffff)
		return -EINVAL;

	return 0;
}

/* Programs one transfer of `count` bytes and starts it. */
static void edu_plus_dma_start(struct vfio_pci_device *device, u64 src,
			       u64 dst, u64 count, u64 cmd)
{
	writeq(src, bar0(device) + EDU_REG_DMA_SRC);
	writeq(dst, bar0(device) + EDU_REG_DMA_DST);
	writeq(count, bar0(device) + EDU_REG_DMA_COUNT);
	writeq(cmd | EDU_DMA_RUN, bar0(device) + EDU_REG_DMA_CMD);
}

/* Waits for the running transfer; 0 when it happened, else -1 (and says why). */
static int edu_plus_dma_wait(struct vfio_pci_device *device)
{
	struct timespec start, now;
	u32 error;

	clock_gettime(CLOCK_MONOTONIC, &start);
	while (readq(bar0(device) + EDU_REG_DMA_CMD) & EDU_DMA_RUN) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - start.tv_sec > EDU_PLUS_DMA_TIMEOUT_S) {
			dev_err(device, "edu-plus: DMA still running after %d s\n",
				EDU_PLUS_DMA_TIMEOUT_S);
			return -1;
		}
	}

	error = readl(bar0(device) + EDU_PLUS_REG_DMA_ERROR);
	if (error) {
		dev_err(device, "edu-plus: DMA refused: DMA_ERROR %u (%s)\n",
			error, dma_error_name(error));
		return -1;
	}
	return 0;
}

static void edu_plus_init(struct vfio_pci_device *device)
{
	struct vfio_pci_driver *driver = &device->driver;

	VFIO_ASSERT_GE(driver->region.size, sizeof(struct edu_plus_state));

	vfio_pci_config_writew(device, PCI_COMMAND,
			       PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER |
			       PCI_COMMAND_INTX_DISABLE);

	/* Nothing pending from an earlier user, so the first MSI is ours. */
	writel(readl(bar0(device) + EDU_REG_IRQ_STATUS),
	       bar0(device) + EDU_REG_IRQ_ACK);

	vfio_pci_msi_enable(device, 0, 1);

	driver->msi = 0;
	driver->max_memcpy_size = EDU_BUFFER_SIZE;
	driver->max_memcpy_count = EDU_PLUS_MAX_COPIES;
}

static void edu_plus_remove(struct vfio_pci_device *device)
{
	vfio_pci_msi_disable(device);
}

static void edu_plus_memcpy_start(struct vfio_pci_device *device,
				  iova_t src, iova_t dst, u64 size, u64 count)
{
	struct edu_plus_state *st = state_of(device);

	*st = (struct edu_plus_state){
		.src = src, .dst = dst, .size = size, .count = count,
		.done = 0, .to_ram = false,
	};
	edu_plus_dma_start(device, src, EDU_BUFFER_ADDR, size, 0);
}

/* Drives the copies memcpy_start() began: each leg starts when the previous one ends. */
static int edu_plus_memcpy_wait(struct vfio_pci_device *device)
{
	struct edu_plus_state *st = state_of(device);

	for (;;) {
		if (edu_plus_dma_wait(device))
			return -1;

		if (!st->to_ram) {
			st->to_ram = true;
			edu_plus_dma_start(device, EDU_BUFFER_ADDR, st->dst,
					   st->size, EDU_DMA_TO_RAM);
			continue;
		}

		if (++st->done == st->count)
			return 0;

		st->to_ram = false;
		edu_plus_dma_start(device, st->src, EDU_BUFFER_ADDR, st->size, 0);
	}
}

static void edu_plus_send_msi(struct vfio_pci_device *device)
{
	struct edu_plus_state *st = state_of(device);

	edu_plus_dma_start(device, to_iova(device, &st->msi_source),
			   EDU_BUFFER_ADDR, sizeof(st->msi_source), EDU_DMA_IRQ);
	VFIO_ASSERT_EQ(edu_plus_dma_wait(device), 0);

	/* The MSI went out when the transfer ended; clear the status it left. */
	writel(EDU_IRQ_DMA, bar0(device) + EDU_REG_IRQ_ACK);
}

static const char *const edu_plus_iommu_modes[] = {
	MODE_VFIO_TYPE1_IOMMU, MODE_VFIO_TYPE1V2_IOMMU,
	MODE_IOMMUFD_COMPAT_TYPE1, MODE_IOMMUFD_COMPAT_TYPE1V2, MODE_IOMMUFD,
};

static void __attribute__((constructor)) edu_plus_default_iommu_mode(void)
{
	const char *mode = getenv("EDU_PLUS_IOMMU_MODE");
	size_t i;

	if (mode == NULL || *mode == '\0')
		return;
	for (i = 0; i < ARRAY_SIZE(edu_plus_iommu_modes); i++) {
		if (strcmp(mode, edu_plus_iommu_modes[i]) == 0) {
			default_iommu_mode = edu_plus_iommu_modes[i];
			printf("# edu-plus: default IOMMU mode %s (EDU_PLUS_IOMMU_MODE)\n", mode);
			fflush(stdout);
			return;
		}
	}
	fprintf(stderr, "EDU_PLUS_IOMMU_MODE=%s is not an IOMMU mode of this library\n", mode);
	exit(1);
}

struct vfio_pci_driver_ops edu_plus_ops = {
	.name = "edu_plus",
	.probe = edu_plus_probe,
	.init = edu_plus_init,
	.remove = edu_plus_remove,
	.memcpy_start = edu_plus_memcpy_start,
	.memcpy_wait = edu_plus_memcpy_wait,
	.send_msi = edu_plus_send_msi,
};
