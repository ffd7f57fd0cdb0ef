/**
 * `edu-plus serve --device SPEC [--device SPEC]…`: several devices from one process, each on its
 * own socket with its own trace socket. One event loop serves them all; a device only costs
 * time while its client talks to it. The single-device form (`npm start`, no --device) stays
 * in serve.ts; the device names and options live in devices.ts.
 */
import type { ClientLimits } from '../protocol/client-limits.ts';
import type { Logger } from '../protocol/log.ts';
import type { ServerLimits } from '../protocol/version.ts';
import { VfioUserServer } from '../protocol/server.ts';
import { attachLine } from '../qemu-configs/qemu-command.ts';
import { closeOffload } from '../trace/offload.ts';
import { type TraceServer, startTraceServer } from '../trace/trace-server.ts';
import { type DeviceSpec, devicesHelp, parseDeviceSpecs } from './devices.ts';
import { UsageError } from './flags.ts';

export const SERVE_DEVICES_HELP = `Several devices (or one that is not edu-plus) from one process:

  npm start -- --device SPEC [--device SPEC]... [--log-level L] [--spin-us N] [--no-trace]
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
  readonly spinMicros: number;
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
      const server = listen(spec, deviceLog, opts);
      served.push({ spec, server, trace: null });
      deviceLog.info(`${spec.name}: ${spec.description}`);
      if (spec.tracePath) served.at(-1)!.trace = await startTraceServer({ socketPath: spec.tracePath, server, log: deviceLog.child('trace') });
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

function listen(spec: DeviceSpec, log: Logger, opts: ServeDevicesOptions): VfioUserServer {
  try {
    return VfioUserServer.listen({ socketPath: spec.socketPath, device: spec.factory, log, spinMicros: opts.spinMicros, clientLimits: opts.clientLimits, limits: opts.limits });
  } catch (err) {
    // A declaration the layer refuses or memory the host cannot give: the user's to fix.
    if (err instanceof Error && !('errno' in err)) throw new UsageError(`--device ${spec.name}: ${err.message}`);
    throw err;
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
