/**
 * The VM side of the end-to-end tests: provision QEMU, the guest kernel and the guest tests,
 * pack them into an initramfs whose /init runs the tests, boot it against a vfio-user socket,
 * and hand back the console with the KTAP results parsed.
 */
import { join } from 'node:path';
import { buildGuestTests } from '../../guest-tests/build.ts';
import { checkoutCacheDir } from '../../qemu-configs/cache.ts';
import { defaultInit } from '../../qemu-configs/guest-init.ts';
import { buildInitramfs } from '../../qemu-configs/initramfs.ts';
import { type GuestKernel, provisionKernel } from '../../qemu-configs/provision-kernel.ts';
import { type QemuInstall, provisionQemu } from '../../qemu-configs/provision-qemu.ts';
import { qemuArgs } from '../../qemu-configs/qemu-command.ts';
import { type KtapReport, parseKtap, type RunVmResult, runVm } from '../../qemu-configs/run-vm.ts';
import { PANIC } from '../../cli/vm-report.ts';

/**
 * The message for a guest that never printed its done sentinel: the kernel's own panic line when
 * it panicked (a boot under heavy load can), else the end of its console, so a failure says who
 * stopped it rather than leaving the device suspected.
 */
export function notDoneReason(vm: Pick<RunVmResult, 'lines'>): string {
  const panic = vm.lines.find((l) => PANIC.test(l));
  if (panic) return `the guest kernel panicked before /init finished: ${panic.trim()}`;
  return `the guest never printed its done sentinel; its console ended with:\n${vm.lines.slice(-12).join('\n')}`;
}

export interface TestVm {
  readonly qemu: QemuInstall;
  readonly kernel: GuestKernel;
  readonly initrd: string;
}

/**
 * Provisions (cached after the first run) and builds an initramfs running `tests` in order, or
 * `commands` when given (e.g. a test with arguments: `/tests/edu_plus_reset pm`).
 */
export async function provisionTestVm(opts: { tests: string[]; name?: string; commands?: string[] }): Promise<TestVm> {
  const [qemu, kernel, built] = await Promise.all([provisionQemu(), provisionKernel(), buildGuestTests()]);
  const files = opts.tests.map((name) => {
    const bin = built.binaries.find((b) => b.name === name);
    if (!bin) throw new Error(`guest test ${name} was not built (have: ${built.binaries.map((b) => b.name).join(', ')})`);
    return { src: bin.path, dest: `/tests/${name}` };
  });
  const initrd = join(checkoutCacheDir(), 'images', `${opts.name ?? opts.tests.join('+')}.cpio.gz`);
  await buildInitramfs({
    kernel,
    modules: ['vfio-pci', 'vfio_iommu_type1'],
    files,
    init: defaultInit({ commands: opts.commands ?? opts.tests.map((name) => `/tests/${name}`) }),
    output: initrd,
  });
  return { qemu, kernel, initrd };
}

export interface GuestRun {
  readonly vm: RunVmResult;
  /** Top-level KTAP results. */
  readonly ktap: KtapReport;
  /** The console lines that are KTAP (version, plan, results, diagnostics), for the log. */
  readonly ktapLines: string[];
}

const KTAP_LINE = /^\s*(KTAP version \d+|1\.\.\d+|ok \d+|not ok \d+|# )/;

/**
 * Boots the VM and collects the guest tests' KTAP: with edu-plus attached at socketPath, or
 * with QEMU's own devices only (e.g. extraDevices ['edu'], the reference implementation).
 */
export async function bootGuestTests(
  vm: TestVm,
  opts: { socketPath?: string; extraDevices?: string[]; timeoutMs: number; sharedMemory?: boolean },
): Promise<GuestRun> {
  const args = qemuArgs({
    kernel: vm.kernel.vmlinuz,
    initrd: vm.initrd,
    socketPath: opts.socketPath,
    sharedMemory: opts.sharedMemory,
    extraDevices: opts.extraDevices,
  });
  const result = await runVm({ qemu: vm.qemu, args, timeoutMs: opts.timeoutMs });
  const report = parseKtap(result.lines);
  return {
    vm: result,
    ktap: { plan: report.plan, results: report.results.filter((r) => r.indent === 0) },
    ktapLines: result.lines.filter((l) => KTAP_LINE.test(l)),
  };
}
