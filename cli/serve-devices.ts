/**
 * `edu-plus serve --device SPEC [--device SPEC]…`: several devices from one process, each on its
 * own socket with its own trace socket. One event loop serves them all; a device only costs
 * time while its client talks to it. The single-device form (`npm start`, no --device) stays
 * in serve.ts; the device names and options live in devices.ts.
 */
import { PciDeclarationError } from '../device/pci/validate.ts';
import type { ClientLimits } from '../protocol/client-limits.ts';
import { HostResourceError } from '../protocol/errors.ts';
import type { Logger } from '../protocol/log.ts';
import type { ServerLimits } from '../protocol/version.ts';
import { DeviceDescriptionError, type DeviceFactory } from '../protocol/served-device.ts';
import { type ServerOptions, VfioUserServer } from '../protocol/server.ts';
import type { WaitMechanism } from '../protocol/channel.ts';
import { attachLine } from '../qemu-configs/qemu-command.ts';
import { closeOffload } from '../trace/offload.ts';
import { type TraceServer, startTraceServer } from '../trace/trace-server.ts';
import { type DeviceSpec, devicesHelp, isModulePath, parseDeviceSpecs } from './devices.ts';
import { CommandFailure } from './failures.ts';
import { UsageError } from './flags.ts';

export const SERVE_DEVICES_HELP = `Several devices (or one that is not edu-plus) from one process:

  npm start -- --device SPEC [--device SPEC]... [--log-level L] [--wait-us N] [--wait-with HOW] [--no-trace]
                [the client limits above, which apply to every device]

SPEC is NAME[,KEY=VALUE|,FLAG]... — NAME a shipped device or the path of your own device module
(one whose default export is a DeviceFactory, see the README's "Write your own device"):
${devicesHelp()}
  Every device also takes:
      socket=PATH    where it listens (default: the directory of --socket-path's default; edu-plus.sock for
                     edu-plus, edu-plus-NAME.sock for others, -2, -3 … for repeats)
      trace=PATH     its trace socket (default: the socket path plus ".trace"); trace=none: none

Examples:
  npm start -- --device edu-plus,reset=flr --device gpu,vram-size=8G
  npx edu-plus serve --device examples/scratch-device.ts,socket=/tmp/scratch.sock
With --device, the edu-plus flags (--bar1-size, --reset, --socket-path …) go inside the spec.`;

/** Splits the --device arguments (repeatable, so parseFlags cannot take them) from the rest. */
export function takeDeviceArguments(argv: readonly string[]): { specs: string[]; rest: string[] } {
  const specs: string[] = [];
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--device') {
      const value = argv[++i];
      if (value === undefined || value.startsWith('--')) throw new UsageError('--device needs a device, e.g. --device gpu or --device edu-plus,reset=flr');
      specs.push(value);
    } else if (arg.startsWith('--device=')) specs.push(arg.slice('--device='.length));
    else rest.push(arg);
  }
  return { specs, rest };
}

/** The flags of the single-device form, which the --device form takes inside a spec instead. */
const SINGLE_DEVICE_FLAGS = ['socket-path', 'trace-socket', 'bar1-size', 'hugepages', 'dma-mask', 'dma-delay-ms', 'reset'] as const;

export interface ServeDevicesOptions {
  /** serve's parsed flags: the ones every device shares, and single-device ones to refuse. */
  readonly flags: Readonly<Record<string, unknown>> & { readonly 'no-trace'?: boolean; readonly _: readonly string[] };
  readonly log: Logger;
  readonly waitMicros: number;
  readonly waitWith: WaitMechanism;
  readonly clientLimits: ClientLimits;
  readonly limits: ServerLimits;
}

