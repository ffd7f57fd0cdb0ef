/*
 * c-peer: the benchmarks' C reference, a minimal vfio-user SERVER of our own in plain C.
 * Blocking, one thread, one client at a time, like the reference C designs: read a message's
 * header (with any fds) then its body, handle it, send the reply, repeat.
 *
 *   c-peer SOCKET [--max-dma-maps N] [--bar1-mib N]
 *       listen on SOCKET (a stale file is replaced), print "ready", serve clients one after
 *       another until killed. Exit 2 on a usage error, 1 when the socket cannot be set up.
 *
 * It serves just what QEMU's vfio-user-pci client needs to attach a device with edu's
 * identification (1234:11e8, class 00ff00, revision 0x10):
 *   - BAR0, 1 MiB, trapped: 0x00 reads the identification 0x010000ed, 0x04 reads back the
 *     complement of what was last written there (edu's liveness check); the rest reads as
 *     all-ones and ignores writes.
 *   - BAR1, 64 MiB (--bar1-mib) of prefetchable 64-bit RAM in a sparse memfd that the region
 *     info hands to the client to mmap (so guest accesses to it never reach us).
 *   - config space (256 bytes, no capabilities) with BAR sizing through write masks; INTx pin A.
 *   - VERSION, DEVICE_GET_INFO, GET_REGION_INFO, GET_IRQ_INFO, SET_IRQS (fds closed),
 *     REGION_READ/WRITE, DMA_MAP/UNMAP (recorded, never mmapped: nothing here does DMA),
 *     DEVICE_RESET; every other command gets an ENOSYS error reply.
 *
 * The DMA map table is c-peer-dma.c. Built by bench/c-peer.ts with `gcc -O2`; not part of
 * the server under test.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "c-peer.h"

enum {
	HEADER_SIZE = 16,
	MAX_FDS = 16,			/* what we advertise as max_msg_fds */
	MAX_XFER = 1 << 20,		/* max_data_xfer_size */
	/* The largest request: a REGION_WRITE of MAX_XFER bytes after its 16-byte header. */
	MAX_MSG = HEADER_SIZE + 16 + MAX_XFER,
	/* QEMU's client refuses a VERSION reply advertising more than this (see docs/qemu-client.md). */
	QEMU_MAX_DMA_MAPS = 65535,
	PAGE = 4096,
};

enum command {
	CMD_VERSION = 1, CMD_DMA_MAP = 2, CMD_DMA_UNMAP = 3, CMD_DEVICE_GET_INFO = 4,
	CMD_GET_REGION_INFO = 5, CMD_GET_IRQ_INFO = 7, CMD_SET_IRQS = 8, CMD_REGION_READ = 9,
	CMD_REGION_WRITE = 10, CMD_DEVICE_RESET = 13,
};

enum { TYPE_MASK = 0xf, TYPE_COMMAND = 0, TYPE_REPLY = 1, FLAG_NO_REPLY = 0x10, FLAG_ERROR = 0x20 };

/* vfio-pci numbering and the flags of struct vfio_device_info / vfio_region_info / vfio_irq_info. */
enum { REGION_BAR0 = 0, REGION_BAR1 = 1, REGION_CONFIG = 7, NUM_REGIONS = 9, NUM_IRQS = 5 };
enum { DEV_RESET = 1, DEV_PCI = 2 };
enum { REG_READ = 1, REG_WRITE = 2, REG_MMAP = 4 };
enum { IRQ_EVENTFD = 1, IRQ_MASKABLE = 2, IRQ_AUTOMASKED = 4 };
enum { UNMAP_DIRTY_BITMAP = 1, UNMAP_ALL = 2 };

#define EDU_ID 0x010000edu
#define BAR0_SIZE (1u << 20)
#define CONFIG_SIZE 256

/* ---- little-endian field access (the hosts we support are little-endian) ---- */

static uint16_t get16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

/* ---- the device ---- */

static uint32_t liveness;
static uint8_t config[CONFIG_SIZE];
/* Which config bits a write may change: BAR masks come from the sizes (that is BAR sizing). */
static uint8_t config_wmask[CONFIG_SIZE];
static int bar1_fd = -1;
static uint64_t bar1_size = 64ull << 20;

