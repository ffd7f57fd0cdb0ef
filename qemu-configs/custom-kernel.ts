// A guest kernel the developer built (or got) themselves, instead of the provisioned one:
// a kernel image plus, optionally, the tree `make modules_install INSTALL_MOD_PATH=<dir>`
// wrote (<dir>/lib/modules/<release>/...). The result is a GuestKernel that buildInitramfs()
// takes like the provisioned one. Every problem with the user's files is a KernelInputError
// whose message says what was expected and what to pass instead.

import { existsSync, statSync } from 'node:fs';
import { open, readdir, readFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import type { GuestKernel } from './provision-kernel.ts';

/** The user's kernel, modules or headers are missing or do not fit together. */
export class KernelInputError extends Error {}

/** Where the x86 boot protocol's setup header says "HdrS" (Documentation/arch/x86/boot.rst). */
const HDRS_OFFSET = 0x202;
/** Setup header: u16 offset (from 0x200) of the NUL-terminated kernel version string. */
const KERNEL_VERSION_OFFSET = 0x20e;

/**
 * The kernel release (`uname -r`) an image was built as, or undefined when it cannot be read.
 * A bzImage carries "<release> (<builder>) #1 SMP ..." in its setup header; an uncompressed
 * vmlinux (ELF) carries the "Linux version <release> ..." banner in its data.
 */
export function kernelImageRelease(image: Buffer): string | undefined {
  if (image.length >= KERNEL_VERSION_OFFSET + 2 && image.toString('latin1', HDRS_OFFSET, HDRS_OFFSET + 4) === 'HdrS') {
    const pointer = image.readUInt16LE(KERNEL_VERSION_OFFSET);
    if (pointer === 0) return undefined;
    const start = 0x200 + pointer;
    const end = image.indexOf(0, start);
    if (start >= image.length || end < 0) return undefined;
    const release = /^(\S+)/.exec(image.toString('latin1', start, end))?.[1];
    return release;
  }
  const banner = /Linux version (\S+) \(/.exec(image.toString('latin1'));
  return banner?.[1];
}

function isBzImage(head: Buffer): boolean {
  return head.length >= HDRS_OFFSET + 4 && head.toString('latin1', HDRS_OFFSET, HDRS_OFFSET + 4) === 'HdrS';
}

function isElf(head: Buffer): boolean {
  return head.length >= 4 && head.readUInt32BE(0) === 0x7f454c46;
}

/** Reads the release from a kernel image file; throws KernelInputError when it is not one. */
export async function readKernelRelease(path: string): Promise<string | undefined> {
  if (!existsSync(path)) {
    throw new KernelInputError(`--kernel ${path}: no such file. Pass the kernel image you built, e.g. <linux tree>/arch/x86/boot/bzImage`);
  }
  if (!statSync(path).isFile()) throw new KernelInputError(`--kernel ${path} is not a file; pass the bzImage itself (arch/x86/boot/bzImage)`);
  const handle = await open(path, 'r');
  let head: Buffer;
  try {
    const buf = Buffer.alloc(64 * 1024);
    const { bytesRead } = await handle.read(buf, 0, buf.length, 0);
    head = buf.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
  if (isBzImage(head)) return kernelImageRelease(head);
  // An uncompressed vmlinux: QEMU boots it only when built with a PVH entry (CONFIG_PVH).
  if (isElf(head)) return kernelImageRelease(await readFile(path));
  throw new KernelInputError(`--kernel ${path} is not a Linux kernel image (no bzImage "HdrS" header, not an ELF vmlinux). ` +
    'Pass arch/x86/boot/bzImage from your build (or a distribution vmlinuz).');
}

/** The release directories below a lib/modules directory (those that look like modules_install output). */
async function releaseDirs(libModules: string): Promise<string[]> {
  try {
    const entries = await readdir(libModules, { withFileTypes: true });
    return entries.filter((e) => (e.isDirectory() || e.isSymbolicLink()) && isReleaseDir(join(libModules, e.name))).map((e) => e.name).sort();
  } catch {
    return [];
  }
}

/** A lib/modules/<release> directory: has kernel/ (the modules) or modules.order. */
function isReleaseDir(dir: string): boolean {
  return existsSync(join(dir, 'kernel')) || existsSync(join(dir, 'modules.order'));
}

/** The release directory itself was passed: named like a release, with modules_install's files. */
function isGivenReleaseDir(dir: string): boolean {
  return /^\d+\.\d+/.test(basename(dir)) && existsSync(join(dir, 'kernel')) &&
    ['modules.order', 'modules.builtin', 'modules.dep'].some((f) => existsSync(join(dir, f)));
}

export interface ModulesTree {
  /** The kernel release, i.e. the directory's name. */
  release: string;
  /** .../lib/modules/<release> */
  dir: string;
}

/**
 * Finds lib/modules/<release> in what the user passed as --modules: the INSTALL_MOD_PATH of
 * `make modules_install` (<dir>/lib/modules/<release>), a merged-/usr tree
 * (<dir>/usr/lib/modules/<release>, as Debian's packages unpack), a lib/modules directory, or
 * the release directory itself. `release` (read from the kernel image) picks among several.
 */
export async function findModulesTree(given: string, release: string | undefined): Promise<ModulesTree> {
  const root = resolve(given);
  if (!existsSync(root)) {
    throw new KernelInputError(`--modules ${given}: no such directory. Pass the INSTALL_MOD_PATH you gave ` +
      '`make modules_install` (the directory holding lib/modules/<release>/)');
  }
  if (!statSync(root).isDirectory()) throw new KernelInputError(`--modules ${given} is not a directory`);

  if (isGivenReleaseDir(root)) return checkRelease({ release: basename(root), dir: root }, release, given);
  const candidates = [join(root, 'lib/modules'), join(root, 'usr/lib/modules')];
  if (basename(root) === 'modules') candidates.push(root);
  for (const libModules of candidates) {
    const releases = await releaseDirs(libModules);
    if (releases.length === 0) continue;
    if (release !== undefined) {
      if (releases.includes(release)) return { release, dir: join(libModules, release) };
      throw new KernelInputError(`the kernel image is release ${release}, but ${libModules} has modules for ` +
        `${releases.join(', ')} only. Pass the modules installed from the same build as the kernel ` +
        '(make modules_install INSTALL_MOD_PATH=<dir> after building that bzImage).');
    }
    if (releases.length === 1) return { release: releases[0]!, dir: join(libModules, releases[0]!) };
    throw new KernelInputError(`cannot read the release from the kernel image, and ${libModules} has modules for ` +
      `several releases (${releases.join(', ')}): pass the release directory itself, e.g. --modules ${join(libModules, releases[0]!)}`);
  }
  throw new KernelInputError(`--modules ${given} has no lib/modules/<release>/ directory with a kernel/ subdirectory. ` +
    'Pass the INSTALL_MOD_PATH of `make modules_install INSTALL_MOD_PATH=<dir>` (it creates <dir>/lib/modules/<release>/kernel/...).');
}

function checkRelease(tree: ModulesTree, release: string | undefined, given: string): ModulesTree {
  if (release !== undefined && tree.release !== release) {
    throw new KernelInputError(`the kernel image is release ${release}, but --modules ${given} is for ${tree.release}. ` +
      'Pass the modules installed from the same build as the kernel.');
  }
  return tree;
}

export interface CustomKernel {
  kernel: GuestKernel;
  /** The release read from the image, if it could be read. */
  imageRelease?: string;
  /** False when no modules tree is used (--modules none, or the modules come from --initrd). */
  hasModules: boolean;
}

/**
 * A GuestKernel for the user's image and modules tree. Without a modules tree, modulesDir is
 * empty and buildInitramfs() must be called with no modules.
 */
export async function customKernel(opts: { image: string; modules?: string }): Promise<CustomKernel> {
  const image = resolve(opts.image);
  const imageRelease = await readKernelRelease(image);
  if (opts.modules === undefined) {
    return { kernel: { version: imageRelease ?? 'unknown', vmlinuz: image, modulesDir: '' }, imageRelease, hasModules: false };
  }
  const tree = await findModulesTree(opts.modules, imageRelease);
  if (!existsSync(join(tree.dir, 'kernel'))) {
    throw new KernelInputError(`${tree.dir} has no kernel/ directory: the modules_install looks incomplete (run it again)`);
  }
  return { kernel: { version: tree.release, vmlinuz: image, modulesDir: tree.dir }, imageRelease, hasModules: true };
}

/**
 * The include directory of a `make headers_install` output: <dir>/include (INSTALL_HDR_PATH)
 * or <dir> itself when it holds linux/vfio.h.
 */
export function findHeadersInclude(given: string): string {
  const root = resolve(given);
  if (!existsSync(root)) {
    throw new KernelInputError(`--headers ${given}: no such directory. Pass the INSTALL_HDR_PATH of ` +
      '`make headers_install INSTALL_HDR_PATH=<dir>` (default <linux tree>/usr)');
  }
  for (const include of [join(root, 'include'), root]) {
    if (existsSync(join(include, 'linux/vfio.h'))) return include;
  }
  throw new KernelInputError(`--headers ${given} has no include/linux/vfio.h. Pass the INSTALL_HDR_PATH of ` +
    '`make headers_install INSTALL_HDR_PATH=<dir>` (default <linux tree>/usr), which holds include/linux/vfio.h');
}

/**
 * Writes `output` = the user's initramfs, zero padding to a 4-byte boundary, then ours. The
 * kernel unpacks concatenated cpio archives (each compressed or not) in order into one rootfs,
 * later files replacing earlier ones: the user's archive contributes what ours lacks (their
 * lib/modules), ours provides /init, busybox and the tests.
 */
export async function concatInitramfs(userInitrd: string, ours: Buffer): Promise<Buffer> {
  if (!existsSync(userInitrd)) throw new KernelInputError(`--initrd ${userInitrd}: no such file`);
  if (!statSync(userInitrd).isFile()) throw new KernelInputError(`--initrd ${userInitrd} is not a file`);
  const theirs = await readFile(userInitrd);
  if (theirs.length === 0) throw new KernelInputError(`--initrd ${userInitrd} is empty`);
  const pad = (4 - (theirs.length % 4)) % 4;
  return Buffer.concat([theirs, Buffer.alloc(pad), ours]);
}
