// The out-of-tree vfio-pci loop's build step: drivers/vfio/pci of a developer's kernel tree,
// compiled as external modules against the provisioned guest kernel's own build files
// (provision-kbuild.ts), so the result loads into the stock Debian guest kernel in place of
// its vfio-pci-core.ko and vfio-pci.ko.
//
// The developer's tree is only read. drivers/vfio/pci is mirrored into a build directory in the
// cache (one per tree and kernel release) with the files' mtimes kept, so kbuild's own
// dependency tracking makes a warm rebuild recompile only what the developer changed. The
// tree's include/linux/vfio*.h and include/uapi/linux/vfio*.h are mirrored too and put first on
// the include path (NOSTDINC_FLAGS precedes kbuild's LINUXINCLUDE): a series that changes
// vfio_pci_core.h or the VFIO UAPI together with drivers/vfio/pci compiles as written. Changes
// anywhere else in the tree (vfio.ko, the PCI core, ...) need a kernel of its own (--kernel).
//
// Variant drivers below drivers/vfio/pci (mlx5/, virtio/, ...) are not built: the guest loads
// only vfio-pci, and a stock variant driver must never run on top of a rebuilt core.

import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { copyFile, mkdir, readdir, readFile, rm, stat, utimes } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { cpus } from 'node:os';
import { cacheDir, progress, readMarker, writeMarker } from './cache.ts';
import { KernelInputError } from './custom-kernel.ts';
import { type Kbuild, kbuildEnv, provisionKbuild } from './provision-kbuild.ts';
import { runCommand } from './run-command.ts';
import { treeUapiInclude } from './tree-uapi.ts';

export const VFIO_PCI_DIR = 'drivers/vfio/pci';

/** A module the loop built, to be put into the guest in place of the stock one. */
export interface BuiltModule {
  /** Canonical name, e.g. "vfio_pci_core". */
  name: string;
  /** The .ko in the build directory. */
  file: string;
}

export interface VfioBuild {
  /** The developer's tree (absolute). */
  tree: string;
  /** The tree's kernel version from its Makefile, e.g. "7.3.4". */
  treeVersion: string;
  buildDir: string;
  modules: BuiltModule[];
  /** Files the mirror copied this time (0 on a rebuild with nothing changed). */
  changedFiles: number;
  seconds: number;
  kbuild: Kbuild;
}

/** The build failed in the developer's code: the message carries the compiler's output. */
export class ModuleBuildError extends Error {}

/** "VERSION = 7", "PATCHLEVEL = 3", "SUBLEVEL = 4", "EXTRAVERSION = -rc1" -> "7.3.4-rc1". */
export function makefileKernelVersion(makefile: string): string | undefined {
  const field = (name: string): string | undefined => new RegExp(`^${name}\\s*=[ \\t]*(\\S*)[ \\t]*$`, 'm').exec(makefile)?.[1];
  const [version, patchlevel, sublevel] = [field('VERSION'), field('PATCHLEVEL'), field('SUBLEVEL')];
  if (version === undefined || patchlevel === undefined || version === '' || patchlevel === '') return undefined;
  return `${version}.${patchlevel}${sublevel !== undefined && sublevel !== '' ? `.${sublevel}` : ''}${field('EXTRAVERSION') ?? ''}`;
}

/** "7.3.4+deb13-amd64" -> "7.3.4": the upstream version a Debian release is built from. */
export function upstreamOfRelease(release: string): string {
  return /^(\d+\.\d+(?:\.\d+)?)/.exec(release)?.[1] ?? release;
}

/**
 * Checks that `given` is a kernel source tree of the guest kernel's upstream version with
 * drivers/vfio/pci; returns its absolute path and version. Every problem is a KernelInputError
 * that says what was expected.
 */