export async function serveDevices(specArgs: readonly string[], opts: ServeDevicesOptions): Promise<number> {
  const misplaced = SINGLE_DEVICE_FLAGS.find((f) => opts.flags[f] !== undefined);
  if (misplaced) {
    const key = misplaced === 'socket-path' ? 'socket' : misplaced === 'trace-socket' ? 'trace' : misplaced;
    throw new UsageError(`--${misplaced} applies to one device: with --device, put it in the spec, e.g. --device edu-plus,${key}${key === 'hugepages' ? '' : '=VALUE'}`);
  }
  if (opts.flags._.length) throw new UsageError(`serve takes no arguments besides options (got "${opts.flags._.join(' ')}"); see serve --help`);
  const { log } = opts;
  const specs = await parseDeviceSpecs(specArgs, !opts.flags['no-trace']);
  const served: { spec: DeviceSpec; server: VfioUserServer; trace: TraceServer | null }[] = [];
  const closeAll = async () => {
    for (const s of served.splice(0).reverse()) {
      await s.trace?.close();
      s.server.close();
    }
  };
  try {
    for (const spec of specs) {
      const deviceLog = specs.length > 1 ? log.child(spec.label) : log;
      const server = listenDevice(
        { name: spec.name, socketPath: spec.socketPath, factory: spec.factory, userModule: isModulePath(spec.name), usagePrefix: `--device ${spec.name}: ` },
        { log: deviceLog, waitMicros: opts.waitMicros, waitWith: opts.waitWith, clientLimits: opts.clientLimits, limits: opts.limits },
      );
      served.push({ spec, server, trace: null });
      deviceLog.info(`${spec.name}: ${spec.description}`);
      if (spec.tracePath) served.at(-1)!.trace = await startTrace(spec.name, spec.tracePath, server, deviceLog);
    }
  } catch (err) {
    await closeAll();
    throw err;
  }
  // Signal handlers before the "serving" lines: whoever starts us may stop us as soon as it reads them.
  const stopped = untilStopSignal(log);
  for (const { spec } of served) {
    console.log(`${spec.label} is serving on ${spec.socketPath}`);
    console.log(`  attach: ${attachLine(spec.socketPath)}`);
    if (spec.tracePath) console.log(`  watch:  edu-plus trace ${spec.tracePath}`);
  }
  console.log('Give QEMU one -device option per socket (guest RAM must be shared memory, see serve --help).');
  console.log('Stop with Ctrl-C.');
  await stopped;
  await closeAll();
  await closeOffload();
  return 0;
}

/** What to serve, and how to name it in errors. */
export interface DeviceTarget {
  readonly name: string;
  readonly socketPath: string;
  readonly factory: DeviceFactory;
  /** The device is the user's own module: its declaration is theirs to fix. */
  readonly userModule: boolean;
  /** Leads a usage error, e.g. "--device gpu: " ("" in the single-device form). */
  readonly usagePrefix: string;
}

/**
 * Builds the device and listens on its socket. Whose fault a failure is decides how serve
 * ends: huge pages the host has not reserved, or an inconsistent declaration in the user's
 * own device module, are the user's to fix (UsageError, exit 2, the message says how); a
 * system call that fails (socket in use) or anything a shipped device or the server throws is
 * a failure naming the device and socket (exit 1) — never passed off as a wrong flag.
 */
export function listenDevice(target: DeviceTarget, opts: Omit<ServerOptions, 'socketPath' | 'device'>): VfioUserServer {
  try {
    return VfioUserServer.listen({ ...opts, socketPath: target.socketPath, device: target.factory });
  } catch (err) {
    const declaration = err instanceof PciDeclarationError || err instanceof DeviceDescriptionError;
    if (err instanceof HostResourceError || (declaration && target.userModule)) throw new UsageError(`${target.usagePrefix}${err.message}`);
    throw new CommandFailure(`cannot serve ${target.name} on ${target.socketPath}`, err);
  }
}

/** Starts a device's trace channel; a failure names the trace socket. */
export async function startTrace(name: string, tracePath: string, server: VfioUserServer, log: Logger): Promise<TraceServer> {
  try {
    return await startTraceServer({ socketPath: tracePath, server, log: log.child('trace') });
  } catch (err) {
    throw new CommandFailure(`cannot start ${name}'s trace channel on ${tracePath}`, err);
  }
}

/** Resolves on the first SIGINT or SIGTERM, logging which. */
export function untilStopSignal(log: Logger): Promise<void> {
  return new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info(`${signal} received, shutting down`);
      resolve();
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
}
