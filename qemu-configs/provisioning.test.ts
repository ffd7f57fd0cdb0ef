// Pure helpers of the provisioning steps: apt output parsing, version checks, kernel choice,
// the generated /init. (The network-bound steps themselves are exercised by provision.ts.)

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { debFileName, parseSimulatedInstall, sourcesListText } from './debian-archive.ts';
import { defaultInit, GUEST_DONE_SENTINEL, GUEST_INIT_SENTINEL, guestModules } from './guest-init.ts';
import { parseAppletList } from './provision-busybox.ts';
import { pickKernelRelease } from './provision-kernel.ts';
import { parseQemuVersion, versionAtLeast } from './provision-qemu.ts';
import { kernelLineOf, madisonVersions } from './provision-linux-source.ts';

test('apt simulation output becomes name/version/arch, epochs escaped in file names', () => {
  const out = [
    'NOTE: This is only a simulation!',
    'Inst gcc-14-base (14.2.0-19 Debian:13.1/stable [amd64])',
    'Inst qemu-system-x86 (1:11.1.3+ds-1~bpo13+1 Debian Backports:stable-backports [amd64])',
    'Inst qemu-system-data (1:11.1.3+ds-1~bpo13+1 Debian Backports:stable-backports [all])',
    'Conf gcc-14-base (14.2.0-19 Debian:13.1/stable [amd64])',
  ].join('\n');
  const pkgs = parseSimulatedInstall(out);
  assert.deepEqual(pkgs.map((p) => [p.name, p.version, p.arch]), [
    ['gcc-14-base', '14.2.0-19', 'amd64'],
    ['qemu-system-x86', '1:11.1.3+ds-1~bpo13+1', 'amd64'],
    ['qemu-system-data', '1:11.1.3+ds-1~bpo13+1', 'all'],
  ]);
  assert.equal(debFileName('qemu-system-x86', '1:11.1.3+ds-1~bpo13+1', 'amd64'), 'qemu-system-x86_1%3a11.1.3+ds-1~bpo13+1_amd64.deb');
});

test('the private sources list names trixie and trixie-backports on the given mirror', () => {
  const text = sourcesListText('http://mirror.example/debian');
  assert.match(text, /^deb \[signed-by=\/usr\/share\/keyrings\/debian-archive-keyring\.gpg\] http:\/\/mirror\.example\/debian trixie main$/m);
  assert.match(text, / trixie-backports main$/m);
});

test('QEMU version parsing and the >= 10.1 check', () => {
  assert.equal(parseQemuVersion('QEMU emulator version 11.1.3 (Debian 1:11.1.3+ds-1~bpo13+1)\nCopyright'), '11.1.3');
  assert.equal(parseQemuVersion('something else'), undefined);
  assert.equal(versionAtLeast('10.1.0', [10, 1]), true);
  assert.equal(versionAtLeast('10.0.13', [10, 1]), false);
  assert.equal(versionAtLeast('7.2.15', [10, 1]), false);
  assert.equal(versionAtLeast('11.0', [10, 1]), true);
  assert.equal(versionAtLeast('10.10.1', [10, 9]), true);
});

test('picks the newest kernel of the line and flavour', () => {
  const search = [
    'linux-binary-unsigned-7.2.12+deb13-amd64 - Linux 7.2.12 for 64-bit PCs (unsigned kernel image)',
    'linux-binary-unsigned-7.3.4+deb13-amd64 - Linux 7.3.4 for 64-bit PCs (unsigned kernel image)',
    'linux-binary-unsigned-7.3.10+deb13-amd64 - Linux 7.3.10 for 64-bit PCs (unsigned kernel image)',
    'linux-binary-unsigned-7.3.11+deb13-cloud-amd64 - Linux 7.3.11 for x86-64 cloud (unsigned kernel image)',
    'linux-binary-unsigned-7.30.1+deb13-amd64 - not the 7.3 line',
    'linux-binary-unsigned-7.4.1+deb13-rt-amd64 - Linux 7.4.1 for 64-bit PCs (unsigned kernel image)',
  ].join('\n');
  assert.equal(pickKernelRelease(search, '7.3', 'amd64'), '7.3.10+deb13-amd64');
  assert.equal(pickKernelRelease(search, '7.3', 'cloud-amd64'), '7.3.11+deb13-cloud-amd64');
  assert.equal(pickKernelRelease(search, '7', 'amd64'), '7.30.1+deb13-amd64');
  assert.equal(pickKernelRelease(search, '7.5', 'amd64'), undefined);
});

test('busybox applet list must contain what /init uses', () => {
  const full = ['/bin/sh', '/bin/mount', '/bin/mkdir', '/sbin/modprobe', '/sbin/insmod', '/bin/cat', '/bin/echo', '/bin/ls',
    '/sbin/poweroff', '/bin/sleep', '/bin/grep', '/usr/bin/tr'].join('\n');
  assert.ok(parseAppletList(full).includes('usr/bin/tr'));
  assert.throws(() => parseAppletList('/bin/sh\n/bin/ls\n'), /modprobe/);
});

test('the default /init mounts, loads VFIO, runs the commands in order and ends with the sentinel', () => {
  const init = defaultInit({ commands: ['echo first', 'echo second'] });
  const lines = init.split('\n');
  assert.equal(lines[0], '#!/bin/sh');
  const at = (needle: string): number => lines.findIndex((l) => l.includes(needle));
  for (const needle of ['mount -t proc', 'mount -t sysfs', 'mount -t devtmpfs', 'debugfs /sys/kernel/debug',
    'modprobe vfio_iommu_type1', 'modprobe vfio-pci', 'echo first', 'echo second', GUEST_DONE_SENTINEL, 'poweroff -f']) {
    assert.ok(at(needle) >= 0, needle);
  }
  assert.ok(at(GUEST_INIT_SENTINEL) < at('mount -t proc'));
  assert.ok(at('modprobe vfio-pci') < at('echo first'));
  assert.ok(at('echo first') < at('echo second'));
  assert.ok(at('echo second') < at(GUEST_DONE_SENTINEL));
  assert.ok(at(GUEST_DONE_SENTINEL) < at('poweroff -f'));
});

test('virtio-iommu guests load the IOMMU driver before vfio-pci', () => {
  assert.deepEqual(guestModules('intel'), ['vfio_iommu_type1', 'vfio-pci']);
  const virtio = guestModules('virtio');
  assert.ok(virtio.indexOf('virtio_iommu') >= 0 && virtio.indexOf('virtio_iommu') < virtio.indexOf('vfio-pci'));
  const init = defaultInit({ commands: [], modules: virtio });
  assert.ok(init.indexOf('modprobe virtio_iommu') < init.indexOf('modprobe vfio-pci'));
});

test('the kernel line of a release and madison rows of exactly one package', () => {
  assert.equal(kernelLineOf('7.3.4+deb13-amd64'), '7.3');
  assert.equal(kernelLineOf('10.12.1+deb14-cloud-amd64'), '10.12');
  assert.throws(() => kernelLineOf('vmlinuz'), /major\.minor/);
  const madison = [
    'linux-source-7.3 | 7.3.4-1~bpo13+1 | http://mirror.example/debian trixie-backports/main amd64 Packages',
    'linux-source-7.30 | 7.30.1-1 | http://mirror.example/debian trixie/main amd64 Packages',
    '',
  ].join('\n');
  assert.deepEqual(madisonVersions(madison, 'linux-source-7.3'), ['7.3.4-1~bpo13+1']);
  assert.deepEqual(madisonVersions(madison, 'linux-source-7.2'), []);
});
