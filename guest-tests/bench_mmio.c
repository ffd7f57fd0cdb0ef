/*
 * bench_mmio.c - NOT a test: a guest-side benchmark for bench/guest-mmio.ts.
 *
 * Takes the devices to compare by name and PCI address (the host places
 * them at fixed slots and says which is which), binds each to vfio-pci,
 * checks edu's identification and liveness registers, mmaps BAR0 and times
 * single 32-bit accesses:
 *
 *	read-id     load of BAR0+0x00 (identification)
 *	read-live   load of BAR0+0x04 (liveness)
 *	write-live  store to BAR0+0x04 (liveness)
 *
 * Every access is timed on its own with clock_gettime(CLOCK_MONOTONIC)
 * before and after (no batching); the clock's own cost is measured the same
 * way and printed as device=none op=clock, and is NOT subtracted. Devices
 * take turns in rounds of ROUND accesses, so drift in the guest or on the
 * host hits them alike. In order:
 *
 *  1. first-read-id: the FIRST accesses after the checks, no warm-up: how a
 *     server that is still warming up (a JIT) shows in the tail;
 *  2. an idle window of IDLE_S seconds with every device open and mapped;
 *  3. per op: WARMUP unrecorded accesses per device, then ITERATIONS timed.
 *
 * Phases 2 and 3 are bracketed by marker lines; the host samples each server
 * process's CPU time when it reads them (before every op phase the program
 * sleeps MARK_SETTLE_US so the host has sampled before the first access):
 *
 *	bench-mmio-phase phase=<idle|op> edge=begin
 *	bench-mmio-phase phase=<idle|op> edge=end accesses=N   (N per device)
 *
 * Result lines, one per device and op:
 *
 *	bench-mmio device=<name|none> op=<op> median_ns=N p99_ns=N
 *		min_ns=N mean_ns=N max_ns=N n=N
 *
 * plus "bench-mmio-info ..." lines and, on failure, "bench-mmio-error ...".
 *
 *	bench_mmio [-f FIRST] [-i IDLE_S] ITERATIONS WARMUP NAME=BDF...
 *	(FIRST defaults to 1000, IDLE_S to 3)
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "vfio_util.h"

#define EDU_ID		0x010000edu
#define ROUND		64
#define MAX_DEVS	8
#define MAP_LEN		4096
#define MARK_SETTLE_US	100000

struct bdev {
	const char *name;
	char bdf[VU_BDF_LEN];
	struct vu_device dev;
	struct vfio_region_info bar0;
	volatile void *bar;
	uint64_t *samples;
};

static struct bdev devs[MAX_DEVS];
static int ndevs;

static int open_dev(struct bdev *b)
{
	struct vu_device init = VU_DEVICE_INIT;
	void *p;

	b->dev = init;
	if (vu_bind_vfio_pci(b->bdf) || vu_open_device(b->bdf, &b->dev) ||
	    vu_region_info(b->dev.device, VFIO_PCI_BAR0_REGION_INDEX, &b->bar0)) {
		printf("bench-mmio-error device=%s what=\"%s\"\n", b->name,
		       vu_error());
		return -1;
	}
	p = vu_mmap_region(b->dev.device, &b->bar0, 0, MAP_LEN);
	if (!p) {
		printf("bench-mmio-error device=%s what=\"%s\"\n", b->name,
		       vu_error());
		return -1;
	}
	b->bar = p;
	if (vu_mmio_read32(b->bar, 0) != EDU_ID) {
		printf("bench-mmio-error device=%s what=\"identification 0x%08x\"\n",
		       b->name, vu_mmio_read32(b->bar, 0));
		return -1;
	}
	vu_mmio_write32(b->bar, 0x04, 0x12345678);
	if (vu_mmio_read32(b->bar, 0x04) != ~0x12345678u) {
		printf("bench-mmio-error device=%s what=\"liveness does not invert\"\n",
		       b->name);
		return -1;
	}
	return 0;
}

enum op { OP_READ_ID, OP_READ_LIVE, OP_WRITE_LIVE, OP_COUNT };
static const char *const op_name[] = { "read-id", "read-live", "write-live" };

static volatile uint32_t sink;

/* One timed access; returns its duration in ns. */
static uint64_t timed(volatile void *bar, enum op op, uint32_t i)
{
	uint64_t t0, t1;

	if (op == OP_READ_ID) {
		t0 = vu_now_ns();
		sink = vu_mmio_read32(bar, 0x00);
		t1 = vu_now_ns();
	} else if (op == OP_READ_LIVE) {
		t0 = vu_now_ns();
		sink = vu_mmio_read32(bar, 0x04);
		t1 = vu_now_ns();
	} else {
		t0 = vu_now_ns();
		vu_mmio_write32(bar, 0x04, i);
		t1 = vu_now_ns();
	}
	return t1 - t0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void report(const char *device, const char *op, uint64_t *s, size_t n)
{
	uint64_t sum = 0;
	size_t i, p99;

	qsort(s, n, sizeof(*s), cmp_u64);
	for (i = 0; i < n; i++)
		sum += s[i];
	/* Nearest rank: the ceil(0.99 n)-th smallest. */
	p99 = (n * 99 + 99) / 100;
	if (p99 < 1)
		p99 = 1;
	printf("bench-mmio device=%s op=%s median_ns=%" PRIu64 " p99_ns=%" PRIu64
	       " min_ns=%" PRIu64 " mean_ns=%" PRIu64 " max_ns=%" PRIu64 " n=%zu\n",
	       device, op, s[(n - 1) / 2], s[p99 - 1], s[0], sum / n, s[n - 1], n);
}

/* n timed accesses per device, devices taking turns every ROUND accesses. */
static void rounds(enum op op, long n)
{
	for (long r = 0; r < n; r += ROUND) {
		long end = r + ROUND < n ? r + ROUND : n;

		for (int k = 0; k < ndevs; k++) {
			struct bdev *b = &devs[(k + r / ROUND) % ndevs];

			for (long i = r; i < end; i++)
				b->samples[i] = timed(b->bar, op, (uint32_t)i);
		}
	}
}

static void mark(const char *phase, const char *edge, long accesses)
{
	if (accesses >= 0)
		printf("bench-mmio-phase phase=%s edge=%s accesses=%ld\n", phase, edge, accesses);
	else
		printf("bench-mmio-phase phase=%s edge=%s\n", phase, edge);
}

static int usage(void)
{
	printf("bench-mmio-error what=\"usage: bench_mmio [-f FIRST] [-i IDLE_S] ITERATIONS WARMUP NAME=BDF...\"\n");
	return 2;
}

int main(int argc, char **argv)
{
	long first = 1000, idle_s = 3, iterations, warmup, most, i;
	uint64_t *clk;
	int opt;

	setvbuf(stdout, NULL, _IOLBF, 0);
	while ((opt = getopt(argc, argv, "f:i:")) != -1) {
		if (opt == 'f')
			first = strtol(optarg, NULL, 0);
		else if (opt == 'i')
			idle_s = strtol(optarg, NULL, 0);
		else
			return usage();
	}
	if (argc - optind < 3 || argc - optind - 2 > MAX_DEVS)
		return usage();
	iterations = strtol(argv[optind], NULL, 0);
	warmup = strtol(argv[optind + 1], NULL, 0);
	if (iterations < 1 || warmup < 0 || first < 1 || idle_s < 0)
		return usage();
	for (int a = optind + 2; a < argc; a++) {
		char *eq = strchr(argv[a], '=');
		struct bdev *b = &devs[ndevs++];

		if (!eq || eq == argv[a] || strlen(eq + 1) >= VU_BDF_LEN)
			return usage();
		*eq = '\0';
		b->name = argv[a];
		memcpy(b->bdf, eq + 1, strlen(eq + 1) + 1);
	}
	printf("bench-mmio-info iterations=%ld warmup=%ld first=%ld idle_s=%ld timing=per-access round=%d\n",
	       iterations, warmup, first, idle_s, ROUND);

	/* Every device must open and pass the checks: a comparison with one missing means nothing. */
	for (int k = 0; k < ndevs; k++) {
		printf("bench-mmio-info device=%s bdf=%s\n", devs[k].name, devs[k].bdf);
		if (open_dev(&devs[k]))
			return 1;
	}
	most = iterations > first ? iterations : first;
	for (int k = 0; k < ndevs; k++) {
		devs[k].samples = calloc((size_t)most, sizeof(uint64_t));
		if (!devs[k].samples)
			return 1;
	}
	clk = calloc((size_t)iterations, sizeof(uint64_t));
	if (!clk)
		return 1;

	rounds(OP_READ_ID, first);
	for (int k = 0; k < ndevs; k++)
		report(devs[k].name, "first-read-id", devs[k].samples, (size_t)first);

	mark("idle", "begin", -1);
	sleep((unsigned)idle_s);
	mark("idle", "end", -1);

	/* The clock alone: what every sample below includes. */
	for (i = 0; i < warmup + iterations; i++) {
		uint64_t t0 = vu_now_ns(), t1 = vu_now_ns();

		if (i >= warmup)
			clk[i - warmup] = t1 - t0;
	}
	report("none", "clock", clk, (size_t)iterations);

	for (int op = 0; op < OP_COUNT; op++) {
		mark(op_name[op], "begin", -1);
		usleep(MARK_SETTLE_US);
		for (int k = 0; k < ndevs; k++)
			for (i = 0; i < warmup; i++)
				(void)timed(devs[k].bar, op, (uint32_t)i);
		rounds(op, iterations);
		mark(op_name[op], "end", warmup + iterations);
		for (int k = 0; k < ndevs; k++)
			report(devs[k].name, op_name[op], devs[k].samples, (size_t)iterations);
	}
	for (int k = 0; k < ndevs; k++) {
		munmap((void *)devs[k].bar, MAP_LEN);
		vu_close_device(&devs[k].dev);
	}
	printf("bench-mmio-done\n");
	return 0;
}
