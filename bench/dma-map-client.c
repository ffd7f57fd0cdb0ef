/*
 * The client side of the dma suite's DMA_MAP row: what a vIOMMU makes QEMU do when a guest pins
 * memory for a device, one DMA_MAP per 4 KiB page, each passing the guest-RAM memfd, then the
 * same pages unmapped one DMA_UNMAP each. Plain blocking C, so the figures are the server's.
 *
 *   dma-map-client SOCKET COUNT DEPTH OUT
 *       connect, negotiate VERSION, create a memfd of COUNT × 4 KiB sealed against shrinking and
 *       growing (as QEMU's memory-backend-memfd seals guest RAM), then:
 *       - map: COUNT DMA_MAPs, page i at IOVA 0x100000000 + i × 4 KiB, file offset i × 4 KiB,
 *         read/write, each with the memfd as its fd;
 *       - unmap: COUNT DMA_UNMAPs of one page each, in the same order.
 *       At most DEPTH requests are in flight (QEMU waits for each reply when a vIOMMU maps: 1).
 *       Any error reply stops the run: its errno and the page are printed, exit status 1.
 *       Writes two little-endian doubles to OUT: the map phase's and the unmap phase's time in
 *       nanoseconds (CLOCK_MONOTONIC).
 *
 * Built by bench/dma-maps.ts with `gcc -O2`; not part of the server.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

enum {
	HEADER_SIZE = 16,
	MAP_SIZE = HEADER_SIZE + 32,	/* argsz, flags, offset, iova, size */
	UNMAP_SIZE = HEADER_SIZE + 24,	/* argsz, flags, iova, size; the reply echoes it */
	CMD_VERSION = 1,
	CMD_DMA_MAP = 2,
	CMD_DMA_UNMAP = 3,
	FLAG_REPLY = 1,
	TYPE_MASK = 0xf,
	FLAG_ERROR = 0x20,
	PAGE = 4096,
	MAP_READ_WRITE = 3,
};

static const uint64_t IOVA_BASE = 0x100000000ull;

static void die(const char *what)
{
	fprintf(stderr, "dma-map-client: %s: %s\n", what, errno ? strerror(errno) : "protocol error");
	exit(1);
}

static void put16(unsigned char *p, uint16_t v) { memcpy(p, &v, 2); }
static void put32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }
static uint16_t get16(const unsigned char *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint32_t get32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }

static void put_header(unsigned char *p, uint16_t id, uint16_t cmd, uint32_t size)
{
	put16(p, id);
	put16(p + 2, cmd);
	put32(p + 4, size);
	put32(p + 8, 0);
	put32(p + 12, 0);
}

/* Sends one whole message, with `fd` (when not -1) in the first sendmsg's SCM_RIGHTS. */
static void send_msg(int sock, const unsigned char *buf, size_t n, int fd)
{
	union { struct cmsghdr align; char space[CMSG_SPACE(sizeof(int))]; } control;
	while (n > 0) {
		struct iovec iov = { (void *)buf, n };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
		if (fd >= 0) {
			msg.msg_control = control.space;
			msg.msg_controllen = sizeof(control.space);
			struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
			c->cmsg_level = SOL_SOCKET;
			c->cmsg_type = SCM_RIGHTS;
			c->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(c), &fd, sizeof(int));
		}
		ssize_t r = sendmsg(sock, &msg, MSG_NOSIGNAL);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			die("sendmsg");
		}
		fd = -1; /* the fd went with the first byte */
		buf += r;
		n -= (size_t)r;
	}
}

