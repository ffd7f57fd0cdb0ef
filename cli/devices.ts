/**
 * The devices `serve` knows by name, and how a `--device` argument becomes a device to serve:
 *
 *   --device NAME[,KEY=VALUE|,FLAG]...     NAME: a shipped device (edu-plus, gpu) or the path of a
 *                                          module whose default export is a DeviceFactory
 *
 * Every device takes socket=PATH and trace=PATH|none; a shipped device also takes its own
 * options (the same words as the single-device flags: bar1-size=1G, reset=flr, hugepages …).
 * Keeping the names, parsers and help here lets the single-device flags and the --device form
 * share one validation, so `--bar1-size 3M` and `--device edu-plus,bar1-size=3M` say the same.
 */
import { basename, extname, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { DEFAULT_DMA_MASK } from '../device/edu-dma.ts';
import { createEduPlus, DEFAULT_BAR1_SIZE, type EduResetMethod, RESET_METHODS, validateBar1Size, validateDmaMask } from '../device/edu-plus.ts';
import { createGpu, DEFAULT_VRAM_SIZE, validateVramSize } from '../device/gpu.ts';
import type { DeviceFactory } from '../protocol/served-device.ts';
import { ensurePrivateDir } from '../protocol/socket-file.ts';
import { CommandFailure } from './failures.ts';
import { UsageError, parseInteger, parseSize } from './flags.ts';

/** Options of one device as given: `key=value`, or `key` alone for a yes/no option. */
export type DeviceOptions = ReadonlyMap<string, string | true>;

export interface DeviceKind {
  /** One line for --help. */
  readonly summary: string;
  /** Option name → help text (socket and trace are common to all and not listed). */
  readonly options: Readonly<Record<string, string>>;
  /**
   * Builds the factory. `label(key)` names the option in errors the way the user wrote it
   * (`--bar1-size` or `--device edu-plus,bar1-size`). Throws UsageError for a bad value.
   */
  build(options: DeviceOptions, label: (key: string) => string): { factory: DeviceFactory; description: string };
}

function text(options: DeviceOptions, key: string, label: (key: string) => string): string | undefined {
  const v = options.get(key);
  if (v === true) throw new UsageError(`${label(key)} needs a value, e.g. ${label(key)}=VALUE`);
  return v;
}

function flag(options: DeviceOptions, key: string, label: (key: string) => string): boolean {
  const v = options.get(key);
  if (v !== undefined && v !== true) throw new UsageError(`${label(key)} takes no value`);
  return v === true;
}

/** A device's RangeError for a value (e.g. a size that is not a power of two), as a usage error; anything else it throws is a bug and goes up as it is. */
function checked(label: string, given: string | undefined, check: () => void): void {
  try {
    check();
  } catch (err) {
    if (!(err instanceof RangeError)) throw err;
    throw new UsageError(`${label}${given === undefined ? '' : ` ${given}`}: ${err.message}`);
  }
}

const eduPlus: DeviceKind = {
  summary: "QEMU's edu (1234:11e8) plus a prefetchable RAM BAR1",
  options: {
    'bar1-size': 'BAR1 RAM size, a power of two from 1M to 1T (default 64M)',
    hugepages: 'back BAR1 with 2 MiB huge pages',
    'dma-mask': "edu's dma_mask (default 0xfffffff)",
    'dma-delay-ms': 'delay before each DMA transfer runs (default 0)',
    reset: 'none | flr | pm (default none, as edu)',
  },
  build(options, label) {
    const sizeText = text(options, 'bar1-size', label);
    const bar1Size = sizeText === undefined ? DEFAULT_BAR1_SIZE : parseSize(sizeText, label('bar1-size'));
    checked(label('bar1-size'), sizeText, () => validateBar1Size(bar1Size));
    const maskText = text(options, 'dma-mask', label);
    const dmaMask = maskText === undefined ? DEFAULT_DMA_MASK : parseInteger(maskText, label('dma-mask'));
    checked(label('dma-mask'), undefined, () => validateDmaMask(dmaMask));
    const delayText = text(options, 'dma-delay-ms', label);
    const dmaDelayMs = Number(delayText ?? '0');
    if (!Number.isInteger(dmaDelayMs) || dmaDelayMs < 0 || dmaDelayMs > 60_000) {
      throw new UsageError(`${label('dma-delay-ms')} must be a whole number of milliseconds from 0 to 60000 (got "${delayText}")`);
    }
    const reset = (text(options, 'reset', label) ?? 'none') as EduResetMethod;
    if (!RESET_METHODS.includes(reset)) throw new UsageError(`${label('reset')} must be ${RESET_METHODS.join(', ')} (got "${reset}")`);
    const hugePages = flag(options, 'hugepages', label);
    return {
      factory: createEduPlus({ bar1Size, dmaMask, dmaDelayMs, hugePages, reset }),
      description: `BAR1 ${bar1Size >> 20n} MiB${hugePages ? ' on 2 MiB huge pages' : ''}, dma_mask 0x${dmaMask.toString(16)}, reset method ${reset}`,
    };
  },
};

const gpu: DeviceKind = {
  summary: 'a GPU-like function (1af4:10f0): registers + MSI-X in BAR0, sparse VRAM BAR2, doorbell BAR4, FLR',
  options: {
    'vram-size': 'VRAM (BAR2) size, a power of two from 1G to 1T (default 4G; sparse memfd)',
    hugepages: 'back VRAM with 2 MiB huge pages',
  },
  build(options, label) {
    const sizeText = text(options, 'vram-size', label);
    const vramSize = sizeText === undefined ? DEFAULT_VRAM_SIZE : parseSize(sizeText, label('vram-size'));
    checked(label('vram-size'), sizeText, () => validateVramSize(vramSize));
    const hugePages = flag(options, 'hugepages', label);
    return { factory: createGpu({ vramSize, hugePages }), description: `VRAM ${vramSize >> 30n} GiB${hugePages ? ' on 2 MiB huge pages' : ''}` };
  },
};

export const DEVICE_KINDS: Readonly<Record<string, DeviceKind>> = { 'edu-plus': eduPlus, gpu };

/** $XDG_RUNTIME_DIR (private to the user by design), else a private directory of ours in /tmp. */
export function defaultSocketDir(): { dir: string; ours: boolean } {
  const runtime = process.env.XDG_RUNTIME_DIR;
  if (runtime) return { dir: runtime, ours: false };
  return { dir: `/tmp/edu-plus-${process.getuid?.() ?? 'user'}`, ours: true };
}

/** Creates (or checks) our private /tmp directory when the default sockets live there. */
export function ensureDefaultSocketDir(): void {
  const { dir, ours } = defaultSocketDir();
  if (ours) ensurePrivateDir(dir);
}

/** Where a device listens unless told: edu-plus.sock (npm start's path), edu-plus-gpu.sock, … */
export function defaultSocketPath(label = 'edu-plus'): string {
  return `${defaultSocketDir().dir}/${label === 'edu-plus' ? 'edu-plus' : `edu-plus-${label}`}.sock`;
}

/** One parsed --device argument. */
export interface DeviceSpec {
  /** A shipped device's name, or the module path as given. */
  readonly name: string;
  /** Short, unique among the served devices: names the default socket. */
  readonly label: string;
  readonly socketPath: string;
  readonly tracePath: string | null;
  readonly factory: DeviceFactory;
  readonly description: string;
}

/** A NAME that is a module path rather than a shipped device's name. */
export const isModulePath = (name: string) => name.includes('/') || ['.ts', '.js', '.mjs'].includes(extname(name));

/** `name,key=value,flag` → name and options; a repeated key is an error. */
export function splitDeviceArgument(arg: string): { name: string; options: Map<string, string | true> } {
  const [name = '', ...parts] = arg.split(',');
  if (!name) throw new UsageError(`--device needs a device name or module path first, e.g. --device edu-plus,socket=/tmp/a.sock (got "${arg}")`);
  const options = new Map<string, string | true>();
  for (const part of parts) {
    const eq = part.indexOf('=');
    const key = eq === -1 ? part : part.slice(0, eq);
    if (!key) throw new UsageError(`--device ${name}: empty option in "${arg}" (options are KEY=VALUE or FLAG, separated by commas)`);
    if (options.has(key)) throw new UsageError(`--device ${name}: option ${key} given twice`);
    options.set(key, eq === -1 ? true : part.slice(eq + 1));
  }
  return { name, options };
}

/**
 * Parses every --device argument into what to serve: builds each factory (loading module
 * paths), gives each a socket (and a trace socket unless trace=none), and refuses two devices
 * on one path.
 */
export async function parseDeviceSpecs(args: readonly string[], traceByDefault: boolean): Promise<DeviceSpec[]> {
  const specs: DeviceSpec[] = [];
  const labels = new Map<string, number>();
  for (const arg of args) {
    const { name, options } = splitDeviceArgument(arg);
    const label = (key: string) => `--device ${name},${key}`;
    const socket = text(options, 'socket', label);
    const trace = text(options, 'trace', label);
    options.delete('socket');
    options.delete('trace');
    const built = isModulePath(name) ? await loadModuleDevice(name, options) : buildShipped(name, options, label);
    const base = isModulePath(name) ? basename(name, extname(name)) : name;
    const seen = labels.get(base) ?? 0;
    labels.set(base, seen + 1);
    const unique = seen === 0 ? base : `${base}-${seen + 1}`;
    if (socket === undefined) ensureDefaultSocketDir();
    const socketPath = resolve(socket ?? defaultSocketPath(unique));
    const tracePath = trace === 'none' || (!traceByDefault && trace === undefined) ? null : resolve(trace ?? `${socketPath}.trace`);
    specs.push({ name, label: unique, socketPath, tracePath, ...built });
  }
  const paths = specs.flatMap((s) => [s.socketPath, ...(s.tracePath ? [s.tracePath] : [])]);
  const twice = paths.find((p, i) => paths.indexOf(p) !== i);
  if (twice) throw new UsageError(`two devices would listen on ${twice}: give each its own socket=PATH`);
  return specs;
}

function buildShipped(name: string, options: DeviceOptions, label: (key: string) => string) {
  const kind = DEVICE_KINDS[name];
  if (!kind) {
    throw new UsageError(`--device ${name}: no such device; shipped devices: ${Object.keys(DEVICE_KINDS).join(', ')}, or give the path of a module (e.g. examples/scratch-device.ts)`);
  }
  const unknown = [...options.keys()].find((k) => !(k in kind.options));
  if (unknown) throw new UsageError(`--device ${name}: unknown option ${unknown}; ${name} takes socket, trace, ${Object.keys(kind.options).join(', ')}`);
  return kind.build(options, label);
}

/** A user's device: a module (TypeScript or JavaScript) whose default export is a DeviceFactory. */
async function loadModuleDevice(path: string, options: DeviceOptions) {
  if (options.size) throw new UsageError(`--device ${path}: a device module takes only socket and trace (got ${[...options.keys()].join(', ')})`);
  let module: { default?: unknown };
  const url = pathToFileURL(resolve(path)).href;
  try {
    module = (await import(url)) as { default?: unknown };
  } catch (err) {
    // No file there is a wrong argument; a module that is there but fails to compile or throws
    // while loading (or lacks one of its own imports) is a failing device, not a usage error.
    const missing = (err as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND' && (err as { url?: string }).url === url;
    if (missing) throw new UsageError(`--device ${path}: cannot load the module: ${(err as Error).message}`);
    throw new CommandFailure(`--device ${path}: the device module failed to load`, err);
  }
  if (typeof module.default !== 'function') {
    throw new UsageError(`--device ${path}: the module must export default a function (host: DeviceHost) => DeviceModel, e.g. a PciFunction subclass's constructor call`);
  }
  return { factory: module.default as DeviceFactory, description: 'a device module (its default export)' };
}

/** The --help paragraph listing the devices and their options. */
export function devicesHelp(): string {
  const lines = Object.entries(DEVICE_KINDS).flatMap(([name, kind]) => [
    `  ${name.padEnd(9)} ${kind.summary}`,
    ...Object.entries(kind.options).map(([key, help]) => `      ${key.padEnd(14)} ${help}`),
  ]);
  return lines.join('\n');
}
