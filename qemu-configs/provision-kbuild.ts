// Provides what building a module against the provisioned guest kernel takes, without touching
// the host: Debian's linux-headers-<release> (+ -common) and linux-kbuild-<abi> of exactly the
// guest kernel's Debian version, the compiler that kernel was built with (its config says
// CONFIG_CC_VERSION_TEXT="x86_64-linux-gnu-gcc-14 ..."; Debian's .kernelvariables says
// CC = x86_64-linux-gnu-gcc-14), binutils, pahole (for the modules' BTF) and kmod, all from
// trixie, unpacked into <cache>/kbuild/<debian version>/root.
//
// The host may be older than trixie (bookworm: glibc 2.36), and trixie's programs need glibc
// 2.38+. Every ELF program of the private tree therefore runs through the tree's own dynamic
// loader with the tree's libraries, never the host's:
//   - bin/ holds shell wrappers named like the programs kbuild calls (x86_64-linux-gnu-gcc-14,
//     x86_64-linux-gnu-ld, pahole, depmod ...); it goes first on PATH;
//   - gcc gets `-wrapper <loader>,--library-path,<libs>`, so cc1 and as, which gcc starts
//     itself, go through the loader too (gcc finds `as` and `ld` by symlinks in its libexec
//     directory, not on PATH, because -wrapper cannot run a shell script);
//   - kbuild's prebuilt helpers (fixdep, modpost, objtool, resolve_btfids, ...) are renamed to
//     <name>.elf and replaced by a wrapper that runs them through the loader under their old
//     name (--argv0): Debian's modpost and objtool pick their real binary from argv[0].

import { existsSync } from 'node:fs';
import { chmod, mkdir, open, readdir, readFile, readlink, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cacheDir, progress, readMarker, writeMarker } from './cache.ts';
import { downloadWithDependencies, extractDebs } from './debian-archive.ts';
import { guestKernelDebianVersion } from './provision-linux-source.ts';
import { runCommand } from './run-command.ts';

export interface Kbuild {
  /** The kernel release the build files belong to, e.g. "7.3.4+deb13-amd64". */
  release: string;
  /** The Debian version of linux-headers/linux-kbuild, e.g. "7.3.4-1~bpo13+1". */
  debianVersion: string;
  /** The private tree everything is unpacked into. */
  root: string;
  /** usr/src/linux-headers-<release>: .config, Module.symvers, generated headers (make's O=). */
  objDir: string;
  /** usr/src/linux-headers-<abi>-common: the kernel's Makefile and include/ (make's -C). */
  srcDir: string;
  /** Wrappers to put first on PATH (the compiler, binutils, pahole, depmod, modinfo). */
  binDir: string;
  /** The compiler kbuild calls, e.g. "x86_64-linux-gnu-gcc-14" (found in binDir). */
  compiler: string;
  /** The kernel config's CONFIG_CC_VERSION_TEXT, e.g. "x86_64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0". */
  compilerVersionText: string;
}

interface KbuildMarker extends Kbuild {
  packages: string[];
}

/** "7.3.4+deb13-amd64" -> { abi: "7.3.4+deb13", flavour: "amd64" }. */
export function splitRelease(release: string): { abi: string; flavour: string } {
  const m = /^(\d+\.\d+(?:\.\d+)?\+[^-]+)-(.+)$/.exec(release);
  if (m === null) throw new Error(`"${release}" is not a Debian kernel release (<version>+<abi>-<flavour>)`);
  return { abi: m[1]!, flavour: m[2]! };
}

/** The value of `CONFIG_<key>="..."` in a kernel .config, or undefined. */
export function configString(config: string, key: string): string | undefined {
  return new RegExp(`^CONFIG_${key}="((?:[^"\\\\]|\\\\.)*)"$`, 'm').exec(config)?.[1]?.replace(/\\(.)/g, '$1');
}

function markerPath(release: string): string {
  return join(cacheDir(), 'kbuild', `current-${release}.json`);
}

