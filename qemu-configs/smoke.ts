// A smoke boot of the test VM with QEMU's in-process edu device (1234:11e8) and no vfio-user
// server: proves that QEMU, the guest kernel, the initramfs and the VFIO modules work together
// before any edu-plus code is involved, and measures how long a boot takes.

import { join } from 'node:path';
import { checkoutCacheDir } from './cache.ts';
import { defaultInit, guestModules } from './guest-init.ts';
import { buildInitramfs } from './initramfs.ts';
import { qemuArgs } from './qemu-command.ts';
import type { GuestKernel } from './provision-kernel.ts';
import type { QemuInstall } from './provision-qemu.ts';
import { runVm } from './run-vm.ts';
import type { RunVmResult } from './run-vm.ts';

export interface SmokeResult {
  ok: boolean;
  /** What was wrong, one sentence each; empty when ok. */
  problems: string[];
  run: RunVmResult;
  kernelRelease?: string;
  pciDevices: string[];
}

/** Guest commands: report the kernel, the PCI devices and whether vfio-pci can take edu. */
const SMOKE_COMMANDS = [
  'echo "smoke: uname $(uname -r)"',
  'for d in /sys/bus/pci/devices/*; do echo "smoke: pci $(basename $d) $(cat $d/vendor):$(cat $d/device)"; done',
  '[ -d /sys/bus/pci/drivers/vfio-pci ] && echo "smoke: vfio-pci driver registered"',
  // Binding edu to vfio-pci creates its IOMMU group's /dev/vfio/<n>: proof the vIOMMU works.
  'echo "1234 11e8" > /sys/bus/pci/drivers/vfio-pci/new_id',
  'echo "smoke: /dev/vfio: $(ls /dev/vfio | tr "\\n" " ")"',
  'echo "smoke: modules: $(cut -d" " -f1 /proc/modules | tr "\\n" " ")"',
];

/** Builds the smoke initramfs, boots it and checks the transcript. */
export async function smokeBoot(opts: {
  qemu: QemuInstall;
  kernel: GuestKernel;
  timeoutMs?: number;
  onLine?: (line: string) => void;
}): Promise<SmokeResult> {
  const initrd = join(checkoutCacheDir(), 'images', 'smoke-initramfs.cpio.gz');
  await buildInitramfs({
    kernel: opts.kernel,
    modules: guestModules('intel'),
    files: [],
    init: defaultInit({ commands: SMOKE_COMMANDS }),
    output: initrd,
  });
  const args = qemuArgs({ kernel: opts.kernel.vmlinuz, initrd, extraDevices: ['edu'] });
  const run = await runVm({ qemu: opts.qemu, args, timeoutMs: opts.timeoutMs ?? 120_000, onLine: opts.onLine });

  const smoke = run.lines.filter((l) => l.startsWith('smoke: ')).map((l) => l.slice('smoke: '.length));
  const kernelRelease = smoke.find((l) => l.startsWith('uname '))?.slice('uname '.length);
  const pciDevices = smoke.filter((l) => l.startsWith('pci ')).map((l) => l.slice('pci '.length));
  const problems: string[] = [];
  if (run.timedOut) problems.push(`QEMU did not finish within ${opts.timeoutMs ?? 120_000} ms`);
  if (run.initMs === undefined) problems.push('/init never started (see the console lines and QEMU stderr)');
  if (run.doneMs === undefined) problems.push('the done sentinel never appeared');
  if (kernelRelease !== opts.kernel.version) problems.push(`guest runs ${kernelRelease ?? 'no kernel'}, expected ${opts.kernel.version}`);
  if (!pciDevices.some((d) => d.endsWith('0x1234:0x11e8'))) problems.push('the edu device (1234:11e8) is not on the guest PCI bus');
  if (!smoke.includes('vfio-pci driver registered')) problems.push('vfio-pci did not load');
  if (!smoke.some((l) => /^\/dev\/vfio: .*\d/.test(l))) problems.push('no VFIO group appeared after binding edu to vfio-pci');
  return { ok: problems.length === 0, problems, run, kernelRelease, pciDevices };
}