export async function checkVfioTree(given: string, release: string): Promise<{ tree: string; version: string }> {
  const tree = resolve(given);
  if (!existsSync(tree)) throw new KernelInputError(`--vfio-src ${given}: no such directory. Pass the top of a Linux source tree (the directory holding Makefile, drivers/, include/)`);
  if (!statSync(tree).isDirectory()) throw new KernelInputError(`--vfio-src ${given} is not a directory; pass the top of a Linux source tree`);
  let makefile = '';
  try {
    makefile = await readFile(join(tree, 'Makefile'), 'utf8');
  } catch { /* judged below */ }
  const version = makefileKernelVersion(makefile);
  if (version === undefined || !existsSync(join(tree, 'Kbuild')) && !existsSync(join(tree, 'Kconfig'))) {
    throw new KernelInputError(`--vfio-src ${given} is not a Linux kernel tree (no top-level Makefile with VERSION/PATCHLEVEL, ` +
      'or no Kconfig). Pass the top of the tree, not drivers/vfio/pci itself.');
  }
  if (!existsSync(join(tree, VFIO_PCI_DIR, 'Makefile'))) {
    throw new KernelInputError(`--vfio-src ${given} (Linux ${version}) has no ${VFIO_PCI_DIR}/Makefile; that is the directory the loop builds`);
  }
  const upstream = upstreamOfRelease(release);
  if (version !== upstream) {
    throw new KernelInputError(`--vfio-src ${given} is Linux ${version}, but the guest kernel is ${release} (Linux ${upstream}). ` +
      `Its modules are built against that kernel's headers and must match it: use a ${upstream} tree ` +
      '(e.g. your series rebased onto it), or boot your own kernel with --kernel/--modules.');
  }
  return { tree, version };
}

interface MirrorManifest {
  files: Record<string, { size: number; mtimeMs: number }>;
}

/**
 * Makes `dest` hold the same files as the listed source directories: a file is copied only
 * when its size or mtime differ from the last mirror's record, and files that disappeared from the source are
 * removed from `dest`; build products kbuild left in `dest` are never touched. Returns how many
 * files changed.
 */
async function mirror(sources: { from: string; to: string; filter?: (name: string) => boolean }[], dest: string): Promise<number> {
  const manifestPath = join(dest, '.edu-plus-mirror.json');
  const old = (await readMarker<MirrorManifest>(manifestPath))?.files ?? {};
  const now: MirrorManifest['files'] = {};
  let changed = 0;
  for (const { from, to, filter } of sources) {
    if (!existsSync(from)) continue;
    for (const rel of await readdir(from, { recursive: true })) {
      if (filter !== undefined && !filter(rel)) continue;
      const src = join(from, rel);
      const st = await stat(src);
      if (!st.isFile()) continue;
      const key = join(to, rel);
      now[key] = { size: st.size, mtimeMs: st.mtimeMs };
      const prev = old[key];
      const target = join(dest, key);
      if (prev !== undefined && prev.size === st.size && prev.mtimeMs === st.mtimeMs && existsSync(target)) continue;
      await mkdir(dirname(target), { recursive: true });
      await copyFile(src, target);
      // A first copy keeps the source's mtime. A file that changed since the last build keeps
      // the copy's (now): its source mtime may be older than the objects built from the old
      // version (cp -p, a restored backup), and kbuild would then skip recompiling it.
      if (prev === undefined) await utimes(target, st.atime, st.mtime);
      changed += 1;
    }
  }
  for (const key of Object.keys(old)) {
    if (now[key] === undefined) {
      await rm(join(dest, key), { force: true });
      changed += 1;
    }
  }
  await writeMarker(manifestPath, { files: now } satisfies MirrorManifest);
  return changed;
}

/** The Kconfig symbols of `obj-$(CONFIG_X) += subdir/` lines: the variant drivers' switches. */
export function variantDriverSymbols(makefile: string): string[] {
  return [...makefile.matchAll(/^obj-\$\((CONFIG_\w+)\)\s*\+=\s*[\w-]+\/\s*$/gm)].map((m) => m[1]!);
}

/** The compiler's and make's error lines with a little context, for a ModuleBuildError. */
export function compilerErrorExcerpt(output: string, maxLines = 60): string {
  // make's directory chatter interleaves with the compiler's stderr and explains nothing.
  const lines = output.split('\n').filter((l) => !/^make(\[\d+\])?: (Entering|Leaving) directory/.test(l));
  const keep = new Set<number>();
  lines.forEach((line, i) => {
    if (/\berror\b|\*\*\*|undefined!|fatal/i.test(line)) for (let j = Math.max(0, i - 2); j <= Math.min(lines.length - 1, i + 3); j++) keep.add(j);
  });
  const picked = keep.size > 0 ? [...keep].sort((a, b) => a - b).map((i) => lines[i]!) : lines.slice(-maxLines);
  return picked.slice(0, maxLines).map((l) => `  | ${l}`).join('\n');
}

