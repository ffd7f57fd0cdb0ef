/**
 * The `host` suite: the round trip of a 4-byte REGION_READ (BAR0 offset 0) from a client to a
 * server on this host, TS against C, with identical CPU pinning.
 *
 * Every client and every server is its own process started under `taskset -c CPU`, so the TS
 * and C rows differ only in the code on each end. The 2×2 of clients {C, TS} × servers
 * {C echo, TS} tells the TS client's cost apart from the TS server's; the C ↔ C row is the
 * floor (what blocking C pays for the same 32-byte request and 36-byte reply).
 */
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Pinning, buildCEcho, detectPinning, pinned, runClient, startServer, stopServer } from './processes.ts';
import { DEFAULT_WAIT_MICROS } from '../protocol/request-wait.ts';
import { type Summary, medianOf, summarize } from './stats.ts';
import type { Headline, Suite, SuiteContext, SuiteResult } from './suite.ts';

const root = join(import.meta.dirname, '..');
/** The serve command's default --wait-us: the headline rows use it. */
const DEFAULT_WAIT_US = DEFAULT_WAIT_MICROS;

type Side = 'C' | 'TS';
interface Pairing {
  readonly client: Side;
  readonly server: Side;
  /** The TS server's wait for the next request (--wait-us); null for the C server. */
  readonly waitUs: number | null;
}

/** Where client and server run: null CPUs when taskset is missing (unpinned). */
interface Placement {
  readonly name: string;
  readonly clientCpu: number | null;
  readonly serverCpu: number | null;
}

const PAIRINGS: readonly Pairing[] = [
  { client: 'C', server: 'C', waitUs: null },
  { client: 'TS', server: 'TS', waitUs: DEFAULT_WAIT_US },
  // No wait: back to epoll after every reply (what the server did before it could wait).
  { client: 'TS', server: 'TS', waitUs: 0 },
  { client: 'TS', server: 'C', waitUs: null },
  { client: 'C', server: 'TS', waitUs: DEFAULT_WAIT_US },
  { client: 'C', server: 'TS', waitUs: 0 },
];

interface Row {
  readonly placement: Placement;
  readonly pairing: Pairing;
  readonly runs: Summary[];
}

function placements(p: Pinning): { list: Placement[]; note: string } {
  if (!p.taskset) {
    return { list: [{ name: 'unpinned', clientCpu: null, serverCpu: null }], note: 'taskset not found (util-linux): every process runs UNPINNED; on this kind of VM cross-vCPU wakeups make round trips bimodal' };
  }
  const [a, b] = p.cpus as [number, number | undefined];
  const same = { name: 'same-cpu', clientCpu: a, serverCpu: a };
  if (b === undefined) return { list: [same], note: `only CPU ${a} is available: split-cpu skipped` };
  return { list: [same, { name: 'split-cpu', clientCpu: a, serverCpu: b }], note: `same-cpu: client and server on CPU ${a}; split-cpu: client on CPU ${a}, server on CPU ${b}` };
}

function label(p: Pairing): string {
  const server = p.server === 'C' ? 'C echo' : `TS wait ${p.waitUs} µs`;
  return `${p.client} client → ${server}`;
}

