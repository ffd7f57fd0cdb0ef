/*
 * bench_bar1.c - NOT a test: a guest-side benchmark for bench/guest-bar1.ts.
 *
 * memcpy bandwidth of 64 MiB into ("write") and out of ("read") edu-plus's
 * BAR1 through the VFIO device mmap, through a DMABUF mmap of BAR1 where the
 * kernel supports it, and into/out of an anonymous buffer of ordinary guest
 * RAM of the same size. The source (for writes) and destination (for reads)
 * is a second, pre-faulted RAM buffer. Targets take turns within each
 * repeat, so drift hits them alike. Output, one line per repeat:
 *
 *	bench-bar1 target=<ram|bar1|dmabuf> op=<write|read> rep=N bytes=N ns=N mib_s=N.N
 *
 * and for a target that cannot be measured
 *
 *	bench-bar1-unsupported target=dmabuf reason="..."
 *
 *	bench_bar1 [REPEATS [MIB]]	(defaults 5 and 64)
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "vfio_util.h"

#define EDU_VENDOR	0x1234
#define EDU_DEVICE	0x11e8
#define MIB		(1ul << 20)

/* The 1234:11e8 device whose BAR1 (sysfs resource line 1) is non-zero. */
static int find_edu_plus(char bdf[VU_BDF_LEN])
{
	DIR *d = opendir("/sys/bus/pci/devices");
	struct dirent *e;
	int found = -1;

	if (!d)
		return -1;
	while (found && (e = readdir(d))) {
		unsigned long vendor, device;
		unsigned long long start = 0, end = 0, flags = 0;
		char path[300], line[256];
		FILE *f;

		if (e->d_name[0] == '.' || strlen(e->d_name) >= VU_BDF_LEN)
			continue;
		if (vu_sysfs_hex(e->d_name, "vendor", &vendor) ||
		    vu_sysfs_hex(e->d_name, "device", &device) ||
		    vendor != EDU_VENDOR || device != EDU_DEVICE)
			continue;
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/resource",
			 e->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (fgets(line, sizeof(line), f) && fgets(line, sizeof(line), f) &&
		    sscanf(line, "%llx %llx %llx", &start, &end, &flags) == 3 &&
		    (start || end)) {
			memcpy(bdf, e->d_name, strlen(e->d_name) + 1);
			found = 0;
		}
		fclose(f);
	}
	closedir(d);
	return found;
}

/* A DMABUF of all of region, or -1 with *why set. */
static int export_dmabuf(int devfd, uint32_t region, uint64_t size,
			 const char **why)
{
#ifdef VFIO_DEVICE_FEATURE_DMA_BUF
	static char msg[96];
	uint64_t p[4 + 2];
	struct vfio_device_feature *f = (struct vfio_device_feature *)p;
	uint32_t hdr[4] = { region, O_RDWR | O_CLOEXEC, 0, 1 };
	int fd;

	memset(p, 0, sizeof(p));
	f->argsz = sizeof(p);
	f->flags = VFIO_DEVICE_FEATURE_DMA_BUF | VFIO_DEVICE_FEATURE_GET;
	memcpy(f->data, hdr, sizeof(hdr));
	memcpy(f->data + sizeof(hdr), &(uint64_t[2]){ 0, size }, 16);
	fd = ioctl(devfd, VFIO_DEVICE_FEATURE, f);
	if (fd < 0) {
		snprintf(msg, sizeof(msg), "export failed (%s)", strerror(errno));
		*why = msg;
	}
	return fd;
#else
	(void)devfd;
	(void)region;
	(void)size;
	*why = "headers lack VFIO_DEVICE_FEATURE_DMA_BUF";
	return -1;
#endif
}

static const char *errno_name(int err)
{
	switch (err) {
	case EINVAL: return "EINVAL";
	case ENODEV: return "ENODEV";
	case EPERM: return "EPERM";
	case ENOTTY: return "ENOTTY";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	case EACCES: return "EACCES";
	case ENOMEM: return "ENOMEM";
	default: return "errno";
	}
}