function buildDirFor(tree: string, release: string): string {
  const key = createHash('sha256').update(tree).digest('hex').slice(0, 12);
  return join(cacheDir(), 'vfio-src-build', `${key}-${release}`);
}

/**
 * Builds vfio-pci-core.ko and vfio-pci.ko from `treeGiven` for the guest kernel `release`
 * (provisioning its build files on first use) and returns them.
 */
export async function buildVfioModules(treeGiven: string, release: string): Promise<VfioBuild> {
  const { tree, version } = await checkVfioTree(treeGiven, release);
  const step = progress('vfio-src');
  const started = performance.now();
  const kbuild = await provisionKbuild(release);
  const buildDir = buildDirFor(tree, release);
  const pciDir = join(buildDir, 'pci');
  const overlay = join(buildDir, 'include');
  const vfioHeader = (name: string): boolean => /^vfio[\w-]*\.h$/.test(name);
  const changedFiles = await mirror([
    { from: join(tree, VFIO_PCI_DIR), to: 'pci' },
    { from: join(tree, 'include/linux'), to: 'include/linux', filter: vfioHeader },
    { from: join(tree, 'include/uapi/linux'), to: 'include/uapi/linux', filter: vfioHeader },
  ], buildDir);
  step.info(`${tree} (Linux ${version}): ${changedFiles} file(s) changed since the last build; building ${VFIO_PCI_DIR} in ${pciDir}`);

  const makefile = await readFile(join(pciDir, 'Makefile'), 'utf8');
  const disabled = variantDriverSymbols(makefile).map((s) => `${s}=`);
  const args = ['-C', kbuild.srcDir, `O=${kbuild.objDir}`, `M=${pciDir}`, `NOSTDINC_FLAGS=-nostdinc -I${overlay}`,
    ...disabled, `-j${Math.max(1, cpus().length)}`, 'modules'];
  try {
    await runCommand('make', args, { env: kbuildEnv(kbuild), tailLines: 400 });
  } catch (err) {
    const output = (err as { output?: string }).output ?? (err as Error).message;
    throw new ModuleBuildError(`building ${VFIO_PCI_DIR} of ${tree} failed (make ${args.slice(-2).join(' ')} in ${pciDir}):\n` +
      compilerErrorExcerpt(output));
  }
  const modules: BuiltModule[] = [];
  for (const name of await readdir(pciDir)) {
    if (name.endsWith('.ko')) modules.push({ name: name.slice(0, -3).replace(/-/g, '_'), file: join(pciDir, name) });
  }
  for (const wanted of ['vfio_pci_core', 'vfio_pci']) {
    if (!modules.some((m) => m.name === wanted)) {
      throw new ModuleBuildError(`building ${VFIO_PCI_DIR} of ${tree} produced no ${wanted.replace(/_/g, '-')}.ko ` +
        `(built: ${modules.map((m) => relative(pciDir, m.file)).join(', ') || 'nothing'}); does its Makefile still build it?`);
    }
  }
  const seconds = (performance.now() - started) / 1000;
  step.done(`built ${modules.map((m) => relative(buildDir, m.file)).join(', ')}`);
  return { tree, treeVersion: version, buildDir, modules, changedFiles, seconds, kbuild };
}

/**
 * The whole build side of one `vm --vfio-src TREE` run: the modules, and the include directory
 * the guest tests are compiled against (the tree's UAPI, see tree-uapi.ts).
 */
export async function prepareVfioSrc(treeGiven: string, release: string): Promise<{ build: VfioBuild; includeDir: string; uapiChanged: string[] }> {
  const build = await buildVfioModules(treeGiven, release);
  const uapi = await treeUapiInclude(build.tree, build.kbuild, join(cacheDir(), 'vfio-src-build', 'uapi'));
  if (uapi.changed.length > 0) {
    progress('vfio-src').info(`guest tests use the tree's UAPI: ${uapi.changed.join(', ')} differ from ${release}'s (${uapi.includeDir})`);
  }
  return { build, includeDir: uapi.includeDir, uapiChanged: uapi.changed };
}
