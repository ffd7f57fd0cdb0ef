/**
 * Bring your own test (`vm --add PATH --run CMD`, in the spirit of `vng --run`): files and
 * directories of the developer's go into the guest under /byo, and each --run command runs
 * there, between /init's program markers, after the device was bound to vfio-pci. The verdict
 * reads a command's KTAP when it prints any, else its exit status (kselftest's convention:
 * 0 pass, 4 skip, anything else fail) — see cli/vm-report.ts.
 *
 * The guest has busybox and no C library or dynamic loader: a dynamically linked ELF could
 * only fail with "not found", so it is refused here with what to do instead.
 */
import { closeSync, openSync, readSync, readdirSync, statSync } from 'node:fs';
import { basename, join, relative, resolve } from 'node:path';
import type { InitramfsFile } from '../qemu-configs/initramfs.ts';
import { isProgramName, programCommand } from './vm-report.ts';

/** Where added files land in the guest; --run commands start in it. */
export const BYO_DIR = '/byo';

/** A developer's program: its name in the summary and its shell command line. */
export interface ExtraProgram {
  name: string;
  command: string;
}

/** A mistake in what the developer passed; vm turns it into a usage error (exit 2). */
export class ExtraTestInputError extends Error {}

/**
 * Names the --run commands after their first word's base name ("./my_test -v" → my_test),
 * made unique against `taken` (our own programs' names) and each other with a -2, -3 suffix.
 */
export function nameRuns(commands: readonly string[], taken: Iterable<string> = []): ExtraProgram[] {
  const used = new Set(taken);
  return commands.map((command) => {
    const first = command.trim().split(/\s+/)[0] ?? '';
    const base = basename(first).replace(/[^A-Za-z0-9_.+-]/g, '_').replace(/^[._]+/, '') || 'run';
    let name = base;
    for (let n = 2; used.has(name); n++) name = `${base}-${n}`;
    used.add(name);
    if (!isProgramName(name)) throw new Error(`internal: derived program name ${JSON.stringify(name)}`);
    return { name, command };
  });
}

/** The ELF facts that decide whether the guest can run a file. */
export interface ElfKind {
  elf: boolean;
  /** It names a program interpreter (PT_INTERP): dynamically linked. */
  dynamic: boolean;
  /** e_machine is x86-64 (62). */
  x86_64: boolean;
}

const PT_INTERP = 3;
const EM_X86_64 = 62;

/** Reads an ELF header and program headers from the start of a file (64-bit little-endian). */
export function elfKind(head: Buffer): ElfKind {
  if (head.length < 64 || head.readUInt32BE(0) !== 0x7f454c46) return { elf: false, dynamic: false, x86_64: false };
  const is64 = head[4] === 2;
  const x86_64 = is64 && head.readUInt16LE(18) === EM_X86_64;
  if (!is64) return { elf: true, dynamic: false, x86_64: false };
  const phoff = Number(head.readBigUInt64LE(32));
  const phentsize = head.readUInt16LE(54);
  const phnum = head.readUInt16LE(56);
  let dynamic = false;
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    if (at + 4 > head.length) break;
    if (head.readUInt32LE(at) === PT_INTERP) dynamic = true;
  }
  return { elf: true, dynamic, x86_64 };
}

function readHead(file: string): Buffer {
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.alloc(4096);
    const n = readSync(fd, buf, 0, buf.length, 0);
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

/** Why the guest could not run this file, or undefined when it can (or it is not a program). */
export function unrunnableReason(file: string): string | undefined {
  const kind = elfKind(readHead(file));
  if (!kind.elf) return undefined;
  if (!kind.x86_64) return `${file} is an ELF program but not x86-64; the guest is x86-64`;
  if (kind.dynamic) {
    return `${file} is dynamically linked, and the guest has no C library or dynamic loader (busybox only): link it with -static`;
  }
  return undefined;
}

/** Every regular file under `dir` (symlinks followed), sorted, as paths relative to it. */
function walk(dir: string, prefix = ''): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(join(dir, prefix)).sort()) {
    const rel = prefix === '' ? entry : `${prefix}/${entry}`;
    const st = statSync(join(dir, rel));
    if (st.isDirectory()) out.push(...walk(dir, rel));
    else if (st.isFile()) out.push(rel);
  }
  return out;
}

