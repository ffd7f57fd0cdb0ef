/**
 * `edu-plus serve`: one edu-plus device on a Unix socket until SIGINT/SIGTERM.
 */
import { DEFAULT_MAX_DMA_MAPS } from '../protocol/dma.ts';
import { createLogger } from '../protocol/log.ts';
import { type ClientLimits, DEFAULT_CLIENT_LIMITS } from '../protocol/client-limits.ts';
import { DEFAULT_SERVER_LIMITS } from '../protocol/version.ts';
import { closeOffload } from '../trace/offload.ts';
import type { TraceServer } from '../trace/trace-server.ts';
import { attachLine } from '../qemu-configs/qemu-command.ts';
import { exampleQemuCommand } from './attach.ts';
import { DEVICE_KINDS, defaultSocketPath, ensureDefaultSocketDir } from './devices.ts';
import { UsageError, parseFlags, parseLogLevel, parseSize, parseWaitMicros, parseWaitWith } from './flags.ts';
import { SERVE_DEVICES_HELP, listenDevice, serveDevices, startTrace, takeDeviceArguments, untilStopSignal } from './serve-devices.ts';

export const SERVE_HELP = `Usage: npm start -- [options]      (or: tsx cli/main.ts serve [options])

Serves one edu-plus PCI device (QEMU's edu, 1234:11e8, plus a 64 MiB prefetchable RAM BAR1)
over vfio-user on a Unix socket, and prints the QEMU option that attaches it.

Options:
  --socket-path PATH   where to listen (default: ${defaultSocketPath()}; without
                       $XDG_RUNTIME_DIR, a directory /tmp/edu-plus-UID that must be ours and 0700).
                       The socket is created mode 0600. A stale socket file left by a dead server
                       is replaced; a live one is an error.
  --log-level LEVEL    debug | info | warn | error (default: info). debug logs every DMA map.
  --wait-us N          after answering a request, wait for the client's next one instead of
                       returning to the event loop (default: 200; 0 never). Burns no CPU and
                       saves system calls per trapped guest access. In recvmsg a wait lasts up
                       to N µs; with io_uring, the waits of one run last 1 ms together. A wait
                       that comes to nothing is not repeated for a while (see README).
  --wait-with HOW      io_uring (default): one io_uring_enter sends each reply and sleeps until
                       the next request; where the kernel lacks it (io_uring disabled, or Linux
                       before 6.1) the log says why and the server waits in recvmsg instead.
                       recvmsg: send each reply, then sleep in recvmsg.
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
  --max-dma-maps N     most DMA mappings held at once (default ${DEFAULT_MAX_DMA_MAPS}: a 4 GiB guest
                       mapped page by page through a vIOMMU; ~190 bytes of heap each). VERSION
                       advertises at most 65535, the most QEMU accepts; QEMU does not count
                       against it, so a larger guest still maps all its RAM.
  -h, --help           show this help.

Limits on what one client can make the server hold (a client that ignores them is slowed
down or closed, never the server):
  --max-queued-bytes SIZE   unread replies per client before its requests wait unread
                            (default ${DEFAULT_CLIENT_LIMITS.maxQueuedBytes >> 20}M)
  --max-queued-replies N    the same, counted in messages (default ${DEFAULT_CLIENT_LIMITS.maxQueuedMessages})
  --max-queued-fds N        descriptors held by unread replies, e.g. BAR1 fds of
                            GET_REGION_INFO replies (default ${DEFAULT_CLIENT_LIMITS.maxQueuedFds})
  --idle-timeout-ms N       a client that sends no VERSION, a refused one that says nothing, and one
                            that half-closed without reading its last replies are closed after N ms
                            (default ${DEFAULT_CLIENT_LIMITS.idleTimeoutMs})
  --max-migration-bytes SIZE  migration data accepted in RESUMING (default ${DEFAULT_CLIENT_LIMITS.maxMigrationBytes >> 20}M)
  --max-refusing N          refused connections kept open at once to answer EBUSY (default ${DEFAULT_CLIENT_LIMITS.maxRefusing})

Attach from QEMU >= 10.1 (guest RAM must be shared memory so the device can reach it directly):
  -object memory-backend-memfd,id=mem,size=1G,share=on -machine q35,memory-backend=mem
  ${attachLine(defaultSocketPath())}

The server runs until SIGINT or SIGTERM, then closes the client and removes its socket.
QEMU does not reconnect: if the server stops, restart the VM too.

Exit status: 0 after a stop signal; 2 for a wrong flag or device option (the message says what
to change); 1 when serving failed (socket in use, a device that throws: the message names the
device and socket; EDU_PLUS_DEBUG=1 adds the stack).

${SERVE_DEVICES_HELP}`;

export { defaultSocketPath };

/** A whole number flag within [min, max]. */
function parseCount(text: string | undefined, flag: string, fallback: number, min: number, max: number, unit = ''): number {
  if (text === undefined) return fallback;
  const n = /^\d+$/.test(text.trim()) ? Number(text.trim()) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new UsageError(`${flag} must be a whole number${unit} from ${min} to ${max} (got "${text}")`);
  return n;
}

function parseByteLimit(text: string | undefined, flag: string, fallback: number): number {
  if (text === undefined) return fallback;
  const n = parseSize(text, flag);
  if (n < 4096n || n > 1n << 32n) throw new UsageError(`${flag} must be from 4K to 4G (got "${text}")`);
  return Number(n);
}

