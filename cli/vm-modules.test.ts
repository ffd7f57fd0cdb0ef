// The module provenance part of the vm verdict (cli/vm-report.ts): the guest's MODULE_REPORT
// lines parsed, and the run failing when the module the guest runs is not the one we packed.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildIdNote } from '../qemu-configs/fake-module.ts';
import { UsageError } from './flags.ts';
import { parseVmFlags } from './vm.ts';
import { type ExpectedModule, judgeModules, parseModuleReports } from './vm-report.ts';

const STOCK_ID = 'aa'.repeat(20);
const BUILT_ID = 'bb'.repeat(20);

/** A report line as /init prints it, with the sysfs note of `buildId`. */
function reportLine(name: string, file: string, taint: string, buildId: string, params = '-'): string {
  const note = buildIdNote(Buffer.from(buildId, 'hex')).toString('hex');
  return `EDU_PLUS_MODULE name=${name} file=${file} taint=${taint} srcversion=- buildid=${note} params=${params} vermagic=7.3.4+deb13-amd64 SMP preempt mod_unload `;
}

const built: ExpectedModule = {
  name: 'vfio_pci', path: 'updates/edu-plus/vfio-pci.ko', source: '/cache/build/pci/vfio-pci.ko', origin: 'override',
  buildId: BUILT_ID, shadowed: [{ file: '/kernel/drivers/vfio/pci/vfio-pci.ko.xz', buildId: STOCK_ID }],
};

test('report lines parse into name, file, taint, build ID, parameters and vermagic', () => {
  const [r] = parseModuleReports(['noise', reportLine('vfio_pci', 'updates/edu-plus/vfio-pci.ko', 'OE', BUILT_ID, 'ids,my_param')]);
  assert.deepEqual(r, {
    name: 'vfio_pci', file: 'updates/edu-plus/vfio-pci.ko', taint: 'OE', srcversion: '-', buildId: BUILT_ID,
    params: ['ids', 'my_param'], vermagic: '7.3.4+deb13-amd64 SMP preempt mod_unload',
  });
  assert.equal(parseModuleReports(['EDU_PLUS_MODULE name=vfio file=- taint= srcversion=- buildid=- params=- vermagic='])[0]!.buildId, undefined);
});

test('the built module running out of tree: provenance printed, no problem', () => {
  const out = judgeModules(parseModuleReports([reportLine('vfio_pci', built.path, 'OE', BUILT_ID)]), [built], { developerModules: true, vfioSrc: '/src/linux' });
  assert.deepEqual(out.problems, []);
  assert.match(out.lines.join('\n'), /vfio_pci\s+out-of-tree \(taint OE\)\s+updates\/edu-plus\/vfio-pci\.ko\s+<- built from \/src\/linux/);
});

test('the stock module loaded in place of the built one fails the run and says so', () => {
  const out = judgeModules(parseModuleReports([reportLine('vfio_pci', 'kernel/drivers/vfio/pci/vfio-pci.ko', '', STOCK_ID)]), [built], { developerModules: true });
  assert.equal(out.problems.length, 2);
  assert.match(out.problems[0]!, /that is the stock \/kernel\/drivers\/vfio\/pci\/vfio-pci\.ko\.xz, so your module did not load/);
  assert.match(out.problems[1]!, /in-tree module .* the stock module ran, not yours/);
});

test('a developer module that never loaded fails the run; a stock run without VFIO modules says nothing', () => {
  const out = judgeModules([], [built], { developerModules: true });
  assert.match(out.problems[0]!, /vfio_pci: your updates\/edu-plus\/vfio-pci\.ko was packed but the guest did not load it/);
  assert.match(out.lines.join('\n'), /NOT LOADED/);
  assert.deepEqual(judgeModules([], [], { developerModules: false }), { lines: [], problems: [] });
});

test('--vfio-src takes no --kernel, --modules or --headers: it builds for the provisioned kernel from the tree', () => {
  assert.equal(parseVmFlags(['--vfio-src', '/src/linux']).vfioSrc, '/src/linux');
  for (const other of [['--kernel', 'bzImage', '--modules', 'none'], ['--headers', '/tmp/h']]) {
    assert.throws(() => parseVmFlags(['--vfio-src', '/src/linux', ...other]), (e: Error) => e instanceof UsageError && /drop --kernel\/--modules\/--headers/.test(e.message));
  }
});
