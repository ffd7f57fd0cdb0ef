// Builds QEMU's command line for a test VM: q35 + a vIOMMU (VFIO in the guest needs one),
// direct kernel boot with the initramfs, the serial console on stdio, and optionally the
// edu-plus device attached through vfio-user.

import { existsSync, readFileSync } from 'node:fs';

export type IommuKind = 'intel' | 'virtio' | 'none';
export type Accel = 'tcg' | 'kvm';

export interface QemuArgsOptions {
  kernel: string;
  initrd: string;
  /** Extra kernel command line, appended after the defaults. */
  append?: string;
  /** Guest RAM (default 1024). */
  memoryMiB?: number;
  /** vfio-user server socket; when given, a vfio-user-pci device is attached to it. */
  socketPath?: string;
  /**
   * Default true: guest RAM is a shared memfd, so QEMU's DMA_MAP messages carry an fd the
   * server can mmap. False: plain RAM, DMA_MAP without fds (the server must use DMA_READ/WRITE).
   */
  sharedMemory?: boolean;
  /** Default 'intel'. */
  iommu?: IommuKind;
  /** More -device values, e.g. ['edu'] for QEMU's in-process edu device (1234:11e8). */
  extraDevices?: string[];
  /** Default: 'kvm' when kvmUsable(), else 'tcg'. */
  accel?: Accel;
}

/**
 * True only for real hardware virtualisation: /dev/kvm present, vmx or svm in /proc/cpuinfo,
 * and not PVM (/sys/module/kvm_pvm). PVM creates VMs fine, but its instruction emulator fails
 * on stock Debian kernels ("KVM internal error. Suberror: 1") and leaves QEMU paused.
 */
export function kvmUsable(): boolean {
  if (!existsSync('/dev/kvm') || existsSync('/sys/module/kvm_pvm')) return false;
  try {
    return /^flags\s*:.*\b(vmx|svm)\b/m.test(readFileSync('/proc/cpuinfo', 'utf8'));
  } catch {
    return false;
  }
}

/** The -device value that attaches a vfio-user-pci device to a server socket (JSON syntax). */
export function vfioUserDevice(socketPath: string): string {
  return JSON.stringify({ driver: 'vfio-user-pci', socket: { type: 'unix', path: socketPath } });
}

/** Kernel command line defaults: serial console, no reboot loops, warnings and up only. */
function kernelCommandLine(iommu: IommuKind, append: string | undefined): string {
  // edd=off: the boot stub's EDD probe costs time and leaves "Probing EDD... ok" without a
  // newline, glued to the first line /init prints.
  const parts = ['console=ttyS0', 'panic=-1', 'loglevel=4', 'edd=off'];
  if (iommu === 'intel') parts.push('intel_iommu=on', 'iommu=pt');
  // x86 has no interrupt remapping with virtio-iommu; without this VFIO_SET_IOMMU fails (EPERM).
  if (iommu === 'virtio') parts.push('vfio_iommu_type1.allow_unsafe_interrupts=1');
  if (append !== undefined && append.trim() !== '') parts.push(append.trim());
  return parts.join(' ');
}

/** QEMU's argv (without the binary) for a test VM. */
export function qemuArgs(opts: QemuArgsOptions): string[] {
  const memoryMiB = opts.memoryMiB ?? 1024;
  if (!Number.isInteger(memoryMiB) || memoryMiB < 64) throw new Error(`memoryMiB must be an integer >= 64, got ${memoryMiB}`);
  const iommu = opts.iommu ?? 'intel';
  const accel = opts.accel ?? (kvmUsable() ? 'kvm' : 'tcg');
  const shared = opts.sharedMemory ?? true;

  // kernel-irqchip=split is what intel-iommu's interrupt remapping needs under KVM; it is the
  // configuration tested with vfio-user devices and is harmless under TCG.
  const machine = ['q35', 'kernel-irqchip=split'];
  if (shared) machine.push('memory-backend=mem');

  const args = [
    '-nodefaults', '-nographic', '-display', 'none', '-no-reboot',
    '-serial', 'stdio',
    '-machine', machine.join(','),
    '-accel', accel,
    '-cpu', accel === 'kvm' ? 'host' : 'max',
    '-smp', '1',
    '-m', `${memoryMiB}M`,
  ];
  if (shared) args.push('-object', `memory-backend-memfd,id=mem,size=${memoryMiB}M,share=on`);
  // The vIOMMU comes before any PCI device so every device is created behind it. QEMU wants
  // caching-mode for VFIO-style devices (it must see every guest mapping change).
  if (iommu === 'intel') args.push('-device', 'intel-iommu,intremap=on,caching-mode=on');
  if (iommu === 'virtio') args.push('-device', 'virtio-iommu-pci');
  for (const device of opts.extraDevices ?? []) args.push('-device', device);
  if (opts.socketPath !== undefined) args.push('-device', vfioUserDevice(opts.socketPath));
  args.push('-kernel', opts.kernel, '-initrd', opts.initrd, '-append', kernelCommandLine(iommu, opts.append));
  return args;
}

/** Quotes one argument for a POSIX shell (single quotes unless it is plainly safe). */
export function shellQuoteArg(arg: string): string {
  if (arg !== '' && /^[A-Za-z0-9_@%+=:,./-]+$/.test(arg)) return arg;
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** A copy-pasteable shell command line for argv. */
export function shellQuote(argv: readonly string[]): string {
  return argv.map(shellQuoteArg).join(' ');
}

/** The option that attaches a QEMU to a running server, shell-quoted, for printing to users. */
export function attachLine(socketPath: string): string {
  return `-device ${shellQuoteArg(vfioUserDevice(socketPath))}`;
}
