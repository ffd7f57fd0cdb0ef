// Builds the kernel's own VFIO selftests (tools/testing/selftests/vfio of a kernel tree) as
// static programs for the guest, with edu-plus's selftests driver compiled into their library.
//
// The tree is never written to. A scratch tree in the cache mirrors it with symlinks (the
// selftests' Makefile finds the kernel's top by relative paths, and a few driver headers are
// symlinks to files under drivers/), except for tools/testing/selftests/vfio and lib.mk, which
// are copies: lib.mk locates the selftests through realpath, so a symlink would send the
// build back into the read-only tree. Into the copy go selftests-driver/edu_plus.c as
// lib/drivers/edu_plus/edu_plus.c, its line in lib/libvfio.mk and its entry in
// lib/vfio_pci_driver.c's driver table — where the library's own drivers are listed. Then
// `make USERLDFLAGS=-static` with KHDR_INCLUDES pointing at the UAPI headers of the kernel the
// guest runs; objects live in the cache, so a second build only relinks what changed.

import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { copyFile, cp, mkdir, readdir, readFile, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import { cpus } from 'node:os';
import { uapiIncludeArgs } from '../guest-tests/build.ts';
import { cacheDir, progress } from './cache.ts';
import { runCommand } from './run-command.ts';

/** Where the selftests live in a kernel tree. */
export const SELFTESTS_SUBDIR = 'tools/testing/selftests/vfio';
/** Our driver for the selftests library, in this repository. */
export const EDU_PLUS_DRIVER = join(import.meta.dirname, '..', 'selftests-driver', 'edu_plus.c');

export interface SelftestsBuild {
  /** The selftest programs built, in the Makefile's order. */
  programs: { name: string; path: string }[];
  outDir: string;
}

/** A kernel tree without usable VFIO selftests: vm turns it into a usage error. */
export class SelftestsInputError extends Error {}

/** Checks that `tree` holds the VFIO selftests; returns its absolute path. */
export function checkSelftestsTree(tree: string): string {
  const dir = resolve(tree);
  if (!existsSync(join(dir, SELFTESTS_SUBDIR, 'Makefile'))) {
    throw new SelftestsInputError(`${tree} has no ${SELFTESTS_SUBDIR}/Makefile: pass the top of a kernel source tree (7.3 or newer)`);
  }
  return dir;
}

/** TEST_GEN_PROGS of the selftests' Makefile, in order. */
export function selftestPrograms(makefile: string): string[] {
  return [...makefile.matchAll(/^TEST_GEN_PROGS\s*\+?=\s*(\S+)\s*$/gm)].map((m) => m[1]!);
}

/**
 * libvfio.mk with our driver listed after the library's own: before LIBVFIO_OUTPUT, which
 * derives the object list from LIBVFIO_C with an immediate (:=) assignment.
 */
export function withDriverInLibvfioMk(text: string): string {
  const at = text.search(/^LIBVFIO_OUTPUT\s*:=/m);
  if (at < 0 || !/^LIBVFIO_C\s*\+?=/m.test(text)) throw new SelftestsInputError('lib/libvfio.mk has no LIBVFIO_C list followed by LIBVFIO_OUTPUT :=; this selftests version is not supported');
  return `${text.slice(0, at)}# edu-plus: its driver, added by edu-plus's vm --selftests\nLIBVFIO_C += drivers/edu_plus/edu_plus.c\n\n${text.slice(at)}`;
}

/** lib/vfio_pci_driver.c with edu_plus_ops first in the driver table. */
export function withDriverInTable(text: string): string {
  const table = /^static struct vfio_pci_driver_ops \*driver_ops\[\] = \{\n/m.exec(text);
  if (table === null) throw new SelftestsInputError('lib/vfio_pci_driver.c has no driver_ops[] table; this selftests version is not supported');
  const end = table.index + table[0].length;
  return `${text.slice(0, table.index)}extern struct vfio_pci_driver_ops edu_plus_ops;\n\n${text.slice(table.index, end)}\t&edu_plus_ops,\n${text.slice(end)}`;
}

/** Mirrors `from` into `to` with one symlink per entry, except the names in `except`. */
async function linkEntries(from: string, to: string, except: readonly string[]): Promise<void> {
  await mkdir(to, { recursive: true });
  for (const name of await readdir(from)) {
    if (!except.includes(name)) await symlink(join(from, name), join(to, name));
  }
}

/** Writes `text` to `file` with the mtime of `like`, so make judges it by the source's age. */
async function writeLike(file: string, text: string, like: string): Promise<void> {
  await writeFile(file, text);
  const st = statSync(like);
  await utimes(file, st.atime, st.mtime);
}

/** Fails with the Debian package to install when the static libuuid the selftests link is missing. */
async function checkLibuuid(): Promise<void> {
  const { stdout } = await runCommand('gcc', ['-print-file-name=libuuid.a']);
  if (!isAbsolute(stdout.trim())) {
    throw new Error('the VFIO selftests link libuuid statically and gcc cannot find libuuid.a: install the Debian package uuid-dev');
  }
}

/**
 * Builds the selftests of `tree` against the UAPI headers in `includeDir` (a headers_install
 * include directory or Debian's linux-libc-dev one) and returns the static programs.
 */
export async function buildSelftests(opts: { tree: string; includeDir: string }): Promise<SelftestsBuild> {
  const tree = checkSelftestsTree(opts.tree);
  const step = progress('selftests');
  await checkLibuuid();
  const src = join(tree, SELFTESTS_SUBDIR);
  const driver = await readFile(EDU_PLUS_DRIVER, 'utf8');
  const key = createHash('sha256').update(JSON.stringify([tree, resolve(opts.includeDir), driver, withDriverInTable.toString(), withDriverInLibvfioMk.toString()])).digest('hex').slice(0, 16);
  const base = join(cacheDir(), 'selftests', key);
  const scratch = join(base, 'tree');
  const outDir = join(base, 'out');

  // The scratch tree is rebuilt each time (a few hundred entries): what is copied keeps its
  // mtime, so the objects in outDir stay valid unless the tree's sources changed.
  await rm(scratch, { recursive: true, force: true });
  await linkEntries(tree, scratch, ['tools']);
  await linkEntries(join(tree, 'tools'), join(scratch, 'tools'), ['testing']);
  await linkEntries(join(tree, 'tools/testing'), join(scratch, 'tools/testing'), ['selftests']);
  await linkEntries(join(tree, 'tools/testing/selftests'), join(scratch, 'tools/testing/selftests'), ['vfio', 'lib.mk']);
  await copyFile(join(tree, 'tools/testing/selftests/lib.mk'), join(scratch, 'tools/testing/selftests/lib.mk'));
  const work = join(scratch, SELFTESTS_SUBDIR);
  await cp(src, work, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
  await mkdir(join(work, 'lib/drivers/edu_plus'), { recursive: true });
  await cp(EDU_PLUS_DRIVER, join(work, 'lib/drivers/edu_plus/edu_plus.c'), { preserveTimestamps: true });
  await writeLike(join(work, 'lib/libvfio.mk'), withDriverInLibvfioMk(await readFile(join(src, 'lib/libvfio.mk'), 'utf8')), join(src, 'lib/libvfio.mk'));
  await writeLike(join(work, 'lib/vfio_pci_driver.c'), withDriverInTable(await readFile(join(src, 'lib/vfio_pci_driver.c'), 'utf8')), join(src, 'lib/vfio_pci_driver.c'));

  await mkdir(outDir, { recursive: true });
  step.info(`building ${src} (static, edu-plus driver included) into ${outDir}`);
  await runCommand('make', [
    '-C', work,
    `-j${Math.max(1, cpus().length)}`,
    `OUTPUT=${outDir}`,
    `KHDR_INCLUDES=${uapiIncludeArgs(resolve(opts.includeDir)).join(' ')}`,
    'USERLDFLAGS=-static',
  ], { tailLines: 40 });
  const names = selftestPrograms(readFileSync(join(src, 'Makefile'), 'utf8'));
  const programs = names.map((name) => ({ name, path: join(outDir, name) })).filter((p) => existsSync(p.path));
  const missing = names.filter((n) => !programs.some((p) => p.name === n));
  if (programs.length === 0) throw new Error(`make built none of the selftests (${names.join(', ')}) in ${outDir}`);
  step.done(`${programs.length} programs${missing.length > 0 ? ` (not built: ${missing.join(', ')})` : ''}`);
  return { programs, outDir };
}
