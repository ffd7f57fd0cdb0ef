// The kernel's VFIO selftests in the guest (`vm --selftests`): where the programs go, how /init
// runs each one against edu-plus, and what the guest needs for them.
//
// A kernel without CONFIG_IOMMUFD (Debian's 7.3, for one) has no /dev/iommu: every iommufd and
// iommufd_compat_* variant would fail in its setup, which says nothing about the device. So
// when /dev/iommu is missing, each program first lists its cases (the harness's -l), and the
// variants named after an iommufd mode are excluded with the harness's own filter (-V NAME)
// and declared skipped with that reason; a program about iommufd itself (its name says so)
// is skipped whole. The library's default IOMMU mode (used by tests that do not iterate over
// modes) is switched to vfio_type1v2_iommu through edu-plus's driver (EDU_PLUS_IOMMU_MODE,
// see selftests-driver/edu_plus.c), so vfio_pci_device_test and vfio_pci_driver_test run.

import { DECLARED_SKIP } from './guest-init.ts';

/** Where the selftest programs go in the guest. */
export const SELFTESTS_GUEST_DIR = '/selftests';

/** Why the iommufd variants are skipped on such a kernel (shown in the summary). */
export const NO_IOMMUFD_REASON = 'guest kernel has no IOMMUFD (CONFIG_IOMMUFD unset, no /dev/iommu)';

/** The IOMMU mode edu-plus's driver makes the library's default when /dev/iommu is missing. */
export const FALLBACK_IOMMU_MODE = 'vfio_type1v2_iommu';

/**
 * Huge pages the hugetlb variants of vfio_dma_mapping_test map (one 2 MiB and one 1 GiB page
 * each, one variant at a time): reserved at boot, the 1 GiB one only while the kernel can
 * still find a contiguous gigabyte, and only when the guest has room for it beside the
 * driver test's 1 GiB + 2 MiB of pinned memory.
 */
export function hugePageArgs(memoryMiB: number): string {
  const twoMiB = 'hugepagesz=2M hugepages=8';
  return memoryMiB >= 3072 ? `hugepagesz=1G hugepages=1 ${twoMiB}` : twoMiB;
}

/**
 * The dma_mask edu-plus gets for the selftests: all 64 bits. The selftests library hands out
 * IOVAs without regard to a device's DMA mask (vfio_pci_driver_test puts its driver region at
 * 1 GiB), and edu's default of 28 bits would refuse those transfers.
 */
export const SELFTESTS_DMA_MASK = (1n << 64n) - 1n;

/** The guest RAM `vm --selftests` gives by default (room for the huge pages and the 1 GiB pin). */
export const SELFTESTS_MEMORY_MIB = 4096;

/**
 * An awk program over a harness's `-l` listing (stderr; columns FIXTURE VARIANT TEST, printed
 * side by side, so a fixture's cases are every variant times every test). For each variant
 * whose name starts with "iommufd" it prints `V <variant>` once and `C <case>` for each of
 * its cases, named as the harness names them: fixture[.variant].test.
 */
export const IOMMUFD_VARIANTS_AWK = String.raw`
function flush(   i, j, name) {
  if (f != "" && nt > 0) {
    if (nv == 0) { nv = 1; v[1] = "" }
    for (i = 1; i <= nv; i++) {
      if (v[i] !~ /^iommufd/) continue
      if (!(v[i] in seen)) { print "V " v[i]; seen[v[i]] = 1 }
      for (j = 1; j <= nt; j++) print "C " f "." v[i] "." t[j]
    }
  }
  f = ""; nv = 0; nt = 0
}
/^# FIXTURE/ { next }
/^-----/ { flush(); next }
/^[^ ]/ {
  flush(); f = $1
  if (NF < 2) next
  rest = substr($0, length(f) + 1); match(rest, /[^ ]/); gap = RSTART - 1
  # The variant column starts after the fixture column (20 wide) and one space.
  want = length(f) < 20 ? 21 - length(f) : 1
  if (gap > want) t[++nt] = $2
  else { v[++nv] = $2; if (NF >= 3) t[++nt] = $3 }
  next
}
{
  if (!match($0, /[^ ]/)) next
  if (RSTART - 1 > 21) t[++nt] = $1
  else { v[++nv] = $1; if (NF >= 2) t[++nt] = $2 }
}
END { flush() }
`;

/** Single-quotes a string for the guest's shell. */
function sq(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

/**
 * /init lines run once before the selftests: the device address the library reads, and the
 * IOMMU mode fallback when the kernel has no iommufd.
 */
export function selftestsSetup(): string[] {
  return [
    // vfio_pci_driver_test maps 1 GiB + 2 MiB of MAP_SHARED|MAP_ANONYMOUS memory for every
    // case. In 4 KiB pages that is ~262,000 one-page DMA_MAPs through the vIOMMU, ~40 s under
    // TCG: past the harness's 30 s per-case timeout. With shmem THP the kernel backs it with
    // 2 MiB pages, which the vIOMMU maps (and QEMU forwards) 2 MiB at a time.
    'echo always > /sys/kernel/mm/transparent_hugepage/shmem_enabled 2>/dev/null || echo "edu-plus init: no shmem THP (the driver test maps 1 GiB page by page)"',
    'export VFIO_SELFTESTS_BDF="$EDU_PLUS_BDF"',
    `[ -e /dev/iommu ] || { export EDU_PLUS_IOMMU_MODE=${FALLBACK_IOMMU_MODE}; echo "edu-plus init: no /dev/iommu: iommufd variants skipped, default IOMMU mode ${FALLBACK_IOMMU_MODE}"; }`,
  ];
}

/**
 * The shell command that runs one selftest program (between its markers, in a subshell).
 * `args`: the harness's own options for it (e.g. `-V vfio_type1_iommu -t send_msi`), as shell
 * words, given after the iommufd exclusions.
 */
export function selftestCommand(name: string, args = ''): string {
  // A case the harness stopped for its timeout leaves its forked test process behind, holding
  // the device's VFIO group: the next program could not open it and would fail too, blaming
  // the device. Whatever is left of this program is killed before the next one starts.
  return `${runSelftest(name, args)} s=$?; killall -q -9 ${name} 2>/dev/null; exit $s`;
}

function runSelftest(name: string, args: string): string {
  const prog = `${SELFTESTS_GUEST_DIR}/${name}${args.trim() === '' ? '' : ` ${args.trim()}`}`;
  if (name.includes('iommufd')) {
    // It tests iommufd itself: nothing of it can run without /dev/iommu.
    return `if [ -e /dev/iommu ]; then ${prog}; else echo ${sq(`1..0 # SKIP ${NO_IOMMUFD_REASON}`)}; (exit 4); fi;`;
  }
  const list = `/tmp/${name}.iommufd`;
  return [
    `if [ -e /dev/iommu ]; then ${prog}; else`,
    `${SELFTESTS_GUEST_DIR}/${name} -l 2>&1 >/dev/null | awk ${sq(IOMMUFD_VARIANTS_AWK)} > ${list};`,
    `sed -n ${sq(`s/^C \\(.*\\)/${DECLARED_SKIP} \\1 ${NO_IOMMUFD_REASON.replace(/\//g, '\\/')}/p`)} ${list};`,
    // The exclusions go first: the harness stops at the first filter that matches a case.
    `${SELFTESTS_GUEST_DIR}/${name} $(sed -n 's/^V /-V /p' ${list})${args.trim() === '' ? '' : ` ${args.trim()}`};`,
    'fi;',
  ].join(' ');
}
