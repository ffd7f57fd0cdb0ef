/** What we print so a user can attach the device to their own QEMU. */
import { vfioUserDevice } from '../qemu-configs/qemu-command.ts';

/** Quotes one shell word (single quotes; safe for paths and JSON). */
export function shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** The `-device ...` option that attaches a vfio-user-pci device to socketPath. */
export function attachOption(socketPath: string): string {
  return `-device ${shellWord(vfioUserDevice(socketPath))}`;
}

/** A whole QEMU command line a user can start from (TCG; add -accel kvm on real hardware). */
export function exampleQemuCommand(socketPath: string): string {
  return [
    'qemu-system-x86_64 -machine q35,kernel-irqchip=split,memory-backend=mem -accel tcg -cpu max -m 1G',
    '-object memory-backend-memfd,id=mem,size=1G,share=on',
    '-device intel-iommu,intremap=on,caching-mode=on',
    attachOption(socketPath),
  ].join(' ');
}
