/**
 * `edu-plus trace SOCKET`: watches a running edu-plus server through its trace socket (by
 * default the vfio-user socket's path plus `.trace`) and prints one line per event until
 * Ctrl-C; `--registers` prints the register dump once instead.
 */
import { TraceClient, TraceRequestError } from '../trace/trace-client.ts';
import { formatEvent, toJson } from '../trace/format.ts';
import { TRACE_EVENT_TYPES, type TraceEventType } from '../trace/wire.ts';
import { UsageError, parseFlags } from './flags.ts';

export const TRACE_HELP = `Usage: tsx cli/main.ts trace SOCKET [--types TYPE,...] [--json]
       tsx cli/main.ts trace SOCKET --registers [--json]

Connects to the trace socket of a running \`edu-plus serve\` (its vfio-user socket path plus
".trace", e.g. /tmp/edu-plus.sock.trace) and prints one line per event until Ctrl-C:

  +    12.345 ms  region-write BAR0+0x60 4 bytes = 0x00000004
  +    12.401 ms  interrupt MSI[0] delivered

Times count from the first event shown. Regions and interrupts are named in vfio-pci
numbering (BAR0…BAR5, ROM, config; INTx, MSI, MSI-X).

  --types LIST   only these event types, comma-separated: ${TRACE_EVENT_TYPES.join(', ')}
  --json         one JSON object per line instead (bigints as decimal strings, bytes as hex)
  --registers    print the device's registers once and exit
  -h, --help     show this help.

Watching costs the server nothing while no one is connected, and a watcher that falls behind
loses events (it is told how many) rather than slowing the device.`;

export async function trace(argv: string[]): Promise<number> {
  const flags = parseFlags(argv, { types: 'string', json: 'boolean', registers: 'boolean', help: 'boolean' });
  if (flags.help) {
    console.log(TRACE_HELP);
    return 0;
  }
  const socket = flags._[0];
  if (!socket || flags._.length > 1) throw new UsageError('trace takes one argument: the path of a trace socket (see trace --help)');
  if (flags.registers && flags.types) throw new UsageError('--registers prints a dump and exits; it takes no --types');
  const types = flags.types === undefined ? undefined : parseTypes(flags.types);

  let client: TraceClient;
  try {
    client = await TraceClient.connect(socket);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const hint = code === 'ENOENT' || code === 'ECONNREFUSED' ? ' (is `edu-plus serve` running? its trace socket is its --socket-path plus ".trace")' : '';
    console.error(`edu-plus: ${(err as Error).message}${hint}`);
    return 1;
  }
  try {
    return flags.registers ? await printRegisters(client, !!flags.json) : await watch(client, socket, types, !!flags.json);
  } catch (err) {
    if (!(err instanceof TraceRequestError)) throw err;
    console.error(`edu-plus: ${err.op}: ${err.message}`);
    return 1;
  } finally {
    client.close();
  }
}

function parseTypes(list: string): TraceEventType[] {
  const types = list.split(',').map((t) => t.trim()).filter(Boolean);
  const known = TRACE_EVENT_TYPES as readonly string[];
  const wrong = types.filter((t) => !known.includes(t));
  if (types.length === 0 || wrong.length > 0) {
    throw new UsageError(`--types: unknown event type ${wrong.map((t) => `"${t}"`).join(', ') || '(none given)'}; types: ${known.join(', ')}`);
  }
  return types as TraceEventType[];
}

async function printRegisters(client: TraceClient, json: boolean): Promise<number> {
  const regs = await client.registers();
  if (json) {
    console.log(toJson(regs));
    return 0;
  }
  const width = Math.max(0, ...Object.keys(regs).map((k) => k.length));
  for (const [name, value] of Object.entries(regs)) {
    const text = typeof value === 'number' || typeof value === 'bigint' ? `0x${value.toString(16)} (${value})` : String(value);
    console.log(`${name.padEnd(width)}  ${text}`);
  }
  return 0;
}

async function watch(client: TraceClient, socket: string, types: TraceEventType[] | undefined, json: boolean): Promise<number> {
  const info = await client.info();
  let start: bigint | null = null;
  client.onEvent((e) => {
    start ??= e.timeNs;
    console.log(json ? toJson(e) : formatEvent(e, start));
  });
  const subscribed = await client.subscribe(types);
  // On stderr, so stdout holds events only (scripts and --json readers wait for this line).
  console.error(`tracing ${info.name} on ${socket}: ${subscribed.types.join(', ')} (Ctrl-C to stop)`);

  const interrupted = new Promise<'signal'>((resolve) => {
    process.once('SIGINT', () => resolve('signal'));
    process.once('SIGTERM', () => resolve('signal'));
  });
  const outcome = await Promise.race([interrupted, client.closed]);
  if (outcome === 'signal') return 0;
  console.error(`edu-plus: trace connection ended: ${outcome}`);
  return outcome === 'server shutting down' ? 0 : 1;
}
