/**
 * `edu-plus serve`: one edu-plus device on a Unix socket until SIGINT/SIGTERM.
 */
import { DEFAULT_DMA_MASK } from '../device/edu-dma.ts';
import { createEduPlus, DEFAULT_BAR1_SIZE, validateBar1Size, validateDmaMask } from '../device/edu-plus.ts';
import { DEFAULT_MAX_DMA_MAPS } from '../protocol/dma.ts';
import { createLogger, type LogLevel } from '../protocol/log.ts';
import { closeOffload } from '../protocol/offload.ts';
import { VfioUserServer } from '../protocol/server.ts';
import { DEFAULT_SERVER_LIMITS } from '../protocol/version.ts';
import { type TraceServer, startTraceServer } from '../trace/trace-server.ts';
import { attachLine } from '../qemu-configs/qemu-command.ts';
import { exampleQemuCommand } from './attach.ts';
import { UsageError, parseFlags } from './flags.ts';

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
  --max-dma-maps N     most DMA mappings held at once (default ${DEFAULT_MAX_DMA_MAPS}: a 4 GiB guest
                       mapped page by page through a vIOMMU; ~200 bytes of state each). VERSION
                       advertises at most 65535, the most QEMU accepts; QEMU does not count
                       against it, so a larger guest still maps all its RAM.
  -h, --help           show this help.

Attach from QEMU >= 10.1 (guest RAM must be shared memory so the device can reach it directly):
  -object memory-backend-memfd,id=mem,size=1G,share=on -machine q35,memory-backend=mem
  ${attachLine(defaultSocketPath())}

The server runs until SIGINT or SIGTERM, then closes the client and removes its socket.
QEMU does not reconnect: if the server stops, restart the VM too.`;

/** "64M", "1G", "16GiB", "4096" → bytes. */
export function parseSize(text: string, flag: string): bigint {
  const m = /^(\d+)\s*([kmgt]?)(i?b)?$/i.exec(text.trim());
  if (!m) throw new UsageError(`${flag} takes a size like 64M, 1G or 16G (got "${text}")`);
  const shift = { '': 0n, k: 10n, m: 20n, g: 30n, t: 40n }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  return BigInt(m[1]!) << shift;
}

function parseInteger(text: string, flag: string): bigint {
  if (!/^(0x[0-9a-f]+|\d+)$/i.test(text.trim())) throw new UsageError(`${flag} takes a number, decimal or 0x-hex (got "${text}")`);
  return BigInt(text.trim());
}

export function defaultSocketPath(): string {
  const dir = process.env.XDG_RUNTIME_DIR || '/tmp';
  return `${dir}/edu-plus.sock`;
}

export async function serve(argv: string[]): Promise<number> {
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
    'max-dma-maps': 'string',
    help: 'boolean',
  });
  if (flags.help) {
    console.log(SERVE_HELP);
    return 0;
  }
  const level = (flags['log-level'] ?? 'info') as LogLevel;
  if (!['debug', 'info', 'warn', 'error'].includes(level)) {
    throw new UsageError(`--log-level must be debug, info, warn or error (got "${level}")`);
  }
  const spin = Number(flags['spin-us'] ?? '20');
  if (!Number.isFinite(spin) || spin < 0 || spin > 10_000) {
    throw new UsageError(`--spin-us must be a number of microseconds from 0 to 10000 (got "${flags['spin-us']}")`);
  }
  if (flags['no-trace'] && flags['trace-socket']) throw new UsageError('--no-trace and --trace-socket contradict each other; give one');
  const bar1Size = flags['bar1-size'] === undefined ? DEFAULT_BAR1_SIZE : parseSize(flags['bar1-size'], '--bar1-size');
  try {
    validateBar1Size(bar1Size);
  } catch (err) {
    throw new UsageError(`--bar1-size ${flags['bar1-size']}: ${(err as Error).message}`);
  }
  const dmaMask = flags['dma-mask'] === undefined ? DEFAULT_DMA_MASK : parseInteger(flags['dma-mask'], '--dma-mask');
  try {
    validateDmaMask(dmaMask);
  } catch (err) {
    throw new UsageError(`--dma-mask: ${(err as Error).message}`);
  }
  const dmaDelayMs = Number(flags['dma-delay-ms'] ?? '0');
  if (!Number.isInteger(dmaDelayMs) || dmaDelayMs < 0 || dmaDelayMs > 60_000) {
    throw new UsageError(`--dma-delay-ms must be a whole number of milliseconds from 0 to 60000 (got "${flags['dma-delay-ms']}")`);
  }
  const maxDmaMaps = Number(flags['max-dma-maps'] ?? DEFAULT_MAX_DMA_MAPS);
  if (!Number.isInteger(maxDmaMaps) || maxDmaMaps < 1 || maxDmaMaps > 1 << 26) {
    throw new UsageError(`--max-dma-maps must be a whole number from 1 to ${1 << 26} (got "${flags['max-dma-maps']}")`);
  }
  const socketPath = flags['socket-path'] ?? defaultSocketPath();
  const tracePath = flags['no-trace'] ? null : (flags['trace-socket'] ?? `${socketPath}.trace`);
  const log = createLogger({ level });
  let server: VfioUserServer;
  try {
    server = VfioUserServer.listen({
      socketPath,
      device: createEduPlus({ bar1Size, dmaMask, dmaDelayMs, hugePages: flags.hugepages === true }),
      log,
      spinMicros: spin,
      limits: { ...DEFAULT_SERVER_LIMITS, maxDmaMaps },
    });
  } catch (err) {
    // The device could not be built as asked (e.g. not enough huge pages): say so plainly.
    if (err instanceof Error && !('errno' in err)) throw new UsageError(err.message);
    throw err;
  }
  log.info(`BAR1 ${bar1Size >> 20n} MiB${flags.hugepages ? ' on 2 MiB huge pages' : ''}, dma_mask 0x${dmaMask.toString(16)}`);
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

  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info(`${signal} received, shutting down`);
      resolve();
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
  await traceServer?.close();
  server.close();
  await closeOffload();
  return 0;
}