function readSamples(path: string, count: number): Float64Array {
  const bytes = readFileSync(path);
  if (bytes.byteLength !== count * 8) throw new Error(`${path} holds ${bytes.byteLength} bytes, expected ${count} samples`);
  return new Float64Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

async function measure(ctx: SuiteContext, dir: string, cEcho: string, placement: Placement, pairing: Pairing, run: number): Promise<Summary> {
  const socket = join(dir, `run${run}.sock`);
  const out = join(dir, `run${run}.f64`);
  const tsx = [process.execPath, '--import', 'tsx'];
  const serverArgv = pairing.server === 'C' ? [cEcho, 'server', socket] : [...tsx, join(root, 'bench/serve-child.ts'), socket, String(pairing.waitUs)];
  const clientArgs = [socket, String(ctx.warmup), String(ctx.iterations), out, ...(pairing.server === 'TS' ? ['--version'] : [])];
  const clientArgv = pairing.client === 'C' ? [cEcho, 'client', ...clientArgs] : [...tsx, join(root, 'bench/ts-client.ts'), ...clientArgs];

  const server = await startServer(pinned(placement.serverCpu, serverArgv), root);
  try {
    // A minute plus 1 ms per round trip: far beyond a healthy run (≈ 10–150 µs per round trip).
    await runClient(pinned(placement.clientCpu, clientArgv), root, 60_000 + (ctx.iterations + ctx.warmup));
  } catch (err) {
    throw new Error(`${(err as Error).message}\nserver stderr:\n${server.stderr()}`);
  } finally {
    await stopServer(server);
  }
  return summarize(readSamples(out, ctx.iterations));
}

/** Requests in flight in the pipelining rows. */
const DEPTHS = [1, 8, 32] as const;

interface PipeRow {
  readonly placement: Placement;
  readonly depth: number;
  /** Messages per second, one per repeat. */
  readonly c: number[];
  readonly ts: number[];
}

/** One pipelined run: msgs/s of C client → C echo, or TS client → TS server at the default wait. */
async function measurePipeline(ctx: SuiteContext, dir: string, cEcho: string, placement: Placement, side: Side, depth: number, run: number): Promise<number> {
  const socket = join(dir, `pipe${run}.sock`);
  const out = join(dir, `pipe${run}.f64`);
  const tsx = [process.execPath, '--import', 'tsx'];
  const serverArgv = side === 'C' ? [cEcho, 'server', socket] : [...tsx, join(root, 'bench/serve-child.ts'), socket, String(DEFAULT_WAIT_US)];
  const args = [socket, String(depth), String(ctx.warmup), String(ctx.iterations), out, ...(side === 'TS' ? ['--version'] : [])];
  const clientArgv = side === 'C' ? [cEcho, 'pipeline', ...args] : [...tsx, join(root, 'bench/ts-pipeline-client.ts'), ...args];
  const server = await startServer(pinned(placement.serverCpu, serverArgv), root);
  try {
    await runClient(pinned(placement.clientCpu, clientArgv), root, 60_000 + (ctx.iterations + ctx.warmup));
  } catch (err) {
    throw new Error(`${(err as Error).message}\nserver stderr:\n${server.stderr()}`);
  } finally {
    await stopServer(server);
  }
  const [totalNs] = readSamples(out, 1);
  return ctx.iterations / (totalNs! / 1e9);
}

function pipelineTable(rows: PipeRow[]): { lines: string[]; json: unknown[] } {
  const header = ['placement', 'in flight', 'C → C echo msgs/s', `TS → TS wait ${DEFAULT_WAIT_US} µs msgs/s`, 'TS ÷ C', 'TS msgs/s per repeat'];
  const cells = rows.map((r) => {
    const c = medianOf(r.c);
    const t = medianOf(r.ts);
    return [r.placement.name, String(r.depth), Math.round(c).toLocaleString('en-US'), Math.round(t).toLocaleString('en-US'), times(t / c), r.ts.map((v) => Math.round(v).toLocaleString('en-US')).join(' / ')];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((l) => l[i]!.length)));
  const fmt = (c: string[]) => c.map((v, i) => (i >= 1 && i <= 4 ? v.padStart(widths[i]!) : v.padEnd(widths[i]!))).join('  ').trimEnd();
  return {
    lines: [fmt(header), fmt(widths.map((w) => '-'.repeat(w))), ...cells.map(fmt)],
    json: rows.map((r) => ({ placement: r.placement.name, depth: r.depth, cMsgsPerSecond: r.c, tsMsgsPerSecond: r.ts, ratio: medianOf(r.ts) / medianOf(r.c) })),
  };
}

const us = (v: number) => (v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0));
const times = (v: number) => `${v.toFixed(2)}×`;
const signed = (v: number) => (v < 0 ? `−${us(-v)}` : `+${us(v)}`);

interface Aggregate {
  readonly medianUs: number;
  readonly p99Us: number;
  readonly roundTripsPerSecond: number;
}
function aggregate(row: Row): Aggregate {
  return {
    medianUs: medianOf(row.runs.map((r) => r.medianUs)),
    p99Us: medianOf(row.runs.map((r) => r.p99Us)),
    roundTripsPerSecond: medianOf(row.runs.map((r) => r.roundTripsPerSecond)),
  };
}

