/**
 * `edu-plus serve`: one edu-plus device on a Unix socket until SIGINT/SIGTERM.
 */
import { createLogger } from '../protocol/log.ts';
import { closeOffload } from '../protocol/offload.ts';
import { VfioUserServer } from '../protocol/server.ts';
import { type TraceServer, startTraceServer } from '../trace/trace-server.ts';
import { attachLine } from '../qemu-configs/qemu-command.ts';
import { exampleQemuCommand } from './attach.ts';
import { DEVICE_KINDS, defaultSocketPath } from './devices.ts';
import { UsageError, parseFlags, parseLogLevel, parseSpinMicros } from './flags.ts';
import { SERVE_DEVICES_HELP, serveDevices, takeDeviceArguments, untilStopSignal } from './serve-devices.ts';

export const SERVE_HELP = `Usage: npm start -- [options]      (or: tsx cli/main.ts serve [options])

Serves one edu-plus PCI device (QEMU's edu, 1234:11e8, plus a 64 MiB prefetchable RAM BAR1)
over vfio-user on a Unix socket, and prints the QEMU option that attaches it.

Options:
  --socket-path PATH   where to listen (default: ${defaultSocketPath()}).
                       A stale socket file left by a dead server is replaced; a live one is an error.
  --log-level LEVEL    debug | info | warn | error (default: info). debug logs every DMA map.
  --spin-us N          after each burst of requests keep polling the socket for N microseconds
                       before sleeping (default: 20; 0 sleeps at once). Trades CPU for latency.
  --trace-socket PATH  where the trace channel listens (default: the socket path plus ".trace").
                       Watch it with \`tsx cli/main.ts trace PATH\` (events, registers, BAR1 access).
  --no-trace           no trace channel.
  --bar1-size SIZE     BAR1 RAM size: a power of two from 1M to 1T, e.g. 64M (default), 1G, 16G.
                       The memfd is sparse: host memory is used only for pages the guest touches.
  --hugepages          back BAR1 with 2 MiB huge pages (reserve them first:
                       echo N > /proc/sys/vm/nr_hugepages, N = size / 2 MiB).
  --dma-mask MASK      guest DMA addresses must fit this mask (edu's dma_mask), e.g. 0xfffffff
                       (the default: 28 bits) or 0xffffffffffffffff; transfers beyond it are refused.
  --dma-delay-ms N     delay before each DMA transfer runs (QEMU's edu takes 100 ms; default 0).
  --reset METHOD       the reset method the guest's vfio-pci can use (VFIO_DEVICE_RESET):
                       none (default, as QEMU's edu: no FLR or PM capability, so the guest
                       kernel offers no reset method), flr (a PCI Express capability with
                       Function Level Reset) or pm (a PM capability whose D3hot->D0 transition
                       resets the function). BAR1 keeps its contents across any reset.
  -h, --help           show this help.

Attach from QEMU >= 10.1 (guest RAM must be shared memory so the device can reach it directly):
  -object memory-backend-memfd,id=mem,size=1G,share=on -machine q35,memory-backend=mem
  ${attachLine(defaultSocketPath())}

The server runs until SIGINT or SIGTERM, then closes the client and removes its socket.
QEMU does not reconnect: if the server stops, restart the VM too.

${SERVE_DEVICES_HELP}`;

export { defaultSocketPath };

export async function serve(argv: string[]): Promise<number> {
  const devices = takeDeviceArguments(argv);
  if (devices.specs.length) return serveDevices(devices.specs, devices.rest);
  const flags = parseFlags(argv, {
    'socket-path': 'string',
    'log-level': 'string',
    'spin-us': 'string',
    'trace-socket': 'string',
    'no-trace': 'boolean',
    'bar1-size': 'string',
    hugepages: 'boolean',
    'dma-mask': 'string',
    'dma-delay-ms': 'string',
    reset: 'string',
    help: 'boolean',
  });
  if (flags.help) {
    console.log(SERVE_HELP);
    return 0;
  }
  const level = parseLogLevel(flags['log-level']);
  const spin = parseSpinMicros(flags['spin-us']);
  if (flags['no-trace'] && flags['trace-socket']) throw new UsageError('--no-trace and --trace-socket contradict each other; give one');
  // The edu-plus flags are the edu-plus device's options (cli/devices.ts validates both forms).
  const eduOptions = new Map<string, string | true>();
  for (const key of ['bar1-size', 'dma-mask', 'dma-delay-ms', 'reset', 'hugepages'] as const) if (flags[key] !== undefined) eduOptions.set(key, flags[key] as string | true);
  const edu = DEVICE_KINDS['edu-plus']!.build(eduOptions, (key) => `--${key}`);
  const socketPath = flags['socket-path'] ?? defaultSocketPath();
  const tracePath = flags['no-trace'] ? null : (flags['trace-socket'] ?? `${socketPath}.trace`);
  const log = createLogger({ level });
  let server: VfioUserServer;
  try {
    server = VfioUserServer.listen({
      socketPath,
      device: edu.factory,
      log,
      spinMicros: spin,
    });
  } catch (err) {
    // The device could not be built as asked (e.g. not enough huge pages): say so plainly.
    if (err instanceof Error && !('errno' in err)) throw new UsageError(err.message);
    throw err;
  }
  log.info(edu.description);
  let traceServer: TraceServer | null = null;
  if (tracePath) {
    try {
      traceServer = await startTraceServer({ socketPath: tracePath, server, log: log.child('trace') });
    } catch (err) {
      server.close();
      throw err;
    }
  }

  console.log(`edu-plus is serving on ${socketPath}`);
  console.log('Attach it to QEMU >= 10.1 with:');
  console.log(`  ${attachLine(socketPath)}`);
  console.log('A complete example (add your kernel, initrd and disks):');
  console.log(`  ${exampleQemuCommand(socketPath)}`);
  if (tracePath) console.log(`Watch the device (events, registers) with: tsx cli/main.ts trace ${tracePath}`);
  console.log('Stop with Ctrl-C.');

  await untilStopSignal(log);
  await traceServer?.close();
  server.close();
  await closeOffload();
  return 0;
}