function parseClientLimits(flags: Record<string, string | boolean | string[] | undefined>): ClientLimits {
  const d = DEFAULT_CLIENT_LIMITS;
  const str = (k: string) => flags[k] as string | undefined;
  return {
    maxQueuedBytes: parseByteLimit(str('max-queued-bytes'), '--max-queued-bytes', d.maxQueuedBytes),
    maxQueuedMessages: parseCount(str('max-queued-replies'), '--max-queued-replies', d.maxQueuedMessages, 1, 1 << 20),
    maxQueuedFds: parseCount(str('max-queued-fds'), '--max-queued-fds', d.maxQueuedFds, 1, 4096),
    idleTimeoutMs: parseCount(str('idle-timeout-ms'), '--idle-timeout-ms', d.idleTimeoutMs, 100, 600_000, ' of milliseconds'),
    maxMigrationBytes: parseByteLimit(str('max-migration-bytes'), '--max-migration-bytes', d.maxMigrationBytes),
    maxRefusing: parseCount(str('max-refusing'), '--max-refusing', d.maxRefusing, 0, 1024),
  };
}

export async function serve(argv: string[]): Promise<number> {
  // --device may repeat, which parseFlags does not do: take those out first.
  const devices = takeDeviceArguments(argv);
  const flags = parseFlags(devices.rest, {
    'socket-path': 'string',
    'log-level': 'string',
    'wait-us': 'string',
    'wait-with': 'string',
    'spin-us': 'string',
    'trace-socket': 'string',
    'no-trace': 'boolean',
    'bar1-size': 'string',
    hugepages: 'boolean',
    'dma-mask': 'string',
    'dma-delay-ms': 'string',
    reset: 'string',
    'max-queued-bytes': 'string',
    'max-queued-replies': 'string',
    'max-queued-fds': 'string',
    'idle-timeout-ms': 'string',
    'max-migration-bytes': 'string',
    'max-refusing': 'string',
    'max-dma-maps': 'string',
    help: 'boolean',
  });
  if (flags.help) {
    console.log(SERVE_HELP);
    return 0;
  }
  const level = parseLogLevel(flags['log-level']);
  if (flags['spin-us'] !== undefined) {
    throw new UsageError('--spin-us is gone: the server no longer busy-polls; --wait-us N waits for the next request instead, without spinning (default 200)');
  }
  const waitMicros = parseWaitMicros(flags['wait-us']);
  const waitWith = parseWaitWith(flags['wait-with']);
  if (flags['no-trace'] && flags['trace-socket']) throw new UsageError('--no-trace and --trace-socket contradict each other; give one');
  const clientLimits = parseClientLimits(flags);
  const maxDmaMaps = Number(flags['max-dma-maps'] ?? DEFAULT_MAX_DMA_MAPS);
  if (!Number.isInteger(maxDmaMaps) || maxDmaMaps < 1 || maxDmaMaps > 1 << 26) {
    throw new UsageError(`--max-dma-maps must be a whole number from 1 to ${1 << 26} (got "${flags['max-dma-maps']}")`);
  }
  const limits = { ...DEFAULT_SERVER_LIMITS, maxDmaMaps };
  const log = createLogger({ level });
  // Last line of defence: a rejection nobody handled is a bug to log, not a reason to drop the
  // device and its client (the log rate limit keeps a repeating one from flooding).
  process.on('unhandledRejection', (reason) => log.error(`unhandled rejection (a bug): ${reason instanceof Error ? (reason.stack ?? reason.message) : String(reason)}`));
  if (devices.specs.length) return serveDevices(devices.specs, { flags, log, waitMicros, waitWith, clientLimits, limits });
  // The edu-plus flags are the edu-plus device's options (cli/devices.ts validates both forms).
  const eduOptions = new Map<string, string | true>();
  for (const key of ['bar1-size', 'dma-mask', 'dma-delay-ms', 'reset', 'hugepages'] as const) if (flags[key] !== undefined) eduOptions.set(key, flags[key] as string | true);
  const edu = DEVICE_KINDS['edu-plus']!.build(eduOptions, (key) => `--${key}`);
  const socketPath = flags['socket-path'] ?? defaultSocketPath();
  if (flags['socket-path'] === undefined) ensureDefaultSocketDir();
  const tracePath = flags['no-trace'] ? null : (flags['trace-socket'] ?? `${socketPath}.trace`);
  const server = listenDevice(
    { name: 'edu-plus', socketPath, factory: edu.factory, userModule: false, usagePrefix: '' },
    { log, waitMicros, waitWith, clientLimits, limits },
  );
  log.info(edu.description);
  let traceServer: TraceServer | null = null;
  if (tracePath) {
    try {
      traceServer = await startTrace('edu-plus', tracePath, server, log);
    } catch (err) {
      server.close();
      throw err;
    }
  }

  // Signal handlers before the "serving" line: whoever starts us may stop us as soon as it reads it.
  const stopped = untilStopSignal(log);

  console.log(`edu-plus is serving on ${socketPath}`);
  console.log('Attach it to QEMU >= 10.1 with:');
  console.log(`  ${attachLine(socketPath)}`);
  console.log('A complete example (add your kernel, initrd and disks):');
  console.log(`  ${exampleQemuCommand(socketPath)}`);
  if (tracePath) console.log(`Watch the device (events, registers) with: tsx cli/main.ts trace ${tracePath}`);
  console.log('Stop with Ctrl-C.');

  await stopped;
  await traceServer?.close();
  server.close();
  await closeOffload();
  return 0;
}