function usable(marker: KbuildMarker | undefined): marker is KbuildMarker {
  return marker !== undefined && existsSync(join(marker.objDir, '.config')) && existsSync(join(marker.binDir, marker.compiler));
}

/**
 * Returns the build files and toolchain of the guest kernel `release`, downloading (~70 MB) and
 * unpacking them on first use; later calls reuse them without the network.
 */
export async function provisionKbuild(release: string): Promise<Kbuild> {
  const cached = await readMarker<KbuildMarker>(markerPath(release));
  if (usable(cached)) return cached;

  const step = progress('kbuild');
  const { abi } = splitRelease(release);
  const debianVersion = await guestKernelDebianVersion(release);
  // linux-headers-<release> pulls -common, linux-kbuild-<abi>, the compiler and pahole; kmod
  // brings depmod and modinfo. `=version` pins the guest kernel's own upload.
  const packages = [`linux-headers-${release}=${debianVersion}`, `linux-kbuild-${abi}=${debianVersion}`, 'kmod'];
  step.info(`${packages.join(', ')} and their dependencies (the compiler the kernel was built with)`);
  const { debs } = await downloadWithDependencies(packages, { targetRelease: 'trixie-backports' });

  const base = join(cacheDir(), 'kbuild', debianVersion);
  const partial = join(base, 'root.partial');
  const root = join(base, 'root');
  await rm(partial, { recursive: true, force: true });
  step.info(`unpacking ${debs.length} packages into ${partial}`);
  await extractDebs(debs, partial);
  const objDir = join(partial, 'usr/src', `linux-headers-${release}`);
  const srcDir = join(partial, 'usr/src', `linux-headers-${abi}-common`);
  const config = await readConfig(objDir);
  const compilerVersionText = configString(config, 'CC_VERSION_TEXT');
  const compiler = compilerVersionText?.split(' ')[0];
  if (compiler === undefined || !existsSync(join(partial, 'usr/bin', compiler))) {
    throw new Error(`the kernel config names the compiler "${compilerVersionText ?? '(no CONFIG_CC_VERSION_TEXT)'}", ` +
      `but the unpacked packages have no usr/bin/${compiler ?? '?'}; the compiler package changed: adjust provision-kbuild.ts`);
  }
  await wireToolchain(partial, root, compiler, abi);
  await rm(root, { recursive: true, force: true });
  await rename(partial, root);

  const rel = (p: string): string => join(root, p.slice(partial.length));
  const kbuild: Kbuild = {
    release, debianVersion, root, objDir: rel(objDir), srcDir: rel(srcDir), binDir: join(root, 'edu-plus-bin'),
    compiler, compilerVersionText: compilerVersionText!,
  };
  // One compile proves the loader, the libraries and cc1/as are wired up.
  await smokeCompile(kbuild);
  await writeMarker(markerPath(release), { ...kbuild, packages } satisfies KbuildMarker);
  step.done(`${compilerVersionText}, headers ${kbuild.objDir}`);
  return kbuild;
}

async function readConfig(objDir: string): Promise<string> {
  try {
    return await readFile(join(objDir, '.config'), 'utf8');
  } catch {
    throw new Error(`${objDir}/.config is missing: the linux-headers package layout changed; adjust provision-kbuild.ts`);
  }
}

function loaderPaths(root: string): { loader: string; libs: string } {
  return {
    loader: join(root, 'usr/lib64/ld-linux-x86-64.so.2'),
    libs: [join(root, 'usr/lib/x86_64-linux-gnu'), join(root, 'lib/x86_64-linux-gnu')].join(':'),
  };
}

/** A /bin/sh script that runs `elf` through the private loader as `argv0`. */
function loaderWrapper(root: string, elf: string, argv0: string, extraArgs = ''): string {
  const { loader, libs } = loaderPaths(root);
  return `#!/bin/sh\n# generated by edu-plus (provision-kbuild.ts): run through trixie's own loader\n` +
    `exec '${loader}' --library-path '${libs}' --argv0 "${argv0}" '${elf}' ${extraArgs}"$@"\n`;
}

async function writeScript(path: string, text: string): Promise<void> {
  await writeFile(path, text);
  await chmod(path, 0o755);
}