static void recv_exact(int sock, unsigned char *buf, size_t n)
{
	while (n > 0) {
		ssize_t r = recv(sock, buf, n, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			die("recv");
		if (r == 0) {
			errno = 0;
			die("the server closed the connection");
		}
		buf += r;
		n -= (size_t)r;
	}
}

/* Reads one reply (header and body, at most `room` bytes) and checks it answers `cmd`. */
static void recv_reply(int sock, uint16_t cmd, long page)
{
	unsigned char msg[256];
	recv_exact(sock, msg, HEADER_SIZE);
	uint32_t size = get32(msg + 4), flags = get32(msg + 8);
	errno = 0;
	if (size < HEADER_SIZE || size > sizeof(msg))
		die("reply of an unexpected size");
	recv_exact(sock, msg + HEADER_SIZE, size - HEADER_SIZE);
	if ((flags & TYPE_MASK) != FLAG_REPLY || get16(msg + 2) != cmd)
		die("unexpected reply");
	if (flags & FLAG_ERROR) {
		fprintf(stderr, "dma-map-client: %s of page %ld refused: %s\n", cmd == CMD_DMA_MAP ? "DMA_MAP" : "DMA_UNMAP",
			page, strerror((int)get32(msg + 12)));
		exit(1);
	}
}

static void negotiate(int sock)
{
	static const char json[] = "{\"capabilities\":{\"max_msg_fds\":16,\"max_data_xfer_size\":1048576}}";
	unsigned char msg[HEADER_SIZE + 4 + sizeof(json)] = { 0 };
	put_header(msg, 0, CMD_VERSION, sizeof(msg));
	memcpy(msg + HEADER_SIZE + 4, json, sizeof(json)); /* major 0, minor 0, then the JSON */
	send_msg(sock, msg, sizeof(msg), -1);
	recv_reply(sock, CMD_VERSION, -1);
}

static double now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

/* One phase: `count` requests of command `cmd`, at most `depth` in flight. */
static void phase(int sock, uint16_t cmd, long count, long depth, int ram, uint16_t *id)
{
	unsigned char msg[MAP_SIZE] = { 0 };
	long sent = 0, got = 0;
	while (got < count) {
		while (sent < count && sent - got < depth) {
			uint64_t page = (uint64_t)sent;
			if (cmd == CMD_DMA_MAP) {
				put_header(msg, (*id)++, CMD_DMA_MAP, MAP_SIZE);
				put32(msg + HEADER_SIZE, 32);
				put32(msg + HEADER_SIZE + 4, MAP_READ_WRITE);
				put64(msg + HEADER_SIZE + 8, page * PAGE);
				put64(msg + HEADER_SIZE + 16, IOVA_BASE + page * PAGE);
				put64(msg + HEADER_SIZE + 24, PAGE);
				send_msg(sock, msg, MAP_SIZE, ram);
			} else {
				put_header(msg, (*id)++, CMD_DMA_UNMAP, UNMAP_SIZE);
				put32(msg + HEADER_SIZE, 24);
				put32(msg + HEADER_SIZE + 4, 0);
				put64(msg + HEADER_SIZE + 8, IOVA_BASE + page * PAGE);
				put64(msg + HEADER_SIZE + 16, PAGE);
				send_msg(sock, msg, UNMAP_SIZE, -1);
			}
			sent++;
		}
		recv_reply(sock, cmd, got);
		got++;
	}
}

int main(int argc, char **argv)
{
	if (argc != 5 || atol(argv[2]) < 1 || atol(argv[3]) < 1) {
		fprintf(stderr, "usage: dma-map-client SOCKET COUNT DEPTH OUT\n");
		return 2;
	}
	long count = atol(argv[2]), depth = atol(argv[3]);

	int ram = memfd_create("dma-map-client-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (ram < 0 || ftruncate(ram, (off_t)count * PAGE) < 0 || fcntl(ram, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0)
		die("guest RAM memfd");

	struct sockaddr_un a = { .sun_family = AF_UNIX };
	if (strlen(argv[1]) >= sizeof(a.sun_path)) {
		errno = ENAMETOOLONG;
		die(argv[1]);
	}
	strcpy(a.sun_path, argv[1]);
	int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (sock < 0 || connect(sock, (struct sockaddr *)&a, sizeof(a)) < 0)
		die("connect");
	negotiate(sock);

	uint16_t id = 1;
	double times[2], t0 = now_ns();
	phase(sock, CMD_DMA_MAP, count, depth, ram, &id);
	times[0] = now_ns() - t0;
	t0 = now_ns();
	phase(sock, CMD_DMA_UNMAP, count, depth, ram, &id);
	times[1] = now_ns() - t0;
	close(sock);
	close(ram);

	FILE *f = fopen(argv[4], "wb");
	if (!f || fwrite(times, sizeof(double), 2, f) != 2 || fclose(f) != 0)
		die(argv[4]);
	return 0;
}