function isFloor(p: Pairing): boolean {
  return p.client === 'C' && p.server === 'C';
}

/** The 1-minute load average: anything else running on these CPUs shows up in every row. */
const load = () => Number(loadavg()[0]!.toFixed(2));

function report(ctx: SuiteContext, rows: Row[], pipes: PipeRow[], list: Placement[], note: string, compiler: string, loadBefore: number): SuiteResult {
  const floorOf = new Map(rows.filter((r) => isFloor(r.pairing)).map((r) => [r.placement.name, aggregate(r)]));
  const header = ['placement', 'client → server', 'median µs', 'p99 µs', 'round trips/s', 'median ÷ C', 'p99 ÷ C', 'medians per repeat (µs)'];
  const lines: string[][] = [];
  const jsonRows = rows.map((row) => {
    const agg = aggregate(row);
    const floor = floorOf.get(row.placement.name)!;
    const ratioMedian = agg.medianUs / floor.medianUs;
    const ratioP99 = agg.p99Us / floor.p99Us;
    lines.push([
      row.placement.name,
      label(row.pairing),
      us(agg.medianUs),
      us(agg.p99Us),
      Math.round(agg.roundTripsPerSecond).toLocaleString('en-US'),
      times(ratioMedian),
      times(ratioP99),
      row.runs.map((r) => us(r.medianUs)).join(' / '),
    ]);
    return { placement: row.placement, ...row.pairing, runs: row.runs, ...agg, ratioMedian, ratioP99 };
  });
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const right = new Set([2, 3, 4, 5, 6]);
  const fmt = (cells: string[]) => cells.map((c, i) => (right.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();

  const out = [
    `host: round trip of a 4-byte REGION_READ (BAR0 offset 0) over a Unix socket, TS vs C`,
    `${ctx.iterations.toLocaleString('en-US')} measured round trips per run after ${ctx.warmup.toLocaleString('en-US')} warm-up, ${ctx.repeats} repeat(s) interleaved; figures are medians across repeats`,
    `${note}; C: ${compiler}; node ${process.version}; ${cpus()[0]?.model ?? 'unknown CPU'}; Linux ${release()}`,
    `load average (1 min) ${loadBefore} before, ${load()} after (the benchmark itself adds ~1): other work on these CPUs inflates every row`,
    '',
    fmt(header),
    fmt(widths.map((w) => '-'.repeat(w))),
  ];
  let lastPlacement = '';
  for (const l of lines) {
    if (lastPlacement && l[0] !== lastPlacement) out.push('');
    lastPlacement = l[0]!;
    out.push(fmt(l));
  }

  // The headline (TS client ↔ TS server at the default wait) and the split of its overhead.
  const headline: Record<string, unknown> = {};
  out.push('');
  for (const p of list) {
    const get = (client: Side, server: Side, waitUs: number | null) =>
      jsonRows.find((r) => r.placement.name === p.name && r.client === client && r.server === server && r.waitUs === waitUs)!;
    const floor = get('C', 'C', null);
    const both = get('TS', 'TS', DEFAULT_WAIT_US);
    const clientOnly = get('TS', 'C', null);
    const serverOnly = get('C', 'TS', DEFAULT_WAIT_US);
    const clientExtra = clientOnly.medianUs - floor.medianUs;
    const serverExtra = serverOnly.medianUs - floor.medianUs;
    headline[p.name] = { ratioMedian: both.ratioMedian, ratioP99: both.ratioP99, clientExtraUs: clientExtra, serverExtraUs: serverExtra, totalExtraUs: both.medianUs - floor.medianUs };
    out.push(
      `${p.name}: TS ÷ C = ${times(both.ratioMedian)} median, ${times(both.ratioP99)} p99 (wait ${DEFAULT_WAIT_US} µs). ` +
        `Over the C floor of ${us(floor.medianUs)} µs: TS client ${signed(clientExtra)} µs, TS server ${signed(serverExtra)} µs, both ${signed(both.medianUs - floor.medianUs)} µs.`,
    );
  }
  const pipe = pipelineTable(pipes);
  out.push(
    '',
    `Pipelining: messages per second with K REGION_READs in flight (K sent back to back, then one more per reply), ${ctx.iterations.toLocaleString('en-US')} per run;`,
    `the TS client uses its asynchronous path (regionRead promises), the C client blocking send/recv. TS ÷ C > 1 is better here.`,
    '',
    ...pipe.lines,
  );
  const headlineFigures: Headline[] = list.map((p) => ({
    label: `${p.name}: REGION_READ TS ÷ C (median)`,
    value: (headline[p.name] as { ratioMedian: number }).ratioMedian,
    unit: 'ratio' as const,
    goal: 1.3,
    goalKind: 'max' as const,
  }));
  const deepest = pipes.filter((r) => r.depth === DEPTHS[DEPTHS.length - 1]);
  for (const r of deepest) {
    headlineFigures.push({ label: `${r.placement.name}: msgs/s at ${r.depth} in flight, TS ÷ C`, value: medianOf(r.ts) / medianOf(r.c), unit: 'ratio', goalKind: 'min' });
  }
  return {
    headline: headlineFigures,
    table: out.join('\n'),
    json: {
      suite: 'host',
      what: '4-byte REGION_READ round trip (BAR0 offset 0, region 0): 32-byte request, 36-byte reply',
      date: new Date().toISOString(),
      options: { iterations: ctx.iterations, warmup: ctx.warmup, repeats: ctx.repeats, defaultSpinUs: DEFAULT_WAIT_US },
      machine: { cpu: cpus()[0]?.model ?? null, vcpus: cpus().length, kernel: release(), node: process.version, compiler },
      loadAverage: { before: loadBefore, after: load() },
      pinning: note,
      rows: jsonRows,
      pipelining: pipe.json,
      headline,
    },
  };
}

async function run(ctx: SuiteContext): Promise<SuiteResult> {
  const loadBefore = load();
  const { list, note } = placements(detectPinning());
  const dir = mkdtempSync(join(tmpdir(), 'edu-plus-bench-'));
  try {
    const { binary, compiler } = buildCEcho(join(root, 'bench/c-echo.c'), dir);
    ctx.progress(`host: built the C floor (${compiler}); ${note}`);
    const rows: Row[] = list.flatMap((placement) =>
      PAIRINGS.map((pairing) => ({ placement, pairing, runs: [] })),
    );
    let n = 0;
    for (let repeat = 1; repeat <= ctx.repeats; repeat++) {
      for (const row of rows) {
        n++;
        const s = await measure(ctx, dir, binary, row.placement, row.pairing, n);
        row.runs.push(s);
        ctx.progress(`host [${n}/${rows.length * ctx.repeats}] ${row.placement.name.padEnd(9)} ${label(row.pairing).padEnd(28)} median ${us(s.medianUs)} µs, p99 ${us(s.p99Us)} µs`);
      }
    }
    const pipes: PipeRow[] = list.flatMap((placement) => DEPTHS.map((depth) => ({ placement, depth, c: [], ts: [] })));
    let m = 0;
    for (let repeat = 1; repeat <= ctx.repeats; repeat++) {
      for (const row of pipes) {
        for (const side of ['C', 'TS'] as const) {
          m++;
          const rate = await measurePipeline(ctx, dir, binary, row.placement, side, row.depth, m);
          (side === 'C' ? row.c : row.ts).push(rate);
          ctx.progress(`host pipelining [${m}/${pipes.length * 2 * ctx.repeats}] ${row.placement.name.padEnd(9)} ${String(row.depth).padStart(2)} in flight ${side.padEnd(2)} ${Math.round(rate).toLocaleString('en-US')} msgs/s`);
        }
      }
    }
    return report(ctx, rows, pipes, list, note, compiler, loadBefore);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export const hostSuite: Suite = {
  name: 'host',
  summary: '4-byte REGION_READ round trip and pipelined msgs/s, TS client/server vs a C floor, same-cpu and split-cpu',
  defaults: { iterations: 100_000, warmup: 5_000, repeats: 3 },
  run,
};