/* len bytes of anonymous RAM, or NULL after printing why (errno read first). */
static void *anon_map(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int err = errno;

	if (p != MAP_FAILED)
		return p;
	printf("bench-bar1-error what=\"anonymous mmap: %s\"\n", strerror(err));
	return NULL;
}

struct target {
	const char *name;
	void *mem;
};

static void one(const struct target *t, const char *op, int rep, void *dst,
		const void *src, size_t len)
{
	uint64_t t0 = vu_now_ns(), dt;

	memcpy(dst, src, len);
	dt = vu_now_ns() - t0;
	if (dt == 0)
		dt = 1;
	printf("bench-bar1 target=%s op=%s rep=%d bytes=%zu ns=%" PRIu64
	       " mib_s=%.1f\n", t->name, op, rep, len, dt,
	       (double)len / MIB / ((double)dt / 1e9));
	fflush(stdout);
}

int main(int argc, char **argv)
{
	int repeats = argc > 1 ? atoi(argv[1]) : 5;
	long mib = argc > 2 ? atol(argv[2]) : 64;
	struct vu_device dev = VU_DEVICE_INIT;
	struct vfio_region_info bar1;
	struct target t[3];
	int nt = 0, dmabuf = -1;
	const char *why = NULL;
	char bdf[VU_BDF_LEN];
	size_t len;
	uint8_t *src, *dst;
	void *p;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (repeats < 1)
		repeats = 1;
	if (mib < 1)
		mib = 1;
	len = (size_t)mib * MIB;
	printf("bench-bar1-info repeats=%d bytes=%zu\n", repeats, len);
	if (find_edu_plus(bdf)) {
		printf("bench-bar1-error what=\"no 1234:11e8 device with a BAR1\"\n");
		return 1;
	}
	if (vu_bind_vfio_pci(bdf) || vu_open_device(bdf, &dev) ||
	    vu_region_info(dev.device, VFIO_PCI_BAR1_REGION_INDEX, &bar1)) {
		printf("bench-bar1-error what=\"%s\"\n", vu_error());
		return 1;
	}
	if (bar1.size < len) {
		printf("bench-bar1-error what=\"BAR1 is 0x%llx bytes, need 0x%zx\"\n",
		       (unsigned long long)bar1.size, len);
		return 1;
	}

	src = anon_map(len);
	dst = src ? anon_map(len) : NULL;
	p = dst ? anon_map(len) : NULL;
	if (!p)
		return 1;
	/* Pre-fault every RAM page so the timed copies see no page faults. */
	for (size_t i = 0; i < len; i++)
		src[i] = (uint8_t)(i * 131 + 7);
	memset(dst, 0, len);
	memset(p, 0, len);
	t[nt++] = (struct target){ "ram", p };

	p = vu_mmap_region(dev.device, &bar1, 0, len);
	if (!p) {
		printf("bench-bar1-error what=\"%s\"\n", vu_error());
		return 1;
	}
	t[nt++] = (struct target){ "bar1", p };

	dmabuf = export_dmabuf(dev.device, VFIO_PCI_BAR1_REGION_INDEX, len, &why);
	if (dmabuf >= 0) {
		p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, dmabuf, 0);
		if (p == MAP_FAILED) {
			static char msg[64];
			int err = errno;

			snprintf(msg, sizeof(msg), "unsupported (%s)", errno_name(err));
			why = msg;
		} else {
			t[nt++] = (struct target){ "dmabuf", p };
		}
	}
	if (why)
		printf("bench-bar1-unsupported target=dmabuf reason=\"%s\"\n", why);

	for (int rep = 0; rep < repeats; rep++) {
		for (int k = 0; k < nt; k++) {
			const struct target *x = &t[(k + rep) % nt];

			one(x, "write", rep, x->mem, src, len);
			one(x, "read", rep, dst, x->mem, len);
		}
	}
	/* Leave BAR1 zeroed except what the copies wrote: nothing checks it. */
	for (int k = 0; k < nt; k++)
		munmap(t[k].mem, len);
	if (dmabuf >= 0)
		close(dmabuf);
	munmap(src, len);
	munmap(dst, len);
	vu_close_device(&dev);
	printf("bench-bar1-done\n");
	return 0;
}
