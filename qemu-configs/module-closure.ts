// Resolves the kernel modules an initramfs needs: the requested ones plus everything their
// `depends=` modinfo field names, transitively, decompressed (busybox insmod cannot read
// .ko.xz), with a modules.dep in depmod's format so `modprobe vfio-pci` works in the guest.
// Which file a name stands for follows modprobe's rules (module-index.ts).

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { canonicalModuleName, type ModuleChoice, indexModules } from './module-index.ts';
import { runCommandBinary } from './run-command.ts';

export { canonicalModuleName } from './module-index.ts';

export interface KernelModule {
  /** Canonical name (dashes as underscores), e.g. "vfio_pci". */
  name: string;
  /** Path below lib/modules/<release>/ of the decompressed module, e.g. "kernel/drivers/vfio/pci/vfio-pci.ko". */
  path: string;
  data: Buffer;
  /** Canonical names of the modules it depends on. */
  depends: string[];
  /** Its `alias=` patterns (for modules.alias). */
  aliases: string[];
  /** The host file it was read from. */
  source: string;
  /** Why this file: an override (built by the loop) or its directory's rank in the tree. */
  origin: ModuleChoice['origin'];
  /** Files of the same module that lost to this one, with their build IDs. */
  shadowed: { file: string; buildId?: string }[];
  /** Its GNU build ID (hex), which the loaded module shows in /sys/module/<name>/notes. */
  buildId?: string;
}

export interface ModuleClosure {
  /** Dependencies before their dependents: insmod in this order works. */
  modules: KernelModule[];
  /** Requested names that are built into the kernel (nothing to load). */
  builtin: string[];
}

/**
 * Reads the NUL-separated `key=value` strings of an ELF64 little-endian object's .modinfo
 * section (what modinfo(8) prints). Keys may repeat (alias=), so values are lists.
 */
export function readModinfo(elf: Buffer): Map<string, string[]> {
  const s = elfSection(elf, '.modinfo');
  if (s === undefined) throw new Error('ELF file has no .modinfo section (not a kernel module?)');
  const info = new Map<string, string[]>();
  for (const entry of elf.toString('utf8', s.offset, s.offset + s.size).split('\0')) {
    const eq = entry.indexOf('=');
    if (eq <= 0) continue;
    const key = entry.slice(0, eq);
    info.set(key, [...(info.get(key) ?? []), entry.slice(eq + 1)]);
  }
  return info;
}

/**
 * The GNU build ID of an ELF64 LE object (the desc of its .note.gnu.build-id note, as hex), or
 * undefined when it has none. A loaded module exposes the same note in sysfs, which is how the
 * guest proves which file it runs.
 */
export function readBuildId(elf: Buffer): string | undefined {
  const s = elfSection(elf, '.note.gnu.build-id');
  if (s === undefined || s.size < 16) return undefined;
  return buildIdFromNote(elf.subarray(s.offset, s.offset + s.size));
}

/** The desc of a GNU build-id note (namesz, descsz, type, "GNU\0", desc) as hex. */
export function buildIdFromNote(note: Buffer): string | undefined {
  if (note.length < 16) return undefined;
  const namesz = note.readUInt32LE(0);
  const descsz = note.readUInt32LE(4);
  const descAt = 12 + Math.ceil(namesz / 4) * 4;
  if (descsz === 0 || descAt + descsz > note.length) return undefined;
  return note.toString('hex', descAt, descAt + descsz);
}

/** Offset and size of the named section of an ELF64 little-endian file, or undefined. */
function elfSection(elf: Buffer, wanted: string): { offset: number; size: number } | undefined {
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46) throw new Error('not an ELF file');
  if (elf[4] !== 2 || elf[5] !== 1) throw new Error('only 64-bit little-endian ELF modules are supported');
  const shoff = Number(elf.readBigUInt64LE(0x28));
  const shentsize = elf.readUInt16LE(0x3a);
  const shnum = elf.readUInt16LE(0x3c);
  const shstrndx = elf.readUInt16LE(0x3e);
  const section = (i: number): { name: number; offset: number; size: number } => {
    const at = shoff + i * shentsize;
    if (at + 64 > elf.length) throw new Error('ELF section header table runs past the end of the file');
    return { name: elf.readUInt32LE(at), offset: Number(elf.readBigUInt64LE(at + 24)), size: Number(elf.readBigUInt64LE(at + 32)) };
  };
  const strtab = section(shstrndx);
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    const nameStart = strtab.offset + s.name;
    const name = elf.toString('latin1', nameStart, elf.indexOf(0, nameStart));
    if (name !== wanted) continue;
    if (s.offset + s.size > elf.length) throw new Error(`${wanted} runs past the end of the file`);
    return { offset: s.offset, size: s.size };
  }
  return undefined;
}