async function isElf(path: string): Promise<boolean> {
  const handle = await open(path, 'r');
  try {
    const head = Buffer.alloc(4);
    await handle.read(head, 0, 4, 0);
    return head.readUInt32BE(0) === 0x7f454c46;
  } finally {
    await handle.close();
  }
}

/**
 * Rewires the unpacked tree (at `tree`, later renamed to `finalRoot`, so every generated path
 * names finalRoot) so that its programs run through its own loader; see the file comment.
 */
async function wireToolchain(tree: string, finalRoot: string, compiler: string, abi: string): Promise<void> {
  const { loader, libs } = loaderPaths(finalRoot);
  const bin = join(tree, 'edu-plus-bin');
  await mkdir(bin, { recursive: true });
  const usrBin = join(tree, 'usr/bin');
  for (const name of await readdir(usrBin)) {
    if (!name.startsWith('x86_64-linux-gnu-') && name !== 'pahole') continue;
    // Resolve symlinks (x86_64-linux-gnu-ld -> x86_64-linux-gnu-ld.bfd): the loader needs the ELF.
    let target = name;
    try {
      target = await readlink(join(usrBin, name));
    } catch { /* not a symlink */ }
    const elf = join(finalRoot, 'usr/bin', target);
    const extra = name === compiler ? `-wrapper '${loader},--library-path,${libs}' ` : '';
    await writeScript(join(bin, name), loaderWrapper(finalRoot, elf, join(finalRoot, 'usr/bin', name), extra));
  }
  for (const tool of ['depmod', 'modinfo']) {
    await writeScript(join(bin, tool), loaderWrapper(finalRoot, join(finalRoot, 'usr/bin/kmod'), tool));
  }
  // gcc looks for as/ld in its libexec directory before PATH; point it at trixie's binutils.
  const gccVersion = /gcc-(\d+)$/.exec(compiler)?.[1];
  if (gccVersion === undefined) throw new Error(`cannot read gcc's major version from "${compiler}"`);
  const libexec = join(tree, 'usr/libexec/gcc/x86_64-linux-gnu', gccVersion);
  await symlink('../../../../bin/x86_64-linux-gnu-as', join(libexec, 'as'));
  await symlink('../../../../bin/x86_64-linux-gnu-ld.bfd', join(libexec, 'ld'));

  const kbuildRoot = join(tree, 'usr/lib', `linux-kbuild-${abi}`);
  if (!existsSync(kbuildRoot)) throw new Error(`linux-kbuild-${abi} unpacked no usr/lib/linux-kbuild-${abi}: the layout changed; adjust provision-kbuild.ts`);
  for (const rel of await readdir(kbuildRoot, { recursive: true })) {
    const path = join(kbuildRoot, rel);
    const st = await stat(path);
    if (!st.isFile() || (st.mode & 0o111) === 0 || !(await isElf(path))) continue;
    await rename(path, `${path}.elf`);
    const finalPath = join(finalRoot, path.slice(tree.length));
    await writeScript(path, loaderWrapper(finalRoot, `${finalPath}.elf`, '$0'));
  }
}

/** The environment kbuild runs in: the wrappers first on PATH, a stable locale. */
export function kbuildEnv(kbuild: Kbuild): NodeJS.ProcessEnv {
  return { ...process.env, PATH: `${kbuild.binDir}:${process.env.PATH ?? '/usr/bin:/bin'}`, LC_ALL: 'C' };
}

async function smokeCompile(kbuild: Kbuild): Promise<void> {
  const dir = join(kbuild.root, 'edu-plus-smoke');
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 't.c'), 'int edu_plus_smoke(void) { return 0; }\n');
  try {
    await runCommand(kbuild.compiler, ['-c', join(dir, 't.c'), '-o', join(dir, 't.o')], { env: kbuildEnv(kbuild) });
  } catch (err) {
    throw new Error(`the private ${kbuild.compiler} cannot compile a one-line file; the toolchain in ${kbuild.root} ` +
      `is not usable (delete it to provision again): ${(err as Error).message}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
