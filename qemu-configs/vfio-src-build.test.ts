// The out-of-tree loop's checks and helpers without a compiler: tree validation, the release
// match, the variant drivers left out, the compiler error excerpt, the kbuild config reader.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { KernelInputError } from './custom-kernel.ts';
import { configString, splitRelease } from './provision-kbuild.ts';
import { checkVfioTree, compilerErrorExcerpt, makefileKernelVersion, upstreamOfRelease, variantDriverSymbols } from './vfio-src-build.ts';

const RELEASE = '7.3.4+deb13-amd64';

function fakeTree(makefile: string, withVfio = true): string {
  const dir = mkdtempSync(join(tmpdir(), 'edu-plus-tree-'));
  writeFileSync(join(dir, 'Makefile'), makefile);
  writeFileSync(join(dir, 'Kconfig'), 'mainmenu "Linux"\n');
  if (withVfio) {
    mkdirSync(join(dir, 'drivers/vfio/pci'), { recursive: true });
    writeFileSync(join(dir, 'drivers/vfio/pci/Makefile'), 'obj-$(CONFIG_VFIO_PCI) += vfio-pci.o\n');
  }
  return dir;
}

const MAKEFILE = (sub: string, extra = ''): string => `# SPDX-License-Identifier: GPL-2.0\nVERSION = 7\nPATCHLEVEL = 3\nSUBLEVEL = ${sub}\nEXTRAVERSION =${extra}\nNAME = x\n`;

test('the kernel version of a tree comes from its Makefile; a release\'s from its prefix', () => {
  assert.equal(makefileKernelVersion(MAKEFILE('4')), '7.3.4');
  assert.equal(makefileKernelVersion(MAKEFILE('0', ' -rc2')), '7.3.0-rc2');
  assert.equal(makefileKernelVersion('obj-y += foo.o\n'), undefined);
  assert.equal(upstreamOfRelease(RELEASE), '7.3.4');
  assert.deepEqual(splitRelease(RELEASE), { abi: '7.3.4+deb13', flavour: 'amd64' });
  assert.deepEqual(splitRelease('7.3.4+deb13-cloud-amd64'), { abi: '7.3.4+deb13', flavour: 'cloud-amd64' });
});

test('a tree of the guest kernel\'s version passes; others are clear KernelInputErrors', async () => {
  const good = fakeTree(MAKEFILE('4'));
  const older = fakeTree(MAKEFILE('2'));
  const novfio = fakeTree(MAKEFILE('4'), false);
  const notTree = mkdtempSync(join(tmpdir(), 'edu-plus-nottree-'));
  try {
    assert.deepEqual(await checkVfioTree(good, RELEASE), { tree: good, version: '7.3.4' });
    await assert.rejects(checkVfioTree(older, RELEASE), (e: Error) => e instanceof KernelInputError &&
      /is Linux 7\.3\.2, but the guest kernel is 7\.3\.4\+deb13-amd64 \(Linux 7\.3\.4\)/.test(e.message));
    await assert.rejects(checkVfioTree(novfio, RELEASE), /has no drivers\/vfio\/pci\/Makefile/);
    await assert.rejects(checkVfioTree(notTree, RELEASE), /is not a Linux kernel tree/);
    await assert.rejects(checkVfioTree(join(notTree, 'missing'), RELEASE), /no such directory/);
    await assert.rejects(checkVfioTree(join(good, 'drivers/vfio/pci'), RELEASE), /not a Linux kernel tree .* not drivers\/vfio\/pci itself/);
  } finally {
    for (const d of [good, older, novfio, notTree]) rmSync(d, { recursive: true, force: true });
  }
});

test('variant driver subdirectories are switched off by their Kconfig symbols', () => {
  const makefile = 'vfio-pci-y := vfio_pci.o\nobj-$(CONFIG_VFIO_PCI) += vfio-pci.o\n\nobj-$(CONFIG_MLX5_VFIO_PCI)           += mlx5/\nobj-$(CONFIG_NVGRACE_GPU_VFIO_PCI) += nvgrace-gpu/\n';
  assert.deepEqual(variantDriverSymbols(makefile), ['CONFIG_MLX5_VFIO_PCI', 'CONFIG_NVGRACE_GPU_VFIO_PCI']);
});

test('a compile failure is shown as the compiler\'s error lines with context', () => {
  const out = ['  CC [M]  vfio_pci_core.o', 'vfio_pci.c: In function \'vfio_pci_probe\':', 'vfio_pci.c:180:9: error: \'x\' undeclared', '  180 |  x = 1;', '      |  ^',
    ...Array.from({ length: 50 }, (_, i) => `unrelated ${i}`), 'make[2]: *** [scripts/Makefile.build:287: vfio_pci.o] Error 1'].join('\n');
  const excerpt = compilerErrorExcerpt(out);
  assert.match(excerpt, /\| vfio_pci\.c:180:9: error: 'x' undeclared/);
  assert.match(excerpt, /\|   180 \|  x = 1;/);
  assert.match(excerpt, /\*\*\* \[scripts\/Makefile\.build/);
  assert.doesNotMatch(excerpt, /unrelated 20/);
});

test('kernel config strings are read with their quotes undone', () => {
  const config = 'CONFIG_CC_VERSION_TEXT="x86_64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0"\nCONFIG_X="a \\"b\\""\n';
  assert.equal(configString(config, 'CC_VERSION_TEXT'), 'x86_64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0');
  assert.equal(configString(config, 'X'), 'a "b"');
  assert.equal(configString(config, 'MISSING'), undefined);
});