/** Decompresses a module file according to its extension. */
export async function loadModuleFile(file: string): Promise<Buffer> {
  if (file.endsWith('.ko.xz')) return runCommandBinary('xz', ['-dc', file]);
  if (file.endsWith('.ko.zst')) return runCommandBinary('zstd', ['-dcq', file]);
  if (file.endsWith('.ko.gz')) return gunzipSync(await readFile(file));
  return readFile(file);
}

async function builtinModules(modulesDir: string): Promise<Set<string>> {
  try {
    const text = await readFile(join(modulesDir, 'modules.builtin'), 'utf8');
    return new Set(text.split('\n').filter((l) => l !== '').map(canonicalModuleName));
  } catch {
    return new Set();
  }
}

/**
 * The closure of `requested` under `depends=`, dependencies first. Throws when a module is
 * neither a loadable module nor built in, naming the kernel it looked in, and (a
 * ModuleResolutionError) when the tree leaves a module's file ambiguous. `overrides` (modules the
 * out-of-tree loop built) replace the tree's files of the same name.
 */
export async function resolveModuleClosure(
  modulesDir: string,
  requested: readonly string[],
  overrides: readonly { name: string; file: string }[] = [],
): Promise<ModuleClosure> {
  const [index, builtin] = await Promise.all([indexModules(modulesDir, overrides), builtinModules(modulesDir)]);
  const loaded = new Map<string, Promise<KernelModule | undefined>>();
  const load = (name: string, wantedBy: string): Promise<KernelModule | undefined> => {
    let pending = loaded.get(name);
    if (pending === undefined) {
      pending = (async () => {
        const choice = index.choose(name);
        if (choice === undefined) {
          if (builtin.has(name)) return undefined;
          throw new Error(`kernel module ${name} (${wantedBy}) is neither in ${modulesDir} (updates/, extra/, kernel/) nor in modules.builtin`);
        }
        const data = await loadModuleFile(choice.file);
        const info = readModinfo(data);
        const depends = (info.get('depends') ?? []).flatMap((d) => d.split(',')).filter((d) => d !== '').map(canonicalModuleName);
        return {
          name, path: choice.rel.replace(/\.(xz|gz|zst)$/, ''), data, depends, aliases: info.get('alias') ?? [],
          source: choice.file, origin: choice.origin, buildId: readBuildId(data),
          shadowed: await Promise.all(choice.shadowed.map(async (file) => ({ file, buildId: readBuildId(await loadModuleFile(file)) }))),
        };
      })();
      loaded.set(name, pending);
    }
    return pending;
  };

  // Depth-first post-order gives dependencies before dependents; the xz decompressions of one
  // level run in parallel.
  const ordered: KernelModule[] = [];
  const done = new Set<string>();
  const visiting = new Set<string>();
  const visit = async (name: string, wantedBy: string): Promise<void> => {
    if (done.has(name)) return;
    if (visiting.has(name)) throw new Error(`kernel module dependency cycle through ${name}`);
    visiting.add(name);
    const mod = await load(name, wantedBy);
    if (mod !== undefined) {
      for (const dep of mod.depends) void load(dep, `needed by ${name}`).catch(() => undefined);
      for (const dep of mod.depends) await visit(dep, `needed by ${name}`);
      if (!done.has(name)) ordered.push(mod);
    }
    visiting.delete(name);
    done.add(name);
  };
  const builtinRequested: string[] = [];
  for (const raw of requested) {
    const name = canonicalModuleName(raw);
    if (index.choose(name) === undefined && builtin.has(name)) builtinRequested.push(name);
    await visit(name, 'requested');
  }
  return { modules: ordered, builtin: builtinRequested };
}

/**
 * modules.dep in depmod's format: `path: dep dep ...`, each line listing the module's whole
 * dependency closure with the most basic module last. busybox and kmod modprobe load that
 * list from the end, so every module finds its dependencies already loaded.
 */
export function modulesDep(modules: readonly KernelModule[]): string {
  const byName = new Map(modules.map((m) => [m.name, m]));
  const position = new Map(modules.map((m, i) => [m.name, i]));
  const lines: string[] = [];
  for (const mod of modules) {
    const closure = new Set<string>();
    const walk = (name: string): void => {
      for (const dep of byName.get(name)?.depends ?? []) {
        if (closure.has(dep) || !byName.has(dep)) continue; // built-in dependencies have no file
        closure.add(dep);
        walk(dep);
      }
    };
    walk(mod.name);
    const deps = [...closure].sort((a, b) => position.get(b)! - position.get(a)!);
    lines.push(`${mod.path}:${deps.map((d) => ` ${byName.get(d)!.path}`).join('')}\n`);
  }
  return lines.join('');
}

/** modules.alias in depmod's format (`alias <pattern> <module>`), for the kernel's autoloading. */
export function modulesAlias(modules: readonly KernelModule[]): string {
  return modules.flatMap((m) => m.aliases.map((a) => `alias ${a} ${m.name}\n`)).join('');
}
