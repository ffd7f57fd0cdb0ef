// Builds the guest's initramfs: busybox with its applet links, the requested kernel modules
// with their dependency closure and a modules.dep, the caller's files (e.g. static test
// binaries) and /init, as a gzip-compressed newc cpio archive.

import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { progress } from './cache.ts';
import { CpioWriter } from './cpio.ts';
import { type KernelModule, modulesAlias, modulesDep, resolveModuleClosure } from './module-closure.ts';
import { provisionBusybox } from './provision-busybox.ts';
import type { GuestKernel } from './provision-kernel.ts';

export { defaultInit, guestModules, GUEST_DONE_SENTINEL, GUEST_INIT_SENTINEL } from './guest-init.ts';

export interface InitramfsFile {
  /** Path on the host. */
  src: string;
  /** Absolute path in the guest, e.g. "/tests/dmabuf". */
  dest: string;
  /** Permission bits; default: the source file's. */
  mode?: number;
}

export interface InitramfsOptions {
  kernel: GuestKernel;
  /**
   * Modules to include with their dependencies, e.g. ['vfio-pci', 'vfio_iommu_type1']. Empty:
   * no lib/modules at all (kernel.modulesDir is not read), for a kernel with everything built
   * in or an image appended to another initramfs that carries the modules.
   */
  modules: string[];
  /** Modules built out of tree that replace the kernel's files of the same name (see module-index.ts). */
  moduleOverrides?: { name: string; file: string }[];
  files: InitramfsFile[];
  /** The text of /init (see defaultInit()). */
  init: string;
  /** Where to write the .cpio.gz. */
  output: string;
}

/** A module the initramfs carries: where it came from and how the guest will recognise it. */
export type PackedModule = Omit<KernelModule, 'data' | 'aliases' | 'depends'>;

export interface InitramfsSummary {
  output: string;
  bytes: number;
  modules: string[];
  /** The packed modules, for checking the guest's report of what it loaded. */
  packed: PackedModule[];
}

const BASE_DIRS = ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'etc', 'proc', 'sys', 'dev', 'tmp', 'run', 'root', 'mnt'];

/**
 * Writes the initramfs to `opts.output` (atomically, so a concurrent boot never reads half an
 * image). Busybox is provisioned into the cache on first use.
 */
export async function buildInitramfs(opts: InitramfsOptions): Promise<InitramfsSummary> {
  const step = progress('initramfs');
  const [busybox, closure] = await Promise.all([
    provisionBusybox(),
    opts.modules.length === 0 ? { modules: [], builtin: [] } : resolveModuleClosure(opts.kernel.modulesDir, opts.modules, opts.moduleOverrides),
  ]);

  const cpio = new CpioWriter();
  for (const dir of BASE_DIRS) cpio.directory(dir);
  // The kernel opens /dev/console for init's stdin/stdout/stderr before /init runs, i.e.
  // before devtmpfs is mounted: without this node /init would have no output at all.
  cpio.charDevice('dev/console', 5, 1, 0o600);
  cpio.file('init', Buffer.from(opts.init, 'utf8'), 0o755);

  // Caller files first: a caller may deliberately replace an applet link with a real binary.
  for (const f of opts.files) {
    if (!f.dest.startsWith('/')) throw new Error(`initramfs file destination must be absolute: ${f.dest}`);
    const [data, st] = await Promise.all([readFile(f.src), stat(f.src)]);
    cpio.file(f.dest, data, f.mode ?? st.mode & 0o7777);
  }

  cpio.file('bin/busybox', await readFile(busybox.binary), 0o755);
  for (const applet of busybox.applets) {
    if (!cpio.has(applet)) cpio.symlink(applet, '/bin/busybox');
  }

  if (opts.modules.length > 0) {
    const moduleRoot = `lib/modules/${opts.kernel.version}`;
    for (const mod of closure.modules) cpio.file(`${moduleRoot}/${mod.path}`, mod.data, 0o644);
    cpio.file(`${moduleRoot}/modules.dep`, Buffer.from(modulesDep(closure.modules)));
    cpio.file(`${moduleRoot}/modules.alias`, Buffer.from(modulesAlias(closure.modules)));
    try {
      cpio.file(`${moduleRoot}/modules.builtin`, await readFile(`${opts.kernel.modulesDir}/modules.builtin`));
    } catch {
      // Optional: only consulted to tell "built in" from "missing".
    }
  }

  const image = await promisify(gzip)(cpio.finish(), { level: 6 });
  await mkdir(dirname(opts.output), { recursive: true });
  const tmp = `${opts.output}.tmp-${process.pid}`;
  await writeFile(tmp, image);
  await rename(tmp, opts.output);
  const names = closure.modules.map((m) => m.name);
  step.done(`${opts.output}: ${(image.length / 1024 / 1024).toFixed(2)} MiB, modules ${names.join(' ') || '(none)'}`);
  const packed = closure.modules.map(({ data: _d, aliases: _a, depends: _p, ...rest }) => rest);
  return { output: opts.output, bytes: image.length, modules: names, packed };
}
