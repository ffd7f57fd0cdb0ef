/*
 * bench_mmio.c - NOT a test: a guest-side benchmark for bench/guest-mmio.ts.
 *
 * Finds every 1234:11e8 device, tells QEMU's in-process edu (no BAR1) from
 * edu-plus (a 64 MiB BAR1: sysfs resource line 1 non-zero), binds both to
 * vfio-pci, mmaps BAR0 of each and times single 32-bit accesses:
 *
 *	read-id     load of BAR0+0x00 (identification)
 *	read-live   load of BAR0+0x04 (liveness)
 *	write-live  store to BAR0+0x04 (liveness)
 *
 * Every access is timed on its own with clock_gettime(CLOCK_MONOTONIC)
 * before and after (no batching); the clock's own cost is measured the same
 * way and printed as device=none op=clock, and is NOT subtracted. The two
 * devices take turns in rounds of ROUND accesses, so drift in the guest or
 * on the host hits both alike. Output, one line per device and op:
 *
 *	bench-mmio device=<edu|edu-plus|none> op=<op> median_ns=N p99_ns=N
 *		min_ns=N mean_ns=N n=N
 *
 * plus "bench-mmio-info ..." lines and, on failure, "bench-mmio-error ...".
 *
 *	bench_mmio [ITERATIONS [WARMUP]]	(defaults 2000 and 100)
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "vfio_util.h"

#define EDU_VENDOR	0x1234
#define EDU_DEVICE	0x11e8
#define EDU_ID		0x010000edu
#define ROUND		64
#define MAX_DEVS	2
#define MAP_LEN		4096

enum { DEV_EDU, DEV_PLUS };
static const char *const dev_name[] = { "edu", "edu-plus" };

struct bdev {
	int present;
	char bdf[VU_BDF_LEN];
	struct vu_device dev;
	struct vfio_region_info bar0;
	volatile void *bar;
};

static struct bdev devs[MAX_DEVS];

/* Non-zero when resource line 1 (BAR1) has a non-zero start or end. */
static int has_bar1(const char *bdf)
{
	char path[256], line[256];
	unsigned long long start = 0, end = 0, flags = 0;
	FILE *f;
	int i, found = 0;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/resource", bdf);
	f = fopen(path, "r");
	if (!f)
		return -1;
	for (i = 0; fgets(line, sizeof(line), f); i++) {
		if (i == 1) {
			if (sscanf(line, "%llx %llx %llx", &start, &end, &flags) == 3)
				found = start != 0 || end != 0;
			break;
		}
	}
	fclose(f);
	return found;
}

static int find_devices(void)
{
	DIR *d = opendir("/sys/bus/pci/devices");
	struct dirent *e;

	if (!d) {
		printf("bench-mmio-error what=opendir errno=%d\n", errno);
		return -1;
	}
	while ((e = readdir(d))) {
		unsigned long vendor, device;
		int kind;

		if (e->d_name[0] == '.')
			continue;
		if (vu_sysfs_hex(e->d_name, "vendor", &vendor) ||
		    vu_sysfs_hex(e->d_name, "device", &device))
			continue;
		if (vendor != EDU_VENDOR || device != EDU_DEVICE)
			continue;
		kind = has_bar1(e->d_name) > 0 ? DEV_PLUS : DEV_EDU;
		if (devs[kind].present)
			continue;
		devs[kind].present = 1;
		if (strlen(e->d_name) >= VU_BDF_LEN)
			continue;
		memcpy(devs[kind].bdf, e->d_name, strlen(e->d_name) + 1);
		printf("bench-mmio-info device=%s bdf=%s\n", dev_name[kind],
		       e->d_name);
	}
	closedir(d);
	return 0;
}

