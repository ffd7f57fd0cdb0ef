// A developer's own test, as `vm --add/--run` takes it (tests/e2e/byo-test.test.ts): a static
// program that prints no KTAP and says pass or fail with its exit status alone. It checks what
// a test of the device can rely on when it starts: the function at the address given is the
// expected PCI device, bound to vfio-pci. Usage: byo_probe BDF VENDOR:DEVICE (hex, e.g. 1234:11e8).
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static unsigned long read_hex(const char *bdf, const char *attr)
{
	char path[PATH_MAX];
	unsigned long value = ~0UL;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/%s", bdf, attr);
	f = fopen(path, "r");
	if (f == NULL) {
		perror(path);
		return ~0UL;
	}
	if (fscanf(f, "%lx", &value) != 1)
		fprintf(stderr, "%s: not a hex number\n", path);
	fclose(f);
	return value;
}

int main(int argc, char **argv)
{
	unsigned long want_vendor, want_device, vendor, device;
	char link[PATH_MAX], target[PATH_MAX];
	ssize_t n;

	if (argc != 3 || sscanf(argv[2], "%lx:%lx", &want_vendor, &want_device) != 2) {
		fprintf(stderr, "usage: byo_probe BDF VENDOR:DEVICE\n");
		return 2;
	}
	vendor = read_hex(argv[1], "vendor");
	device = read_hex(argv[1], "device");
	snprintf(link, sizeof(link), "/sys/bus/pci/devices/%s/driver", argv[1]);
	n = readlink(link, target, sizeof(target) - 1);
	target[n < 0 ? 0 : n] = '\0';
	printf("byo_probe: %s is %04lx:%04lx, driver %s\n", argv[1], vendor, device, n < 0 ? "(none)" : strrchr(target, '/') + 1);
	if (vendor != want_vendor || device != want_device) {
		printf("byo_probe: expected %04lx:%04lx\n", want_vendor, want_device);
		return 1;
	}
	return n >= 0 && strcmp(strrchr(target, '/') + 1, "vfio-pci") == 0 ? 0 : 1;
}
