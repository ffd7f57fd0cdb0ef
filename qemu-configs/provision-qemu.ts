// Provides a QEMU new enough to be a vfio-user client (vfio-user-pci arrived in QEMU 10.1).
//
// Bookworm ships QEMU 7.2, so by default Debian's trixie-backports qemu-system-x86 and its
// whole dependency closure are unpacked into a private prefix (no host install, host libc
// untouched) and run through the prefix's own dynamic loader, which ignores the host's
// libraries. Order of preference:
//   1. EDU_PLUS_QEMU=/path/to/qemu-system-x86_64 (used as is, still verified)
//   2. a qemu-system-x86_64 in PATH that is >= 10.1 and has vfio-user-pci
//   3. the cached prefix <cache>/qemu/<debian version>/prefix (provisioned on first use)

import { existsSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { cacheDir, progress, readMarker, writeMarker } from './cache.ts';
import { downloadWithDependencies, extractDebs } from './debian-archive.ts';
import { runCommand } from './run-command.ts';

export interface QemuInstall {
  /** QEMU's own version, e.g. "11.1.3". */
  version: string;
  /** Root of the private tree ('' when a QEMU from the host or EDU_PLUS_QEMU is used in place). */
  prefix: string;
  /** Where it came from. */
  source: 'cache' | 'path' | 'env';
  /** How to run qemu-system-x86_64 with `args` (spawn(file, args, { env })). */
  command(args: string[]): { file: string; args: string[]; env: NodeJS.ProcessEnv };
}

/** The first QEMU release with the vfio-user client (hw/vfio-user). */
export const MIN_QEMU: readonly [number, number] = [10, 1];
const PACKAGE = 'qemu-system-x86';
const TARGET_RELEASE = 'trixie-backports';

interface QemuMarker {
  version: string;
  debianVersion: string;
  prefix: string;
}

/** Parses "QEMU emulator version 11.1.3 (Debian ...)" into "11.1.3". */
export function parseQemuVersion(output: string): string | undefined {
  return /QEMU emulator version (\d+\.\d+(?:\.\d+)?)/.exec(output)?.[1];
}

/** True when `version` (e.g. "10.1.0") is at least `min`. */
export function versionAtLeast(version: string, min: readonly number[]): boolean {
  const parts = version.split('.').map((p) => Number.parseInt(p, 10));
  for (let i = 0; i < min.length; i++) {
    const have = parts[i] ?? 0;
    if (have !== min[i]) return have > min[i]!;
  }
  return true;
}

/** The command for a QEMU binary that runs directly (host or EDU_PLUS_QEMU). */
function directInstall(binary: string, version: string, source: 'path' | 'env'): QemuInstall {
  return {
    version,
    prefix: '',
    source,
    command: (args) => ({ file: binary, args: [...args], env: { ...process.env } }),
  };
}

/**
 * The command for the private prefix. dpkg -x does not create the merged-/usr symlinks, so
 * the loader sits in usr/lib64; QEMU cannot find its data relative to its binary (the "binary"
 * is the loader), hence -L for its ROMs and SeaBIOS and QEMU_MODULE_DIR for its modules.
 */
function prefixInstall(prefix: string, version: string): QemuInstall {
  const loader = join(prefix, 'usr/lib64/ld-linux-x86-64.so.2');
  const libraryPath = [join(prefix, 'usr/lib/x86_64-linux-gnu'), join(prefix, 'lib/x86_64-linux-gnu')].join(':');
  const binary = join(prefix, 'usr/bin/qemu-system-x86_64');
  const dataDirs = ['-L', join(prefix, 'usr/share/qemu'), '-L', join(prefix, 'usr/share/seabios')];
  return {
    version,
    prefix,
    source: 'cache',
    command: (args) => ({
      file: loader,
      args: ['--library-path', libraryPath, binary, ...dataDirs, ...args],
      env: { ...process.env, QEMU_MODULE_DIR: join(prefix, 'usr/lib/x86_64-linux-gnu/qemu') },
    }),
  };
}

async function runQemu(install: Pick<QemuInstall, 'command'>, args: string[]): Promise<string> {
  const cmd = install.command(args);
  return (await runCommand(cmd.file, cmd.args, { env: cmd.env })).stdout;
}

/**
 * Checks that a QEMU runs, is >= 10.1 and lists vfio-user-pci. Returns its version or a
 * sentence saying what is wrong (for the caller to decide whether that is fatal).
 */
async function checkQemu(install: Pick<QemuInstall, 'command'>): Promise<{ version?: string; problem?: string }> {
  let versionOut: string;
  try {
    versionOut = await runQemu(install, ['--version']);
  } catch (err) {
    return { problem: `it does not run: ${(err as Error).message}` };
  }
  const version = parseQemuVersion(versionOut);
  if (version === undefined) return { problem: `unrecognised --version output: ${versionOut.trim()}` };
  if (!versionAtLeast(version, MIN_QEMU)) {
    return { version, problem: `it is QEMU ${version}; vfio-user-pci needs >= ${MIN_QEMU.join('.')}` };
  }
  const devices = await runQemu(install, ['-device', 'help']);
  if (!/"vfio-user-pci"/.test(devices)) {
    return { version, problem: `QEMU ${version} has no vfio-user-pci device (built without vfio-user?)` };
  }
  return { version };
}

function findInPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir !== '' && existsSync(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

async function fromEnv(binary: string): Promise<QemuInstall> {
  const check = await checkQemu(directInstall(binary, '', 'env'));
  if (check.problem !== undefined || check.version === undefined) {
    throw new Error(`EDU_PLUS_QEMU=${binary} cannot be used: ${check.problem}. Unset EDU_PLUS_QEMU to provision QEMU from Debian trixie-backports into the cache.`);
  }
  return directInstall(binary, check.version, 'env');
}

/** Returns a verified QEMU >= 10.1 with vfio-user-pci, provisioning it into the cache if needed. */
export async function provisionQemu(): Promise<QemuInstall> {
  const override = process.env.EDU_PLUS_QEMU;
  if (override !== undefined && override !== '') return fromEnv(override);

  const hostQemu = findInPath('qemu-system-x86_64');
  if (hostQemu !== undefined) {
    const check = await checkQemu(directInstall(hostQemu, '', 'path'));
    if (check.problem === undefined && check.version !== undefined) return directInstall(hostQemu, check.version, 'path');
  }

  // Warm path: the marker is written only after a prefix passed verification, so no process
  // is started and no network is touched here.
  const markerPath = join(cacheDir(), 'qemu/current.json');
  const marker = await readMarker<QemuMarker>(markerPath);
  if (marker !== undefined && existsSync(join(marker.prefix, '.edu-plus-complete'))) {
    return prefixInstall(marker.prefix, marker.version);
  }
  return provisionPrefix(markerPath);
}

async function provisionPrefix(markerPath: string): Promise<QemuInstall> {
  const step = progress('qemu');
  step.info(`fetching ${PACKAGE} and its dependencies from ${TARGET_RELEASE}`);
  const { packages, debs } = await downloadWithDependencies([PACKAGE], { targetRelease: TARGET_RELEASE });
  const debianVersion = packages.find((p) => p.name === PACKAGE)?.version;
  if (debianVersion === undefined) throw new Error(`apt's closure for ${PACKAGE} does not contain ${PACKAGE} itself`);

  // Directory named after the Debian version without its epoch ("1:").
  const versionDir = join(cacheDir(), 'qemu', debianVersion.replace(/^\d+:/, ''));
  const prefix = join(versionDir, 'prefix');
  const partial = join(versionDir, 'prefix.partial');
  await rm(partial, { recursive: true, force: true });
  step.info(`unpacking ${debs.length} packages into ${partial}`);
  await extractDebs(debs, partial);

  const check = await checkQemu(prefixInstall(partial, ''));
  if (check.problem !== undefined || check.version === undefined) {
    throw new Error(`the QEMU unpacked from ${PACKAGE} ${debianVersion} cannot be used: ${check.problem}. ` +
      `Delete ${versionDir} and retry, or set EDU_PLUS_QEMU to a qemu-system-x86_64 >= ${MIN_QEMU.join('.')} built with vfio-user.`);
  }
  await rm(prefix, { recursive: true, force: true });
  await rename(partial, prefix);
  await writeMarker(join(prefix, '.edu-plus-complete'), { debianVersion });
  await writeMarker(markerPath, { version: check.version, debianVersion, prefix } satisfies QemuMarker);
  step.done(`QEMU ${check.version} (${PACKAGE} ${debianVersion}) in ${prefix}`);
  return prefixInstall(prefix, check.version);
}
