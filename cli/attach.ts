/** What we print so a user can attach the device to their own QEMU. */
import { attachLine } from '../qemu-configs/qemu-command.ts';

/** A whole QEMU command line a user can start from (TCG; add -accel kvm on real hardware). */
export function exampleQemuCommand(socketPath: string): string {
  return [
    'qemu-system-x86_64 -machine q35,kernel-irqchip=split,memory-backend=mem -accel tcg -cpu max -m 1G',
    '-object memory-backend-memfd,id=mem,size=1G,share=on',
    '-device intel-iommu,intremap=on,caching-mode=on',
    attachLine(socketPath),
  ].join(' ');
}