static int open_dev(struct bdev *b, const char *name)
{
	struct vu_device init = VU_DEVICE_INIT;
	void *p;

	b->dev = init;
	if (vu_bind_vfio_pci(b->bdf) || vu_open_device(b->bdf, &b->dev) ||
	    vu_region_info(b->dev.device, VFIO_PCI_BAR0_REGION_INDEX, &b->bar0)) {
		printf("bench-mmio-error device=%s what=\"%s\"\n", name,
		       vu_error());
		return -1;
	}
	p = vu_mmap_region(b->dev.device, &b->bar0, 0, MAP_LEN);
	if (!p) {
		printf("bench-mmio-error device=%s what=\"%s\"\n", name,
		       vu_error());
		return -1;
	}
	b->bar = p;
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
	       " min_ns=%" PRIu64 " mean_ns=%" PRIu64 " n=%zu\n",
	       device, op, s[(n - 1) / 2], s[p99 - 1], s[0], sum / n, n);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	long iterations = argc > 1 ? strtol(argv[1], NULL, 0) : 2000;
	long warmup = argc > 2 ? strtol(argv[2], NULL, 0) : 100;
	int active[MAX_DEVS], nactive = 0, k, failed = 0;
	uint64_t *samples[MAX_DEVS];
	uint64_t *clk;
	long i, r;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (iterations < 1)
		iterations = 1;
	if (warmup < 0)
		warmup = 0;
	printf("bench-mmio-info iterations=%ld warmup=%ld timing=per-access round=%d\n",
	       iterations, warmup, ROUND);
	if (find_devices())
		return 1;
	for (k = 0; k < MAX_DEVS; k++) {
		if (!devs[k].present) {
			printf("bench-mmio-error device=%s what=\"not found\"\n",
			       dev_name[k]);
			failed = 1;
			continue;
		}
		if (open_dev(&devs[k], dev_name[k])) {
			failed = 1;
			continue;
		}
		if (vu_mmio_read32(devs[k].bar, 0) != EDU_ID) {
			printf("bench-mmio-error device=%s what=\"identification 0x%08x\"\n",
			       dev_name[k], vu_mmio_read32(devs[k].bar, 0));
			failed = 1;
			continue;
		}
		vu_mmio_write32(devs[k].bar, 0x04, 0x12345678);
		if (vu_mmio_read32(devs[k].bar, 0x04) != ~0x12345678u) {
			printf("bench-mmio-error device=%s what=\"liveness does not invert\"\n",
			       dev_name[k]);
			failed = 1;
			continue;
		}
		active[nactive++] = k;
	}
	if (nactive == 0)
		return 1;
	for (k = 0; k < MAX_DEVS; k++) {
		samples[k] = calloc((size_t)iterations, sizeof(uint64_t));
		if (!samples[k])
			return 1;
	}
	clk = calloc((size_t)iterations, sizeof(uint64_t));
	if (!clk)
		return 1;

	/* The clock alone: what every sample below includes. */
	for (i = 0; i < warmup + iterations; i++) {
		uint64_t t0 = vu_now_ns(), t1 = vu_now_ns();

		if (i >= warmup)
			clk[i - warmup] = t1 - t0;
	}
	report("none", "clock", clk, (size_t)iterations);

	for (int op = 0; op < OP_COUNT; op++) {
		for (k = 0; k < nactive; k++)
			for (i = 0; i < warmup; i++)
				(void)timed(devs[active[k]].bar, op, (uint32_t)i);
		/* Rounds: ROUND accesses on one device, then on the next. */
		for (r = 0; r < iterations; r += ROUND) {
			long end = r + ROUND < iterations ? r + ROUND : iterations;

			for (k = 0; k < nactive; k++) {
				int d = active[(k + r / ROUND) % nactive];

				for (i = r; i < end; i++)
					samples[d][i] = timed(devs[d].bar, op,
							      (uint32_t)i);
			}
		}
		for (k = 0; k < nactive; k++)
			report(dev_name[active[k]], op_name[op],
			       samples[active[k]], (size_t)iterations);
	}
	for (k = 0; k < nactive; k++) {
		munmap((void *)devs[active[k]].bar, MAP_LEN);
		vu_close_device(&devs[active[k]].dev);
	}
	printf("bench-mmio-done\n");
	return failed;
}
