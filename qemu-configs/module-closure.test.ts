import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { canonicalModuleName, modulesAlias, modulesDep, readModinfo, resolveModuleClosure } from './module-closure.ts';

/**
 * A minimal ELF64 LE relocatable with a null section, .modinfo and .shstrtab, built here
 * from the ELF spec so the reader is not tested against its own assumptions.
 */
function fakeModule(modinfo: string[]): Buffer {
  const info = Buffer.from(modinfo.map((s) => `${s}\0`).join(''));
  const shstrtab = Buffer.from('\0.modinfo\0.shstrtab\0');
  const infoOff = 64;
  const strOff = infoOff + info.length;
  const shoff = Math.ceil((strOff + shstrtab.length) / 8) * 8;
  const out = Buffer.alloc(shoff + 3 * 64);
  out.write('\x7fELF', 0, 'latin1');
  out[4] = 2; // ELFCLASS64
  out[5] = 1; // ELFDATA2LSB
  out[6] = 1; // EV_CURRENT
  out.writeUInt16LE(1, 0x10); // ET_REL
  out.writeUInt16LE(62, 0x12); // EM_X86_64
  out.writeBigUInt64LE(BigInt(shoff), 0x28);
  out.writeUInt16LE(64, 0x34); // e_ehsize
  out.writeUInt16LE(64, 0x3a); // e_shentsize
  out.writeUInt16LE(3, 0x3c); // e_shnum
  out.writeUInt16LE(2, 0x3e); // e_shstrndx
  info.copy(out, infoOff);
  shstrtab.copy(out, strOff);
  const sh = (i: number, name: number, type: number, off: number, size: number): void => {
    const at = shoff + i * 64;
    out.writeUInt32LE(name, at);
    out.writeUInt32LE(type, at + 4);
    out.writeBigUInt64LE(BigInt(off), at + 24);
    out.writeBigUInt64LE(BigInt(size), at + 32);
  };
  sh(1, 1, 1 /* PROGBITS */, infoOff, info.length);
  sh(2, 10, 3 /* STRTAB */, strOff, shstrtab.length);
  return out;
}

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