static void config_init(void)
{
	uint32_t bar0_mask = ~(BAR0_SIZE - 1);
	uint64_t bar1_mask = ~(bar1_size - 1);

	memset(config, 0, sizeof(config));
	memset(config_wmask, 0, sizeof(config_wmask));
	put16(config + 0x00, 0x1234);			/* vendor */
	put16(config + 0x02, 0x11e8);			/* device */
	config[0x08] = 0x10;				/* revision */
	config[0x0a] = 0xff;				/* sub class: class code 00ff00 */
	put32(config + 0x10, 0);			/* BAR0: 32-bit memory */
	put32(config + 0x14, 0xc);			/* BAR1: 64-bit prefetchable memory */
	put16(config + 0x2c, 0x1af4);			/* QEMU's subsystem ids, as edu */
	put16(config + 0x2e, 0x1100);
	config[0x3d] = 1;				/* interrupt pin A */
	/* command: I/O, memory, bus master, parity, SERR, INTx disable */
	put16(config_wmask + 0x04, 0x0547);
	put32(config_wmask + 0x10, bar0_mask);
	put32(config_wmask + 0x14, (uint32_t)bar1_mask & ~0xfu);
	put32(config_wmask + 0x18, (uint32_t)(bar1_mask >> 32));
	config_wmask[0x3c] = 0xff;			/* interrupt line */
}

static void device_reset(void)
{
	liveness = 0;
	put16(config + 0x04, 0);
}

/* BAR0 as edu's registers: byte i of the 32-bit register that holds it. */
static uint8_t bar0_byte(uint64_t offset)
{
	uint32_t reg = (offset & ~3ull) == 0 ? EDU_ID : (offset & ~3ull) == 4 ? ~liveness : 0xffffffffu;

	return (uint8_t)(reg >> (8 * (offset & 3)));
}

static void bar0_write_byte(uint64_t offset, uint8_t v)
{
	unsigned shift = 8 * (offset & 3);

	if ((offset & ~3ull) == 4)
		liveness = (liveness & ~(0xffu << shift)) | ((uint32_t)v << shift);
}

/* ---- messages ---- */

static uint8_t msg[MAX_MSG];
static uint8_t reply[HEADER_SIZE + 16 + MAX_XFER];
static int fds[MAX_FDS];
static int nfds;

static void close_fds(void)
{
	for (int i = 0; i < nfds; i++)
		close(fds[i]);
	nfds = 0;
}

/* Reads exactly n bytes, keeping any fds that come along. 1: done, 0: clean EOF, -1: error. */
static int read_full(int sock, uint8_t *buf, size_t n)
{
	union { struct cmsghdr align; char space[CMSG_SPACE(MAX_FDS * sizeof(int))]; } control;
	size_t got = 0;

	while (got < n) {
		struct iovec iov = { buf + got, n - got };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
				     .msg_control = control.space, .msg_controllen = sizeof(control.space) };
		ssize_t r = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r == 0 && got == 0 ? 0 : -1;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
				continue;
			size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			int *in = (int *)CMSG_DATA(c);

			for (size_t i = 0; i < k; i++) {
				if (nfds < MAX_FDS)
					fds[nfds++] = in[i];
				else
					close(in[i]);
			}
		}
		if (mh.msg_flags & MSG_CTRUNC)
			return -1;
		got += (size_t)r;
	}
	return 1;
}

static int send_reply(int sock, const uint8_t *req, const uint8_t *body, size_t len, uint32_t error, int fd)
{
	union { struct cmsghdr align; char space[CMSG_SPACE(sizeof(int))]; } control;
	uint8_t header[HEADER_SIZE];
	struct iovec iov[2] = { { header, HEADER_SIZE }, { (void *)body, len } };
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = len ? 2 : 1 };

	if (get32(req + 8) & FLAG_NO_REPLY)
		return 0;
	put16(header, get16(req));
	put16(header + 2, get16(req + 2));
	put32(header + 4, HEADER_SIZE + (uint32_t)len);
	put32(header + 8, TYPE_REPLY | (error ? FLAG_ERROR : 0));
	put32(header + 12, error);
	if (fd >= 0) {
		memset(&control, 0, sizeof(control));
		mh.msg_control = control.space;
		mh.msg_controllen = sizeof(control.space);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	for (;;) {
		ssize_t r = sendmsg(sock, &mh, MSG_NOSIGNAL);

		if (r < 0 && errno == EINTR)
			continue;
		/* A blocking stream socket sends it all or fails. */
		return r == (ssize_t)(HEADER_SIZE + len) ? 0 : -1;
	}
}

static int handle_version(const uint8_t *body, uint32_t len, size_t *out)
{
	int n;

	if (len < 4)
		return EINVAL;
	if (get16(body) != 0)
		return ENOTSUP;
	/* QEMU speaks 0.0 and rejects a higher minor; its capabilities bound nothing we send. */
	put16(reply + HEADER_SIZE, 0);
	put16(reply + HEADER_SIZE + 2, 0);
	n = snprintf((char *)reply + HEADER_SIZE + 4, 256,
		     "{\"capabilities\":{\"max_msg_fds\":%d,\"max_data_xfer_size\":%d,"
		     "\"pgsizes\":%d,\"max_dma_maps\":%u}}",
		     MAX_FDS, MAX_XFER, PAGE,
		     max_dma_maps < QEMU_MAX_DMA_MAPS ? max_dma_maps : QEMU_MAX_DMA_MAPS);
	*out = 4 + (size_t)n + 1;		/* the JSON ends with its NUL */
	return 0;
}

