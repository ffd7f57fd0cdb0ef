/*
 * The C floor for bench/host.ts: the round trip of a 4-byte vfio-user REGION_READ (a 32-byte
 * request, a 36-byte reply) over a Unix stream socket, in plain blocking C.
 *
 *   c-echo server SOCKET
 *       listen on SOCKET, print "ready", serve one client until it disconnects, then exit.
 *       Each request must be a REGION_READ header + body (32 bytes); the reply copies its id,
 *       command and body and appends the 4 bytes of edu's identification register.
 *   c-echo client SOCKET WARMUP N OUT [--version]
 *       connect, send WARMUP unrecorded REGION_READs, then N timed ones; write the N round-trip
 *       times (nanoseconds, CLOCK_MONOTONIC) to OUT as little-endian doubles. --version first
 *       negotiates VERSION, which a real vfio-user server (ours) requires; the echo server does not.
 *   c-echo pipeline SOCKET DEPTH WARMUP N OUT [--version]
 *       the same requests, DEPTH in flight: send DEPTH back to back, then send one more for
 *       each reply read, until WARMUP unrecorded and then N timed replies have come back (each
 *       phase drains before the next). Writes one double to OUT: the N timed replies' total
 *       time in nanoseconds (messages per second = N / total).
 *
 * Both sides do what a competent vfio-user peer does: blocking recvmsg with room for fds
 * (closing any that arrive, since none are expected here) and sendmsg with MSG_NOSIGNAL.
 * Built by bench/host.ts with `gcc -O2`; not part of the server.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

enum {
	HEADER_SIZE = 16,
	REQUEST_SIZE = 32,		/* header + offset u64, region u32, count u32 */
	REPLY_SIZE = 36,		/* the same + 4 data bytes */
	CMD_VERSION = 1,
	CMD_REGION_READ = 9,
	FLAG_REPLY = 1,
	TYPE_MASK = 0xf,
	FLAG_ERROR = 0x20,
};

/* edu's identification register (BAR0 offset 0), little-endian: 0x010000ed. */
static const unsigned char EDU_ID[4] = { 0xed, 0x00, 0x00, 0x01 };

static void die(const char *what)
{
	fprintf(stderr, "c-echo: %s: %s\n", what, errno ? strerror(errno) : "protocol error");
	exit(1);
}

static uint16_t get16(const unsigned char *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint32_t get32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static void put16(unsigned char *p, uint16_t v) { memcpy(p, &v, 2); }
static void put32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }

static void put_header(unsigned char *p, uint16_t id, uint16_t cmd, uint32_t size, uint32_t flags)
{
	put16(p, id);
	put16(p + 2, cmd);
	put32(p + 4, size);
	put32(p + 8, flags);
	put32(p + 12, 0);
}

/* Reads exactly n bytes. Returns 0 on a clean EOF before the first byte, 1 when complete. */
static int recv_exact(int fd, unsigned char *buf, size_t n)
{
	union { struct cmsghdr align; char space[CMSG_SPACE(16 * sizeof(int))]; } control;
	size_t got = 0;
	while (got < n) {
		struct iovec iov = { buf + got, n - got };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
				      .msg_control = control.space, .msg_controllen = sizeof(control.space) };
		ssize_t r = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			die("recvmsg");
		}
		if (r == 0) {
			if (got == 0)
				return 0;
			errno = 0;
			die("peer closed in the middle of a message");
		}
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
				continue;
			int nfds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (int i = 0; i < nfds; i++) {
				int fd_in;
				memcpy(&fd_in, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
				close(fd_in);
			}
		}
		got += (size_t)r;
	}
	return 1;
}

static void send_all(int fd, const unsigned char *buf, size_t n)
{
	while (n > 0) {
		struct iovec iov = { (void *)buf, n };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
		ssize_t r = sendmsg(fd, &msg, MSG_NOSIGNAL);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			die("sendmsg");
		}
		buf += r;
		n -= (size_t)r;
	}
}

static struct sockaddr_un address(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(a.sun_path)) {
		errno = ENAMETOOLONG;
		die(path);
	}
	strcpy(a.sun_path, path);
	return a;
}

static int serve(const char *path)
{
	struct sockaddr_un a = address(path);
	int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		die("socket");
	unlink(path);
	if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0)
		die("bind");
	if (listen(lfd, 1) < 0)
		die("listen");
	printf("ready\n");
	fflush(stdout);
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		die("accept4");

	unsigned char req[REQUEST_SIZE], rep[REPLY_SIZE];
	while (recv_exact(fd, req, sizeof(req))) {
		if (get16(req + 2) != CMD_REGION_READ || get32(req + 4) != REQUEST_SIZE) {
			errno = 0;
			die("expected a 32-byte REGION_READ");
		}
		put_header(rep, get16(req), CMD_REGION_READ, REPLY_SIZE, FLAG_REPLY);
		memcpy(rep + HEADER_SIZE, req + HEADER_SIZE, REQUEST_SIZE - HEADER_SIZE);
		memcpy(rep + REQUEST_SIZE, EDU_ID, sizeof(EDU_ID));
		send_all(fd, rep, sizeof(rep));
	}
	close(fd);
	close(lfd);
	unlink(path);
	return 0;
}