/**
 * The initramfs entries for `--add` paths: a file goes to /byo/<name>, a directory to
 * /byo/<dirname>/... with its tree. Refuses a missing path, two paths with one base name, and
 * a dynamically linked or non-x86-64 program (the message names the file and says what to do).
 */
export function addedFiles(paths: readonly string[]): { files: InitramfsFile[]; dirs: string[] } {
  const files: InitramfsFile[] = [];
  const dirs: string[] = [];
  const seen = new Map<string, string>();
  for (const given of paths) {
    const path = resolve(given);
    let st;
    try {
      st = statSync(path);
    } catch {
      throw new ExtraTestInputError(`--add ${given}: no such file or directory`);
    }
    const name = basename(path);
    const earlier = seen.get(name);
    if (earlier !== undefined) throw new ExtraTestInputError(`--add ${earlier} and ${given} would both be ${BYO_DIR}/${name} in the guest: rename one`);
    seen.set(name, given);
    const sources = st.isDirectory() ? walk(path).map((rel) => join(path, rel)) : [path];
    if (st.isDirectory()) dirs.push(`${BYO_DIR}/${name}`);
    for (const src of sources) {
      const reason = unrunnableReason(src);
      if (reason !== undefined) throw new ExtraTestInputError(`--add: ${reason}`);
      const rel = st.isDirectory() ? `${name}/${relative(path, src)}` : name;
      files.push({ src, dest: `${BYO_DIR}/${rel}` });
    }
  }
  return { files, dirs };
}

/**
 * /init's line that binds every edu-plus function to vfio-pci and exports EDU_PLUS_BDF (the
 * first one's address, e.g. 0000:00:03.0) for the commands that follow. Our own programs bind
 * the device themselves; a developer's and the kernel's selftests expect it bound already.
 */
export const BIND_DEVICE =
  'echo "1234 11e8" > /sys/bus/pci/drivers/vfio-pci/new_id 2>/dev/null; ' +
  'export EDU_PLUS_BDF=$(basename "$(dirname "$(grep -l 0x11e8 /sys/bus/pci/devices/*/device | head -n1)")")';

/** The shell command that runs one --run command in /byo with the added directories on PATH. */
export function byoCommand(command: string, dirs: readonly string[]): string {
  const path = [BYO_DIR, ...dirs].join(':');
  return `cd ${BYO_DIR} && PATH=${path}:$PATH && ${command}`;
}

/** Programs beyond ours for one run: their names (in order), initramfs files and /init lines. */
export interface ExtraPrograms {
  names: string[];
  files: InitramfsFile[];
  /** /init lines that prepare the guest for them (also run before a --shell prompt). */
  setup: string[];
  /** One /init line per program, between its markers. */
  commands: string[];
}

/** Plans `--add` and `--run`: checks the paths, names the commands, writes their /init lines. */
export function planByo(add: readonly string[], run: readonly string[], taken: Iterable<string>): ExtraPrograms {
  const { files, dirs } = addedFiles(add);
  const programs = nameRuns(run, taken);
  return {
    names: programs.map((p) => p.name),
    files,
    setup: [],
    commands: programs.map((p) => programCommand(p.name, byoCommand(p.command, dirs))),
  };
}

/** Two sets of extra programs as one, in order. */
export function joinExtras(a: ExtraPrograms, b: ExtraPrograms): ExtraPrograms {
  return { names: [...a.names, ...b.names], files: [...a.files, ...b.files], setup: [...a.setup, ...b.setup], commands: [...a.commands, ...b.commands] };
}
