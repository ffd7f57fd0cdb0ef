/*
 * vfio_util_irq.c - a device's interrupts: GET_IRQ_INFO, SET_IRQS of
 * vector 0 with an eventfd, and waiting on that eventfd (see vfio_util.h).
 */
#include "vfio_util.h"
#include "vfio_util_internal.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

int vu_irq_info(int devfd, uint32_t index, struct vfio_irq_info *info)
{
	memset(info, 0, sizeof(*info));
	info->argsz = sizeof(*info);
	info->index = index;
	if (ioctl(devfd, VFIO_DEVICE_GET_IRQ_INFO, info)) {
		vu_set_errno_error("ioctl(VFIO_DEVICE_GET_IRQ_INFO, index %u)",
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
		vu_set_errno_error("ioctl(VFIO_DEVICE_SET_IRQS, %s, %s)",
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
		vu_set_errno_error("poll(eventfd)");
		return -1;
	}
	if (ret == 0)
		return 0;
	if (!(pfd.revents & POLLIN)) {
		vu_set_error("poll(eventfd): revents 0x%x without POLLIN",
			     pfd.revents);
		return -1;
	}
	n = read(efd, count, sizeof(*count));
	if (n < 0) {
		vu_set_errno_error("read(eventfd)");
		return -1;
	}
	if (n != sizeof(*count)) {
		vu_set_error("read(eventfd): short read of %zd bytes", n);
		return -1;
	}
	return 1;
}
