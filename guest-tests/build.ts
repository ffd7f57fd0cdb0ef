/**
 * Builds the guest test programs: every `guest-tests/*.c` with a `main` is
 * linked statically (the guest initramfs has busybox and nothing else, no
 * dynamic loader or libc) together with every `.c` without one (the shared
 * helpers such as ktap.c and vfio_util.c).
 *
 * Usable as a module (`buildGuestTests()`) and as a script:
 *   tsx guest-tests/build.ts [--out-dir DIR] [--include-dir DIR]
 * which prints the path of each binary, one per line.
 */
import { execFile } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import { mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { checkoutCacheDir } from '../qemu-configs/cache.ts';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { provisionKernelHeaders } from '../qemu-configs/provision-headers.ts';
import { checkGuestSources } from './source-checks.ts';

const execFileAsync = promisify(execFile);

export interface BuildGuestTestsOptions {
  /** Where binaries go; default `<edu-plus cache>/guest-tests`. */
  outDir?: string;
  /**
   * A kernel's `make headers_install` include directory (the one holding
   * `linux/vfio.h`). Searched before the host's /usr/include, so tests see
   * the UAPI of the kernel they will run on, not the host's. Default: the
   * stock UAPI of the provisioned guest kernel's line (Debian's
   * linux-libc-dev 7.3.x, see qemu-configs/provision-headers.ts) -- never
   * the host's own headers, which are too old for the DMABUF features.
   */
  includeDir?: string;
}

export interface GuestTestBinary {
  /** The source's base name, e.g. `edu_plus_basic`. */
  name: string;
  path: string;
}

export interface BuildGuestTestsResult {
  binaries: GuestTestBinary[];
}

/** The directory holding the guest test sources (this file's own). */
export const GUEST_TESTS_DIR = path.dirname(fileURLToPath(import.meta.url));

const CFLAGS = ['-static', '-O2', '-Wall', '-Wextra', '-Werror'];

/** This checkout's own part of the cache (see checkoutCacheDir), then `guest-tests`. */
export function defaultOutDir(): string {
  return path.join(checkoutCacheDir(), 'guest-tests');
}

export async function buildGuestTests(opts: BuildGuestTestsOptions = {}): Promise<BuildGuestTestsResult> {
  const outDir = path.resolve(opts.outDir ?? defaultOutDir());
  const includeDir = opts.includeDir === undefined ? await provisionKernelHeaders() : path.resolve(opts.includeDir);
  await checkIncludeDir(includeDir);
  const includeArgs = uapiIncludeArgs(includeDir);

  const sources = await scanSources();
  await rejectUnsafeSources([...sources.programs, ...sources.helpers, ...sources.headers]);
  // Any header or helper may affect any program, so every program depends
  // on all of them (there are few, and a rebuild takes a second).
  const newestInput = Math.max(
    await newestMtime([...sources.programs, ...sources.helpers, ...sources.headers]),
    await newestMtime(await listFiles(includeDir)),
  );

  await mkdir(outDir, { recursive: true });
  let toolchainChecked = false;
  const binaries: GuestTestBinary[] = [];
  for (const program of sources.programs) {
    const name = path.basename(program, '.c');
    const out = path.join(outDir, name);
    const args = [
      ...CFLAGS,
      ...includeArgs,
      program,
      ...sources.helpers,
    ];
    // The recorded command catches what mtimes cannot: a different
    // includeDir, or changed flags, with the same sources.
    const stamp = JSON.stringify(args);
    if (!(await isUpToDate(out, stamp, newestInput))) {
      if (!toolchainChecked) await checkToolchain();
      toolchainChecked = true;
      await compile(name, args, out);
      await writeFile(`${out}.cmd`, `${stamp}\n`);
    }
    binaries.push({ name, path: out });
  }
  return { binaries };
}

interface Sources {
  programs: string[];
  helpers: string[];
  headers: string[];
}

/** A test program is a .c file that defines `main`; the rest are helpers. */
async function scanSources(): Promise<Sources> {
  const sources: Sources = { programs: [], helpers: [], headers: [] };
  for (const entry of (await readdir(GUEST_TESTS_DIR)).sort()) {
    const file = path.join(GUEST_TESTS_DIR, entry);
    if (entry.endsWith('.h')) {
      sources.headers.push(file);
    } else if (entry.endsWith('.c')) {
      const text = await readFile(file, 'utf8');
      (/^\s*int\s+main\s*\(/m.test(text) ? sources.programs : sources.helpers).push(file);
    }
  }
  return sources;
}

/**
 * The checks gcc cannot make (source-checks.ts): a guest test whose errno is stale blames the
 * kernel for a failure it never had, so such a source is not built at all.
 */
async function rejectUnsafeSources(files: string[]): Promise<void> {
  const sources = await Promise.all(
    files.map(async (file) => ({ file: path.relative(process.cwd(), file), text: await readFile(file, 'utf8') })),
  );
  const problems = checkGuestSources(sources);
  if (problems.length > 0) throw new Error(`guest test sources rejected before compiling:\n${problems.join('\n')}`);
}

async function isUpToDate(out: string, stamp: string, newestInput: number): Promise<boolean> {
  try {
    const [binary, recorded] = await Promise.all([stat(out), readFile(`${out}.cmd`, 'utf8')]);
    return recorded.trim() === stamp && binary.mtimeMs >= newestInput;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return false;
    throw err;
  }
}

/** Fails with the Debian package to install when gcc or libc.a is missing. */
async function checkToolchain(): Promise<void> {
  let libc: string;
  try {
    libc = (await execFileAsync('gcc', ['-print-file-name=libc.a'])).stdout.trim();
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') {
      throw new Error('gcc not found on PATH: install the Debian package gcc (apt-get install gcc)');
    }
    throw err;
  }
  // gcc echoes the bare name back when it cannot find the file.
  if (!path.isAbsolute(libc)) {
    throw new Error(
      'gcc cannot find the static C library (libc.a), needed for -static: ' +
        'install the Debian package libc6-dev (apt-get install libc6-dev)',
    );
  }
}

/**
 * `-isystem` options for a UAPI include directory. -isystem directories are
 * searched before the compiler's standard ones (/usr/include/<multiarch>,
 * /usr/include), so linux/*.h and asm/*.h come from the kernel's UAPI even
 * when glibc's own headers include them, while glibc's headers themselves
 * (not in a UAPI tree) still come from the host. Debian's linux-libc-dev
 * keeps asm/ under the multiarch directory (x86_64-linux-gnu/asm), a
 * `make headers_install` tree directly under include/: take both layouts.
 */
export function uapiIncludeArgs(includeDir: string): string[] {
  const multiarch = path.join(includeDir, 'x86_64-linux-gnu');
  return existsSync(path.join(multiarch, 'asm')) ? ['-isystem', multiarch, '-isystem', includeDir] : ['-isystem', includeDir];
}

async function checkIncludeDir(dir: string): Promise<void> {
  try {
    await stat(path.join(dir, 'linux', 'vfio.h'));
  } catch {
    throw new Error(
      `includeDir ${dir} has no linux/vfio.h: pass the include directory ` +
        'made by `make headers_install` (INSTALL_HDR_PATH/include, e.g. <kernel build>/usr/include)',
    );
  }
}

/** gcc into a temporary name, then rename: a failed build leaves no binary that looks fresh. */
async function compile(name: string, args: string[], out: string): Promise<void> {
  const tmp = `${out}.tmp-${process.pid}`;
  try {
    await execFileAsync('gcc', [...args, '-o', tmp]);
    await rename(tmp, out);
  } catch (err) {
    await rm(tmp, { force: true });
    const stderr = (err as { stderr?: unknown }).stderr;
    const detail = typeof stderr === 'string' && stderr.trim() !== '' ? stderr.trim() : String(err);
    throw new Error(`gcc failed to build guest test ${name}:\n${detail}`);
  }
}

async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true });
  return entries.map((entry) => path.join(dir, entry));
}

async function newestMtime(files: string[]): Promise<number> {
  let newest = 0;
  for (const file of files) {
    // A dangling symlink in a headers tree (Debian's linux-libc-dev has some) is no source.
    const s = await stat(file).catch(() => null);
    if (s?.isFile()) newest = Math.max(newest, s.mtimeMs);
  }
  return newest;
}

function errnoCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string'
    ? err.code
    : undefined;
}

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      'out-dir': { type: 'string' },
      'include-dir': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(
      'usage: tsx guest-tests/build.ts [--out-dir DIR] [--include-dir KERNEL_UAPI_INCLUDE_DIR]\n' +
        '  default include dir: the provisioned stock kernel UAPI headers (linux-libc-dev of the guest kernel line)\n',
    );
    return;
  }
  const { binaries } = await buildGuestTests({ outDir: values['out-dir'], includeDir: values['include-dir'] });
  for (const binary of binaries) process.stdout.write(`${binary.path}\n`);
}

function isMainModule(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return import.meta.url === pathToFileURL(realpathSync(script)).href;
  } catch {
    return false; // argv[1] is not a file: we were imported
  }
}

if (isMainModule()) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  });
}