static uint64_t region_size(uint32_t index)
{
	return index == REGION_BAR0 ? BAR0_SIZE : index == REGION_BAR1 ? bar1_size
	       : index == REGION_CONFIG ? CONFIG_SIZE : 0;
}

/*
 * The index of a region or irq info request (argsz u32, flags u32, index u32, ...): -1 when
 * the body or its argsz is shorter than the structure, or the index is not below count.
 */
static int info_index(const uint8_t *body, uint32_t len, uint32_t size, uint32_t count)
{
	if (len < size || get32(body) < size || get32(body + 8) >= count)
		return -1;
	return (int)get32(body + 8);
}

static int handle_region_info(const uint8_t *body, uint32_t len, size_t *out, int *fd)
{
	uint8_t *r = reply + HEADER_SIZE;
	int index = info_index(body, len, 32, NUM_REGIONS);

	if (index < 0)
		return EINVAL;
	memset(r, 0, 32);
	put32(r, 32);
	put32(r + 4, region_size(index) ? REG_READ | REG_WRITE | (index == REGION_BAR1 ? REG_MMAP : 0) : 0);
	put32(r + 8, (uint32_t)index);
	put64(r + 16, region_size((uint32_t)index));
	if (index == REGION_BAR1)
		*fd = bar1_fd;
	*out = 32;
	return 0;
}

static int handle_irq_info(const uint8_t *body, uint32_t len, size_t *out)
{
	uint8_t *r = reply + HEADER_SIZE;
	int index = info_index(body, len, 16, NUM_IRQS);

	if (index < 0)
		return EINVAL;
	/* INTx only: without an MSI capability in config space QEMU offers the guest nothing else. */
	put32(r, 16);
	put32(r + 4, IRQ_EVENTFD | (index == 0 ? IRQ_MASKABLE | IRQ_AUTOMASKED : 0));
	put32(r + 8, index);
	put32(r + 12, index == 0 ? 1 : 0);
	*out = 16;
	return 0;
}

/* REGION_READ/WRITE: offset u64, region u32, count u32, then (write) the data. */
static int handle_access(int write, const uint8_t *body, uint32_t len, size_t *out)
{
	uint64_t offset, size;
	uint32_t index, count;
	uint8_t *data = reply + HEADER_SIZE + 16;
	const uint8_t *in = body + 16;

	if (len < 16)
		return EINVAL;
	offset = get64(body);
	index = get32(body + 8);
	count = get32(body + 12);
	size = index < NUM_REGIONS ? region_size(index) : 0;
	if (count > MAX_XFER || offset > size || count > size - offset || (write && len - 16 < count))
		return EINVAL;
	memcpy(reply + HEADER_SIZE, body, 16);
	*out = 16 + (write ? 0 : count);
	if (index == REGION_BAR0) {
		for (uint32_t i = 0; i < count; i++) {
			if (write)
				bar0_write_byte(offset + i, in[i]);
			else
				data[i] = bar0_byte(offset + i);
		}
	} else if (index == REGION_CONFIG) {
		for (uint32_t i = 0; i < count; i++) {
			uint8_t *b = config + offset + i, m = config_wmask[offset + i];

			if (write)
				*b = (uint8_t)((*b & ~m) | (in[i] & m));
			else
				data[i] = *b;
		}
	} else {
		/* BAR1 through the socket (rare: QEMU maps it); the memfd is the RAM. */
		ssize_t r = write ? pwrite(bar1_fd, in, count, (off_t)offset) : pread(bar1_fd, data, count, (off_t)offset);

		if (r != (ssize_t)count)
			return EIO;
	}
	return 0;
}

/* DMA_MAP: argsz u32, flags u32, offset u64, address u64, size u64 (+ at most one fd). */
static int handle_dma_map(const uint8_t *body, uint32_t len)
{
	int fd = -1, r;

	if (len < 32 || get32(body) < 32 || nfds > 1)
		return EINVAL;
	if (nfds == 1) {
		fd = fds[0];
		nfds = 0;			/* dma_map owns it now */
	}
	r = dma_map(get64(body + 16), get64(body + 24), get64(body + 8), fd);
	return r < 0 ? -r : 0;
}

