import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { attachLine, qemuArgs, shellQuote } from './qemu-command.ts';

/** The values following each occurrence of `option`. */
function values(args: string[], option: string): string[] {
  return args.flatMap((a, i) => (a === option ? [args[i + 1]!] : []));
}

const base = { kernel: '/k/vmlinuz', initrd: '/k/initrd.gz', accel: 'tcg' as const };

test('default VM: q35 split irqchip, shared memfd RAM, intel-iommu, serial console, TCG', () => {
  const args = qemuArgs(base);
  for (const flag of ['-nodefaults', '-nographic', '-no-reboot']) assert.ok(args.includes(flag), flag);
  assert.deepEqual(values(args, '-display'), ['none']);
  assert.deepEqual(values(args, '-serial'), ['stdio']);
  assert.deepEqual(values(args, '-machine'), ['q35,kernel-irqchip=split,memory-backend=mem']);
  assert.deepEqual(values(args, '-object'), ['memory-backend-memfd,id=mem,size=1024M,share=on']);
  assert.deepEqual(values(args, '-m'), ['1024M']);
  assert.deepEqual(values(args, '-accel'), ['tcg']);
  assert.deepEqual(values(args, '-cpu'), ['max']);
  assert.deepEqual(values(args, '-smp'), ['1']);
  assert.deepEqual(values(args, '-device'), ['intel-iommu,intremap=on,caching-mode=on']);
  assert.deepEqual(values(args, '-kernel'), ['/k/vmlinuz']);
  assert.deepEqual(values(args, '-initrd'), ['/k/initrd.gz']);
  assert.ok(!args.includes('-bios'), 'SeaBIOS (the default firmware), not qboot');
  const append = values(args, '-append')[0]!.split(' ');
  for (const p of ['console=ttyS0', 'panic=-1', 'intel_iommu=on', 'iommu=pt']) assert.ok(append.includes(p), p);
});

test('vfio-user device: JSON -device after the vIOMMU and the extra devices', () => {
  const args = qemuArgs({ ...base, socketPath: "/tmp/it's.sock", extraDevices: ['edu'], append: 'foo=1', memoryMiB: 512 });
  const devices = values(args, '-device');
  assert.equal(devices.length, 3);
  assert.equal(devices[0], 'intel-iommu,intremap=on,caching-mode=on');
  assert.equal(devices[1], 'edu');
  assert.deepEqual(JSON.parse(devices[2]!), { driver: 'vfio-user-pci', socket: { type: 'unix', path: "/tmp/it's.sock" } });
  assert.ok(values(args, '-append')[0]!.endsWith(' foo=1'));
  assert.deepEqual(values(args, '-object'), ['memory-backend-memfd,id=mem,size=512M,share=on']);
});

test('plain RAM, virtio-iommu and no-iommu variants', () => {
  const plain = qemuArgs({ ...base, sharedMemory: false, iommu: 'none' });
  assert.deepEqual(values(plain, '-object'), []);
  assert.deepEqual(values(plain, '-machine'), ['q35,kernel-irqchip=split']);
  assert.deepEqual(values(plain, '-device'), []);
  assert.ok(!values(plain, '-append')[0]!.includes('intel_iommu'));

  const virtio = qemuArgs({ ...base, iommu: 'virtio' });
  assert.deepEqual(values(virtio, '-device'), ['virtio-iommu-pci']);
  assert.ok(values(virtio, '-append')[0]!.includes('vfio_iommu_type1.allow_unsafe_interrupts=1'));

  const kvm = qemuArgs({ ...base, accel: 'kvm' });
  assert.deepEqual(values(kvm, '-cpu'), ['host']);
  assert.throws(() => qemuArgs({ ...base, memoryMiB: 10 }), /memoryMiB/);
});

test('shellQuote output survives a real shell unchanged', () => {
  const argv = ['plain', 'with space', "it's", '{"a":"b"}', '', '$HOME', 'a\nb', '-device'];
  const r = spawnSync('/bin/sh', ['-c', `for a in ${shellQuote(argv)}; do printf '%s\\0' "$a"; done`]);
  assert.equal(r.status, 0, r.stderr.toString());
  assert.deepEqual(r.stdout.toString().split('\0').slice(0, -1), argv);
});

test('attachLine is a shell-quoted JSON -device option', () => {
  const line = attachLine('/run/edu plus.sock');
  assert.equal(line, `-device '{"driver":"vfio-user-pci","socket":{"type":"unix","path":"/run/edu plus.sock"}}'`);
  const r = spawnSync('/bin/sh', ['-c', `printf '%s\\n' ${line}`]);
  assert.deepEqual(r.stdout.toString().split('\n').slice(0, 2), ['-device', '{"driver":"vfio-user-pci","socket":{"type":"unix","path":"/run/edu plus.sock"}}']);
});
