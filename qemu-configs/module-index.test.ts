// The module resolution rules (module-index.ts) on fixture trees made here: depmod's search
// order, modules.dep where present, ambiguity as an error naming the files, loop overrides.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, test } from 'node:test';
import { buildIdNote, fakeModule } from './fake-module.ts';
import { buildIdFromNote, readBuildId, resolveModuleClosure } from './module-closure.ts';
import { ModuleResolutionError, indexModules, moduleRank, parseModulesDep } from './module-index.ts';

let dir = '';
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'edu-plus-modindex-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** Writes a fake module at `rel` (xz-compressed when rel ends in .xz) with a build ID. */
function put(rel: string, buildId: string, depends = ''): string {
  const file = join(dir, rel);
  mkdirSync(dirname(file), { recursive: true });
  const name = rel.replace(/^.*\//, '').replace(/\.ko.*$/, '').replace(/-/g, '_');
  writeFileSync(file.replace(/\.xz$/, ''), fakeModule([`depends=${depends}`, `name=${name}`], buildId));
  if (rel.endsWith('.xz')) assert.equal(spawnSync('xz', ['-z', file.replace(/\.xz$/, '')]).status, 0);
  return file;
}

test('depmod search order: updates/ before extra/ before kernel/ before anything else', async () => {
  assert.deepEqual([moduleRank('updates/x.ko'), moduleRank('extra/x.ko'), moduleRank('kernel/x.ko'), moduleRank('misc/x.ko')].map((r) => r.rank), [0, 1, 2, 3]);
  put('kernel/drivers/vfio/pci/vfio-pci.ko.xz', 'aa01');
  put('extra/vfio-pci.ko', 'bb02');
  put('updates/vfio-pci.ko', 'cc03');
  put('kernel/drivers/vfio/vfio.ko.xz', 'dd04');
  put('extra/vfio.ko', 'ee05');
  const index = await indexModules(dir);
  const pci = index.choose('vfio-pci')!;
  assert.equal(pci.rel, 'updates/vfio-pci.ko');
  assert.equal(pci.origin, 'updates');
  assert.deepEqual(pci.shadowed.map((f) => f.slice(dir.length + 1)), ['extra/vfio-pci.ko', 'kernel/drivers/vfio/pci/vfio-pci.ko.xz']);
  assert.equal(index.choose('vfio')!.rel, 'extra/vfio.ko');
  assert.equal(index.choose('nothing'), undefined);
});

test('a .ko and a .ko.xz of one module at the same rank are an error naming both files', async () => {
  put('updates/vfio-pci.ko.xz', 'bb02'); // first: xz replaces the plain file it compresses
  put('updates/vfio-pci.ko', 'aa01');
  put('kernel/drivers/vfio/vfio.ko', 'cc03');
  const index = await indexModules(dir);
  assert.throws(() => index.choose('vfio_pci'), (err: Error) => err instanceof ModuleResolutionError &&
    err.message.includes('updates/vfio-pci.ko and updates/vfio-pci.ko.xz'));
  assert.equal(index.choose('vfio')!.rel, 'kernel/drivers/vfio/vfio.ko', 'other modules still resolve');
});

test('two directories of one rank holding the same module are ambiguous too', async () => {
  put('updates/a/vfio-pci.ko', 'aa01');
  put('updates/b/vfio_pci.ko', 'bb02');
  const index = await indexModules(dir);
  assert.throws(() => index.choose('vfio-pci'), /updates\/a\/vfio-pci\.ko and updates\/b\/vfio_pci\.ko/);
});

test('modules.dep is followed where present, and a stale one is an error saying to run depmod', async () => {
  assert.deepEqual([...parseModulesDep('kernel/a/x-y.ko.xz: kernel/b.ko\n\nupdates/z.ko:\n')], [['x_y', 'kernel/a/x-y.ko.xz'], ['z', 'updates/z.ko']]);
  put('kernel/drivers/vfio/pci/vfio-pci.ko.xz', 'aa01');
  put('kernel/drivers/vfio/vfio.ko.xz', 'bb02');
  writeFileSync(join(dir, 'modules.dep'), 'kernel/drivers/vfio/pci/vfio-pci.ko.xz: kernel/drivers/vfio/vfio.ko.xz\nkernel/drivers/vfio/vfio.ko.xz:\n');
  assert.equal((await indexModules(dir)).choose('vfio_pci')!.rel, 'kernel/drivers/vfio/pci/vfio-pci.ko.xz');
  // A module copied into updates/ after depmod ran: modprobe would still load kernel/'s.
  put('updates/vfio-pci.ko', 'cc03');
  const stale = await indexModules(dir);
  assert.throws(() => stale.choose('vfio_pci'), /modules\.dep names kernel\/drivers\/vfio\/pci\/vfio-pci\.ko\.xz, but updates\/vfio-pci\.ko ranks higher.*run depmod/);
  put('updates/new-mod.ko', 'dd04');
  assert.throws(() => stale.choose('vfio_pci'), ModuleResolutionError);
  const later = await indexModules(dir);
  assert.throws(() => later.choose('new_mod'), /updates\/new-mod\.ko is in .* but not in its modules\.dep/);
});

test('modules the loop built override the tree and go to updates/ in the guest; build IDs are read', async () => {
  const stock = put('kernel/drivers/vfio/pci/vfio-pci.ko.xz', '1111', 'vfio');
  put('kernel/drivers/vfio/vfio.ko.xz', '2222');
  const buildDir = mkdtempSync(join(tmpdir(), 'edu-plus-modbuild-'));
  const built = join(buildDir, 'vfio-pci.ko');
  writeFileSync(built, fakeModule(['depends=vfio', 'name=vfio_pci'], '3333'));
  const closure = await resolveModuleClosure(dir, ['vfio-pci'], [{ name: 'vfio_pci', file: built }]);
  rmSync(buildDir, { recursive: true, force: true });
  const pci = closure.modules.find((m) => m.name === 'vfio_pci')!;
  assert.equal(pci.origin, 'override');
  assert.equal(pci.path, 'updates/edu-plus/vfio-pci.ko');
  assert.equal(pci.source, built);
  assert.equal(pci.buildId, '3333');
  assert.deepEqual(pci.shadowed, [{ file: stock, buildId: '1111' }]);
  assert.equal(closure.modules.find((m) => m.name === 'vfio')!.buildId, '2222');
  assert.equal(readBuildId(fakeModule(['name=x'])), undefined);
  assert.equal(buildIdFromNote(buildIdNote(Buffer.from('0123456789abcdef0123456789abcdef01234567', 'hex'))), '0123456789abcdef0123456789abcdef01234567');
});
