/**
 * `vm --help`: what the command does, every option, and the exit codes. Kept apart from
 * cli/vm.ts so the command's logic reads in one sitting.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { GUEST_TESTS_DIR } from '../guest-tests/build.ts';
import { cacheDir } from '../qemu-configs/cache.ts';
import { SELFTESTS_MEMORY_MIB } from '../qemu-configs/selftests.ts';
import { defaultSocketPath } from './devices.ts';
import { BYO_DIR } from './vm-extra-tests.ts';
import { SELFTESTS_TIMEOUT_S } from './vm-selftests.ts';

export const DEFAULT_TIMEOUT_S = 300;
export const DEFAULT_MEMORY_MIB = 1024;

/** Guest test programs in guest-tests/ (a .c file with main), for the help text. */
export function guestTestNames(): string[] {
  try {
    return readdirSync(GUEST_TESTS_DIR)
      .filter((f) => f.endsWith('.c') && /^\s*int\s+main\s*\(/m.test(readFileSync(join(GUEST_TESTS_DIR, f), 'utf8')))
      .map((f) => f.slice(0, -2))
      .sort();
  } catch {
    return [];
  }
}

export function vmHelp(): string {
  return `Usage: npm run vm -- [options]      (or: tsx cli/main.ts vm [options])

Boots a test VM with an edu-plus device attached (served by this process over vfio-user),
runs the guest tests in it, prints their KTAP as it arrives and a summary, and exits with the
verdict. QEMU (>= 10.1), the default guest kernel (Debian's 7.3 from trixie-backports) and
busybox are provisioned on first use (EDU_PLUS_CACHE moves the cache) into
${cacheDir()}; the guest tests are compiled with the host's gcc. TCG unless real KVM is
usable: a run takes about 10 s plus the tests.

Your kernel:
  --kernel FILE        boot this kernel image (arch/x86/boot/bzImage of your build) instead of
                       the provisioned one. Needs --modules or --initrd for its modules.
  --modules DIR        the modules of that kernel: DIR as given to \`make modules_install
                       INSTALL_MOD_PATH=DIR\`, i.e. DIR/lib/modules/<release>/ (DIR/usr/lib/modules,
                       a lib/modules directory or the release directory itself also work). The
                       release must be the image's. vfio-pci, vfio_iommu_type1 (virtio_iommu with
                       --iommu virtio) and their dependencies go into the initramfs (.ko, .ko.xz,
                       .ko.zst, .ko.gz; decompressed). \`--modules none\`: they are built in (=y).
  --initrd FILE        an initramfs of yours, loaded first: QEMU gets FILE followed by our archive
                       (the kernel unpacks both into one rootfs; where names clash ours wins). Ours
                       brings /init, busybox and the tests, so your /init does not run; yours can
                       bring the modules (lib/modules/<release>/ with modules.dep, loaded with
                       busybox modprobe) when --modules is not given.
  --headers DIR        build the guest tests against your kernel's UAPI: DIR as given to
                       \`make headers_install INSTALL_HDR_PATH=DIR\` (DIR/include/linux/vfio.h).
                       Default: Debian's 7.3 UAPI headers (provisioned). Binaries are cached per DIR.
  Modules resolve like modprobe: updates/ and extra/ before kernel/, depmod's modules.dep when
  present; two files of one module at the same rank (x.ko next to x.ko.xz) are an error.

Your vfio-pci, on the stock kernel (the out-of-tree loop):
  --vfio-src TREE      build drivers/vfio/pci of the Linux tree TREE (the guest kernel's version)
                       with that kernel's Debian build files and gcc-14 (provisioned on first use)
                       and test with your vfio-pci-core.ko/vfio-pci.ko instead of the stock ones;
                       the guest tests use TREE's UAPI. TREE is only read (drivers/vfio/pci and the
                       vfio*.h headers are mirrored to the cache; rebuilds are incremental). See
                       the README's kernel-developer section. Not with --kernel/--modules/--headers.

Every run prints which file each loaded vfio module came from (in-tree or out-of-tree, build ID,
vermagic), and fails when a module you gave or built is not the one the guest runs.

What to run:
  --tests LIST         test programs to run, comma-separated, in that order; \`all\`: every program
                       guest-tests/ builds (now: ${guestTestNames().join(', ') || 'none found'}).
                       Default: all, or none when --run or --selftests is given.

  --shell              no tests: an interactive shell in the guest on this terminal, with the
                       tests in /tests (on PATH) and the device bound to vfio-pci. Leave with
                       \`poweroff -f\`, or Ctrl-A X (QEMU's escape) to kill the VM. No timeout.
  --iommu KIND         the guest's vIOMMU: intel (default; intel-iommu with interrupt remapping)
                       or virtio (virtio-iommu-pci; loads virtio_iommu).
  --memory MIB         guest RAM in MiB (default ${DEFAULT_MEMORY_MIB}).
  --shared-memory      guest RAM is a shared memfd, so DMA reaches the device directly (default).
  --no-shared-memory   plain guest RAM: DMA travels as DMA_READ/DMA_WRITE messages.
  --devices LIST       the devices to attach, comma-separated, each served by this process on
                       its own socket: edu-plus (default), gpu (the GPU-like device, 4 GiB VRAM),
                       e.g. --devices edu-plus,gpu. devices_present checks the guest sees them all.
  --reset METHOD       the reset edu-plus offers the guest: flr (default here, so the kernel's
                       reset paths — VFIO_DEVICE_RESET, DMABUF revoke and restore on reset — run),
                       pm, or none (QEMU's edu exactly: the kernel then offers no reset method and
                       those cases skip). See npm start -- --help.
  --timeout SECONDS    stop the VM after this long; counts as a failure (default ${DEFAULT_TIMEOUT_S}).
  --socket-path PATH   where the device listens (default: a new temporary directory; with
                       --print-cmdline: ${defaultSocketPath()}, where \`npm start\` listens).

Your own tests (think \`vng --run\`):
  --add PATH           put a file or a directory (with its tree) into the guest under ${BYO_DIR}/
                       (${BYO_DIR}/NAME). Repeatable. Programs must be static x86-64 binaries (the
                       guest has busybox, no C library) or busybox sh scripts.
  --run CMD            run the shell command CMD in the guest, in ${BYO_DIR} with ${BYO_DIR} and every
                       added directory on PATH, after edu-plus was bound to vfio-pci; its address
                       is in $EDU_PLUS_BDF (e.g. 0000:00:03.0). Repeatable; each --run is one
                       program in the summary, named after CMD's first word. Judged by its KTAP
                       when it prints KTAP (the kselftest harness's TAP 13 included), else by its
                       exit status: 0 pass, 4 skip (kselftest's KSFT_SKIP), anything else fail.
                       e.g. --add ./my_test --run './my_test $EDU_PLUS_BDF'
  --selftests [TREE]   also build the kernel's VFIO selftests (TREE/tools/testing/selftests/vfio;
                       without TREE: Debian's linux-source of the provisioned kernel, cached)
                       statically, with edu-plus's driver for vfio_pci_driver_test compiled into
                       their library, and run each against edu-plus (all of them, or those named
                       in --tests). Without /dev/iommu in the guest (a kernel without
                       CONFIG_IOMMUFD, such as Debian's 7.3) the iommufd variants are excluded
                       with the harness's -V filter and reported as skips with that reason, and
                       the library's default IOMMU mode becomes vfio_type1v2_iommu. Huge pages
                       are reserved at boot for the hugetlb variants; the guest gets
                       ${SELFTESTS_MEMORY_MIB} MiB and a ${SELFTESTS_TIMEOUT_S} s timeout unless --memory/--timeout say otherwise.
                       Our own programs run too only with --tests. A selftest named in --tests
                       may carry the harness's options after a colon, e.g.
                       --tests 'vfio_pci_driver_test:-V vfio_type1_iommu -t send_msi' (the
                       harness stops at the first filter that matches; the iommufd exclusions
                       come before yours).
                       edu-plus gets a 64-bit dma_mask (the library's IOVAs ignore edu's 28 bits).

Output:
  --trace              stream the device's trace (accesses, interrupts, DMA, resets) to stderr.
  --verbose            every guest console line (not only the tests'), QEMU's command line and
                       the device's log (on stderr).
  --print-cmdline      provision and build everything, print the QEMU command line
                       (shell-quoted, with the provisioned QEMU's loader) and exit 0 without
                       booting. To run it yourself, start the device first:
                       npm start -- --socket-path PATH (the path in the command line).
  --junit FILE         also write the verdict as JUnit XML to FILE (one testsuite per program,
                       one testcase per case, <failure>/<skipped> with the reason) for CI.
  -h, --help           show this help.

Progress goes to stderr; the tests' KTAP and the summary (passed / failed / skipped per test
program) to stdout.

Exit code:
  0  all pass: every test program ran to its end, nothing failed, at least one case passed
     (skips are allowed only if something passed);
  1  any failure: a \`not ok\`, a missing result, a test program that crashed or never ran, a
     guest kernel panic or oops, a timeout, a VM that did not boot, a vfio module you gave
     or built that is not the one the guest runs, or a --vfio-src tree that does not compile;
  2  wrong usage: an unknown option or value, a missing kernel, modules, initrd or headers, or
     modules of another release than the kernel, a --vfio-src TREE that is not a kernel tree
     or not of the guest kernel's version (the message says what to pass);
  4  everything skipped: no case passed and none failed.
With --shell: 0 when the VM powered off normally.`;
}
