/**
 * `edu-plus serve`: one edu-plus device on a Unix socket until SIGINT/SIGTERM.
 */
import { createEduPlus, DEFAULT_BAR1_SIZE } from '../device/edu-plus.ts';
import { createLogger, type LogLevel } from '../protocol/log.ts';
import { VfioUserServer } from '../protocol/server.ts';
import { type TraceServer, startTraceServer } from '../trace/trace-server.ts';
import { attachOption, exampleQemuCommand } from './attach.ts';
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
  -h, --help           show this help.

Attach from QEMU >= 10.1 (guest RAM must be shared memory so the device can reach it directly):
  -object memory-backend-memfd,id=mem,size=1G,share=on -machine q35,memory-backend=mem
  ${attachOption(defaultSocketPath())}

The server runs until SIGINT or SIGTERM, then closes the client and removes its socket.
QEMU does not reconnect: if the server stops, restart the VM too.`;

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
  const socketPath = flags['socket-path'] ?? defaultSocketPath();
  const tracePath = flags['no-trace'] ? null : (flags['trace-socket'] ?? `${socketPath}.trace`);
  const log = createLogger({ level });
  const server = VfioUserServer.listen({ socketPath, device: createEduPlus({ bar1Size: DEFAULT_BAR1_SIZE }), log, spinMicros: spin });
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
  console.log(`  ${attachOption(socketPath)}`);
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
  return 0;
}