/* VERSION 0.0 with no capabilities; the reply's JSON is read and ignored. */
static void negotiate(int fd)
{
	static const char json[] = "{}";
	unsigned char msg[HEADER_SIZE + 4 + sizeof(json)] = { 0 };
	put_header(msg, 0, CMD_VERSION, sizeof(msg), 0);
	memcpy(msg + HEADER_SIZE + 4, json, sizeof(json)); /* major u16 0, minor u16 0, "{}\0" */
	send_all(fd, msg, sizeof(msg));

	unsigned char hdr[HEADER_SIZE], rest[4096];
	if (!recv_exact(fd, hdr, sizeof(hdr)))
		die("server closed before the VERSION reply");
	uint32_t size = get32(hdr + 4), flags = get32(hdr + 8);
	errno = 0;
	if ((flags & TYPE_MASK) != FLAG_REPLY || (flags & FLAG_ERROR) || get16(hdr + 2) != CMD_VERSION)
		die("VERSION was refused");
	if (size < HEADER_SIZE || size - HEADER_SIZE > sizeof(rest))
		die("VERSION reply has an unexpected size");
	if (size > HEADER_SIZE && !recv_exact(fd, rest, size - HEADER_SIZE))
		die("server closed in the VERSION reply");
}

static double now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static int client(const char *path, long warmup, long n, const char *out, int version)
{
	struct sockaddr_un a = address(path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket");
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		die("connect");
	if (version)
		negotiate(fd);

	double *times = malloc((size_t)n * sizeof(double));
	if (!times)
		die("malloc");
	unsigned char req[REQUEST_SIZE] = { 0 }, rep[REPLY_SIZE];
	put32(req + HEADER_SIZE + 12, 4); /* offset 0, region 0 (BAR0), count 4 */
	for (long i = 0; i < warmup + n; i++) {
		uint16_t id = (uint16_t)(i + 1);
		put_header(req, id, CMD_REGION_READ, REQUEST_SIZE, 0);
		double t0 = now_ns();
		send_all(fd, req, sizeof(req));
		if (!recv_exact(fd, rep, sizeof(rep)))
			die("server closed the connection");
		double t1 = now_ns();
		errno = 0;
		if (get16(rep) != id || (get32(rep + 8) & (TYPE_MASK | FLAG_ERROR)) != FLAG_REPLY ||
		    get32(rep + 4) != REPLY_SIZE || memcmp(rep + REQUEST_SIZE, EDU_ID, 4) != 0)
			die("unexpected REGION_READ reply");
		if (i >= warmup)
			times[i - warmup] = t1 - t0;
	}
	close(fd);

	FILE *f = fopen(out, "wb");
	if (!f || fwrite(times, sizeof(double), (size_t)n, f) != (size_t)n || fclose(f) != 0)
		die(out);
	free(times);
	return 0;
}

/* One pipelined phase: n requests with at most depth in flight; ids continue from *next_id. */
static void pipeline_phase(int fd, long n, long depth, uint16_t *next_id)
{
	unsigned char req[REQUEST_SIZE] = { 0 }, rep[REPLY_SIZE];
	put32(req + HEADER_SIZE + 12, 4); /* offset 0, region 0 (BAR0), count 4 */
	uint16_t expect = *next_id;
	long sent = 0, got = 0;
	while (got < n) {
		while (sent < n && sent - got < depth) {
			put_header(req, (*next_id)++, CMD_REGION_READ, REQUEST_SIZE, 0);
			send_all(fd, req, sizeof(req));
			sent++;
		}
		if (!recv_exact(fd, rep, sizeof(rep)))
			die("server closed the connection");
		errno = 0;
		if (get16(rep) != expect++ || (get32(rep + 8) & (TYPE_MASK | FLAG_ERROR)) != FLAG_REPLY ||
		    get32(rep + 4) != REPLY_SIZE || memcmp(rep + REQUEST_SIZE, EDU_ID, 4) != 0)
			die("unexpected REGION_READ reply");
		got++;
	}
}

static int pipeline(const char *path, long depth, long warmup, long n, const char *out, int version)
{
	struct sockaddr_un a = address(path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket");
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		die("connect");
	if (version)
		negotiate(fd);
	uint16_t id = 1;
	pipeline_phase(fd, warmup, depth, &id);
	double t0 = now_ns();
	pipeline_phase(fd, n, depth, &id);
	double total = now_ns() - t0;
	close(fd);
	FILE *f = fopen(out, "wb");
	if (!f || fwrite(&total, sizeof(double), 1, f) != 1 || fclose(f) != 0)
		die(out);
	return 0;
}

int main(int argc, char **argv)
{
	if ((argc == 7 || (argc == 8 && strcmp(argv[7], "--version") == 0)) && strcmp(argv[1], "pipeline") == 0 && atol(argv[3]) > 0)
		return pipeline(argv[2], atol(argv[3]), atol(argv[4]), atol(argv[5]), argv[6], argc == 8);
	if (argc == 3 && strcmp(argv[1], "server") == 0)
		return serve(argv[2]);
	if ((argc == 6 || (argc == 7 && strcmp(argv[6], "--version") == 0)) && strcmp(argv[1], "client") == 0)
		return client(argv[2], atol(argv[3]), atol(argv[4]), argv[5], argc == 7);
	fprintf(stderr, "usage: c-echo server SOCKET | c-echo client SOCKET WARMUP N OUT [--version]\n"
			"       c-echo pipeline SOCKET DEPTH WARMUP N OUT [--version]\n");
	return 2;
}
