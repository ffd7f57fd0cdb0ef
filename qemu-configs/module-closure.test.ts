import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fakeModule } from './fake-module.ts';
import { canonicalModuleName, modulesAlias, modulesDep, readModinfo, resolveModuleClosure } from './module-closure.ts';

test('readModinfo returns repeated keys as lists', () => {
  const info = readModinfo(fakeModule(['alias=pci:v00001234d*', 'alias=vfio:foo', 'depends=vfio,irqbypass', 'name=vfio_pci']));
  assert.deepEqual(info.get('alias'), ['pci:v00001234d*', 'vfio:foo']);
  assert.deepEqual(info.get('depends'), ['vfio,irqbypass']);
  assert.deepEqual(info.get('name'), ['vfio_pci']);
  assert.throws(() => readModinfo(Buffer.from('not an elf file at all, really, not at all; more bytes to be sure.')), /not an ELF/);
});

test('canonical names treat dashes as underscores and drop paths and extensions', () => {
  assert.equal(canonicalModuleName('kernel/drivers/vfio/pci/vfio-pci-core.ko.xz'), 'vfio_pci_core');
  assert.equal(canonicalModuleName('vfio-pci'), 'vfio_pci');
});

test('resolves the depends= closure from .ko and .ko.xz files, dependencies first', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'edu-plus-mods-'));
  try {
    const put = (rel: string, modinfo: string[]): void => {
      const file = join(dir, rel);
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(file.replace(/\.xz$/, ''), fakeModule(modinfo));
      if (rel.endsWith('.xz')) assert.equal(spawnSync('xz', ['-z', file.replace(/\.xz$/, '')]).status, 0);
    };
    put('kernel/drivers/vfio/pci/vfio-pci.ko.xz', ['depends=vfio-pci-core,vfio', 'alias=pci:v*d*sv*sd*bc*sc*i*', 'name=vfio_pci']);
    put('kernel/drivers/vfio/pci/vfio-pci-core.ko.xz', ['depends=vfio,irqbypass,builtin_thing', 'name=vfio_pci_core']);
    put('kernel/drivers/vfio/vfio.ko', ['depends=', 'name=vfio']);
    put('kernel/virt/lib/irqbypass.ko.xz', ['depends=', 'name=irqbypass']);
    put('kernel/drivers/vfio/vfio_iommu_type1.ko', ['depends=vfio', 'name=vfio_iommu_type1']);
    put('kernel/unrelated/other.ko', ['depends=', 'name=other']);
    writeFileSync(join(dir, 'modules.builtin'), 'kernel/lib/builtin_thing.ko\nkernel/lib/builtin-two.ko\n');

    const closure = await resolveModuleClosure(dir, ['vfio-pci', 'vfio_iommu_type1', 'builtin-two']);
    const names = closure.modules.map((m) => m.name);
    assert.deepEqual(closure.builtin, ['builtin_two']);
    assert.deepEqual(new Set(names), new Set(['vfio_pci', 'vfio_pci_core', 'vfio', 'irqbypass', 'vfio_iommu_type1']));
    for (const mod of closure.modules) {
      for (const dep of mod.depends.filter((d) => names.includes(d))) {
        assert.ok(names.indexOf(dep) < names.indexOf(mod.name), `${dep} must come before ${mod.name}`);
      }
      assert.ok(mod.path.endsWith('.ko'), mod.path);
      assert.equal(readModinfo(mod.data).get('name')![0], mod.name); // decompressed
    }

    const dep = new Map(modulesDep(closure.modules).trim().split('\n').map((l) => {
      const [k, v] = l.split(':');
      return [k!, v!.trim() === '' ? [] : v!.trim().split(' ')];
    }));
    assert.deepEqual(dep.get('kernel/drivers/vfio/vfio.ko'), []);
    const line = dep.get('kernel/drivers/vfio/pci/vfio-pci.ko')!;
    assert.equal(line.length, 3);
    assert.equal(line[0], 'kernel/drivers/vfio/pci/vfio-pci-core.ko', 'dependents first');
    assert.ok(line.indexOf('kernel/drivers/vfio/vfio.ko') > 0, 'basic modules last');
    assert.match(modulesAlias(closure.modules), /^alias pci:v\*d\*sv\*sd\*bc\*sc\*i\* vfio_pci$/m);

    await assert.rejects(resolveModuleClosure(dir, ['no-such-module']), /no_such_module .* neither/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
