// Which file a module name stands for in a lib/modules/<release> tree, decided the way modprobe
// and depmod decide it, so the initramfs carries the module the developer meant:
//
//   - depmod's search order: updates/ before extra/ before kernel/ (the distribution's own
//     modules), any other directory last. `make M=... modules_install` installs into updates/,
//     so a rebuilt module shadows the stock one, as on a real system.
//   - where the tree has depmod's modules.dep, modprobe loads exactly the file it names; a
//     modules.dep that disagrees with the search order (a module copied in after depmod ran) is
//     an error, not a coin toss: the message says to run depmod again.
//   - two files of one module at the same rank (vfio-pci.ko next to vfio-pci.ko.xz, or two
//     directories under updates/) are an error that names both: modprobe's pick between them
//     is an accident of directory order.
//
// Modules the out-of-tree loop built are "overrides": they rank above everything in the tree.

import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

export const MODULE_FILE = /\.ko(\.(xz|gz|zst))?$/;

/** modprobe treats "-" and "_" in module names as the same character. */
export function canonicalModuleName(name: string): string {
  return name.replace(MODULE_FILE, '').replace(/^.*\//, '').replace(/-/g, '_');
}

/** A module file chosen for a name. */
export interface ModuleChoice {
  name: string;
  /** Absolute path of the file on the host. */
  file: string;
  /** Path below lib/modules/<release>/ as the tree has it (compressed suffix kept), or for an override where it goes in the guest. */
  rel: string;
  /** Where the choice came from: an override (built by the loop) or the tree's directory rank. */
  origin: 'override' | 'updates' | 'extra' | 'kernel' | 'other';
  /** Files of the same module that lost to this one (e.g. the stock kernel/ copy). */
  shadowed: string[];
}

/** A user-facing problem with the modules tree (ambiguity, stale modules.dep). */
export class ModuleResolutionError extends Error {}

/** depmod's default search order: updates, extra, the distribution's kernel/, then the rest. */
export function moduleRank(rel: string): { rank: number; origin: ModuleChoice['origin'] } {
  const top = rel.split('/')[0];
  if (top === 'updates') return { rank: 0, origin: 'updates' };
  if (top === 'extra') return { rank: 1, origin: 'extra' };
  if (top === 'kernel') return { rank: 2, origin: 'kernel' };
  return { rank: 3, origin: 'other' };
}

/** Parses modules.dep (`path: dep dep`) into canonical name -> path. */
export function parseModulesDep(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const path = line.slice(0, colon).trim();
    if (MODULE_FILE.test(path)) out.set(canonicalModuleName(path), path);
  }
  return out;
}

export interface ModuleIndex {
  /** The file for `name`, or undefined when the tree has none. Throws ModuleResolutionError. */
  choose(name: string): ModuleChoice | undefined;
}

/** Every module file below `modulesDir` (relative paths), grouped by canonical name. */
async function scan(modulesDir: string): Promise<Map<string, string[]>> {
  const byName = new Map<string, string[]>();
  const entries = await readdir(modulesDir, { recursive: true, withFileTypes: true });
  for (const e of entries) {
    if (!e.isFile() || !MODULE_FILE.test(e.name)) continue;
    const rel = join(e.parentPath, e.name).slice(modulesDir.length + 1);
    const name = canonicalModuleName(rel);
    byName.set(name, [...(byName.get(name) ?? []), rel]);
  }
  return byName;
}

/**
 * Indexes `modulesDir` (lib/modules/<release>; '' for none) with `overrides` (name -> absolute
 * .ko path, guest path updates/<overrideDir>/<file>) ranked first.
 */
export async function indexModules(
  modulesDir: string,
  overrides: readonly { name: string; file: string }[] = [],
  overrideDir = 'edu-plus',
): Promise<ModuleIndex> {
  const byName = modulesDir === '' ? new Map<string, string[]>() : await scan(modulesDir);
  let depmod: Map<string, string> | undefined;
  if (modulesDir !== '' && existsSync(join(modulesDir, 'modules.dep'))) {
    depmod = parseModulesDep(await readFile(join(modulesDir, 'modules.dep'), 'utf8'));
  }
  const overrideByName = new Map(overrides.map((o) => [canonicalModuleName(o.name), o.file]));
  return {
    choose(raw: string): ModuleChoice | undefined {
      const name = canonicalModuleName(raw);
      const files = byName.get(name) ?? [];
      const override = overrideByName.get(name);
      if (override !== undefined) {
        const base = override.replace(/^.*\//, '');
        return { name, file: override, rel: `updates/${overrideDir}/${base}`, origin: 'override', shadowed: files.map((f) => join(modulesDir, f)) };
      }
      if (files.length === 0) return undefined;
      const ranked = files.map((rel) => ({ rel, ...moduleRank(rel) })).sort((a, b) => a.rank - b.rank || a.rel.localeCompare(b.rel));
      const best = ranked.filter((r) => r.rank === ranked[0]!.rank);
      if (best.length > 1) {
        throw new ModuleResolutionError(`module ${name} is ambiguous in ${modulesDir}: ${best.map((b) => b.rel).join(' and ')} ` +
          `have the same priority (${best[0]!.origin}/), and modprobe would load whichever it met first. Remove all but one.`);
      }
      const chosen = best[0]!;
      const depmodPath = depmod?.get(name);
      if (depmod !== undefined && depmodPath !== chosen.rel) {
        throw new ModuleResolutionError(depmodPath === undefined
          ? `module ${name}: ${chosen.rel} is in ${modulesDir} but not in its modules.dep, so modprobe cannot load it. ` +
            `modules.dep is stale: run depmod again (depmod -b <INSTALL_MOD_PATH> <release>) or delete modules.dep.`
          : `module ${name}: ${modulesDir}/modules.dep names ${depmodPath}, but ${chosen.rel} ranks higher (updates/ > extra/ > kernel/). ` +
            'modules.dep is stale: run depmod again (depmod -b <INSTALL_MOD_PATH> <release>) or delete modules.dep.');
      }
      return {
        name, file: join(modulesDir, chosen.rel), rel: chosen.rel, origin: chosen.origin,
        shadowed: ranked.slice(1).map((r) => join(modulesDir, r.rel)),
      };
    },
  };
}