/* DMA_UNMAP: argsz u32, flags u32, address u64, size u64; the reply echoes it. */
static int handle_dma_unmap(const uint8_t *body, uint32_t len, size_t *out)
{
	uint32_t flags;
	int r;

	if (len < 24 || get32(body) < 24)
		return EINVAL;
	flags = get32(body + 4);
	if (flags & ~(uint32_t)UNMAP_ALL)
		return flags & UNMAP_DIRTY_BITMAP ? ENOTSUP : EINVAL;
	if (flags & UNMAP_ALL) {
		if (get64(body + 8) || get64(body + 16))
			return EINVAL;
		dma_unmap_all();
		r = 0;
	} else {
		r = dma_unmap(get64(body + 8), get64(body + 16));
	}
	if (r < 0)
		return -r;
	memcpy(reply + HEADER_SIZE, body, 24);
	*out = 24;
	return 0;
}

/* Serves one client until it disconnects or breaks the framing. */
static void serve(int sock)
{
	for (;;) {
		uint32_t size, flags, error = 0;
		uint16_t command;
		size_t out = 0;
		int fd = -1, r;

		nfds = 0;
		r = read_full(sock, msg, HEADER_SIZE);
		if (r <= 0)
			break;
		size = get32(msg + 4);
		flags = get32(msg + 8);
		command = get16(msg + 2);
		/* A size we cannot frame, or a reply we never asked for: the stream is lost. */
		if (size < HEADER_SIZE || size > MAX_MSG || (flags & TYPE_MASK) != TYPE_COMMAND)
			break;
		if (size > HEADER_SIZE && read_full(sock, msg + HEADER_SIZE, size - HEADER_SIZE) <= 0)
			break;
		const uint8_t *body = msg + HEADER_SIZE;
		uint32_t len = size - HEADER_SIZE;

		switch (command) {
		case CMD_VERSION: error = handle_version(body, len, &out); break;
		case CMD_DMA_MAP: error = handle_dma_map(body, len); break;
		case CMD_DMA_UNMAP: error = handle_dma_unmap(body, len, &out); break;
		case CMD_DEVICE_GET_INFO:
			if (len < 16 || get32(body) < 16) {
				error = EINVAL;
				break;
			}
			put32(reply + HEADER_SIZE, 16);
			put32(reply + HEADER_SIZE + 4, DEV_PCI | DEV_RESET);
			put32(reply + HEADER_SIZE + 8, NUM_REGIONS);
			put32(reply + HEADER_SIZE + 12, NUM_IRQS);
			out = 16;
			break;
		case CMD_GET_REGION_INFO: error = handle_region_info(body, len, &out, &fd); break;
		case CMD_GET_IRQ_INFO: error = handle_irq_info(body, len, &out); break;
		case CMD_SET_IRQS:
			/* Interrupts are never raised here: accept the eventfds and let them go. */
			error = len < 20 || get32(body + 8) >= NUM_IRQS ? EINVAL : 0;
			break;
		case CMD_REGION_READ: error = handle_access(0, body, len, &out); break;
		case CMD_REGION_WRITE: error = handle_access(1, body, len, &out); break;
		case CMD_DEVICE_RESET: device_reset(); break;
		default: error = ENOSYS; break;
		}
		close_fds();
		if (send_reply(sock, msg, reply + HEADER_SIZE, error ? 0 : out, error, error ? -1 : fd) < 0)
			break;
	}
	close_fds();
	dma_unmap_all();
}

static int usage(const char *why)
{
	fprintf(stderr, "c-peer: %s\nusage: c-peer SOCKET [--max-dma-maps N] [--bar1-mib N]\n", why);
	return 2;
}

int main(int argc, char **argv)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int listener;

	if (argc < 2 || strlen(argv[1]) >= sizeof(addr.sun_path))
		return usage(argc < 2 ? "no socket path" : "socket path too long");
	for (int i = 2; i < argc; i++) {
		char *end;
		unsigned long long v = i + 1 < argc ? strtoull(argv[i + 1], &end, 0) : 0;

		if (i + 1 >= argc || *end || v == 0)
			return usage("each option needs a positive number");
		if (!strcmp(argv[i], "--max-dma-maps") && v < UINT32_MAX)
			max_dma_maps = (uint32_t)v;
		else if (!strcmp(argv[i], "--bar1-mib") && v <= (1ull << 20) && !(v & (v - 1)))
			bar1_size = v << 20;
		else
			return usage("unknown option, or --bar1-mib not a power of two");
		i++;
	}
	config_init();
	bar1_fd = memfd_create("c-peer-bar1", MFD_CLOEXEC);
	if (bar1_fd < 0 || ftruncate(bar1_fd, (off_t)bar1_size) < 0) {
		perror("c-peer: BAR1 memfd");
		return 1;
	}
	memcpy(addr.sun_path, argv[1], strlen(argv[1]) + 1);
	unlink(addr.sun_path);
	listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(listener, 1) < 0) {
		perror("c-peer: listen");
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		int sock = accept4(listener, NULL, NULL, SOCK_CLOEXEC);

		if (sock < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			perror("c-peer: accept");
			return 1;
		}
		serve(sock);
		close(sock);
	}
}
