/**
 * The `scale` suite: N edu-plus devices (1, 8, 32) served by ONE process, the real
 * `serve --device edu-plus …` (trace channels on, serve's default --wait-us), with real vfio-user
 * clients: one per device, each connected and negotiated (VERSION, then reads).
 *
 * - Memory: VmRSS and its parts after every device has a connected, negotiated, quiet client;
 *   the cost of one more device is (RSS at N − RSS at 1) ÷ (N − 1), RssShmem left out. BAR1
 *   (64 MiB each) is a sparse memfd nobody touched: RssShmem ≈ 0 shows it is not counted. The
 *   N = 1 server's whole RSS is what a device costs in a process-per-device design.
 * - One busy device among idle ones: the C client (bench/c-echo.c, blocking, one REGION_READ at
 *   a time) drives device 0 while devices 1…N−1 keep their quiet clients. The three servers
 *   stand side by side and the busy client visits them in turn, round after round, so a change
 *   in the machine's load hits N = 1 and N = 32 alike; p99 ÷ the lone device's is the goal.
 * - All busy: a C client per device, all at once; aggregate round trips per second and the
 *   server's CPU time (from /proc) over the wall time, against the CPUs the machine has.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildCEcho, startServer, stopServer } from './processes.ts';
import { cpuSecondsOf } from './proc-cpu.ts';
import { DeviceServer, type Memory, memoryOf, runCClient } from './scale-server.ts';
import { medianOf, summarize } from './stats.ts';
import type { Headline, Suite, SuiteContext, SuiteResult } from './suite.ts';

const root = join(import.meta.dirname, '..');
const COUNTS = [1, 8, 32] as const;
/** The busy client's share of `iterations` is split into this many visits per server. */
const ROUNDS = 10;
const MIN_PER_CLIENT = 1000;
const MEMORY_GOAL_MIB = 5;
const P99_GOAL = 1.2;

/** What one repeat measured for one N. */
interface Repeat {
  readonly startSeconds: number;
  /** Before any client connected, and with every device's client connected. */
  readonly listening: Memory;
  readonly memory: Memory;
  /** Server CPU while every client was connected and quiet, ms per second. */
  readonly idleCpuMsPerS: number;
  readonly oneBusy: { readonly samplesNs: Float64Array[]; readonly cpuSeconds: number; readonly roundTrips: number };
  readonly allBusy: { readonly roundTripsPerSecond: number; readonly serverCpuShare: number; readonly serverCpuUsPerRoundTrip: number; readonly wallSeconds: number };
  readonly loads: number[];
}

const load1 = () => Number(loadavg()[0]!.toFixed(2));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const range = (from: number, to: number) => Array.from({ length: Math.max(0, to - from) }, (_, i) => from + i);

/**
 * V8 shrinks a fresh process's heap once it has been quiet for a while (its memory reducer:
 * 8–15 s after start-up here, by 5–10 MiB): memory read before that depends on when the
 * process started, not on how many devices it serves. So the first reading waits until each
 * server's RSS has fallen SHRINK_KIB below its peak, or SETTLE_MAX_MS has passed.
 */
const SHRINK_KIB = 2048;
const SETTLE_MAX_MS = 25_000;

async function untilHeapsShrank(servers: readonly DeviceServer[]): Promise<void> {
  const peak = servers.map((s) => memoryOf(s.pid).vmRssKiB);
  const shrank = servers.map(() => false);
  const t0 = performance.now();
  while (shrank.includes(false) && performance.now() - t0 < SETTLE_MAX_MS) {
    await sleep(250);
    servers.forEach((s, i) => {
      const rss = memoryOf(s.pid).vmRssKiB;
      if (rss < peak[i]! - SHRINK_KIB) shrank[i] = true;
      peak[i] = Math.max(peak[i]!, rss);
    });
  }
  await sleep(500);
}

/** After the clients connected: long enough for a second shrink, if one comes. */
const SETTLE_CONNECTED_MS = 5_000;

/**
 * Memory before any client connected and once every device has a quiet, negotiated client,
 * and the CPU the servers burn meanwhile (all servers at once: the settling waits overlap).
 */
async function measureIdle(servers: readonly DeviceServer[]): Promise<Pick<Repeat, 'listening' | 'memory' | 'idleCpuMsPerS'>[]> {
  await untilHeapsShrank(servers);
  const listening = servers.map((s) => memoryOf(s.pid));
  for (const s of servers) await s.connectIdle(range(0, s.devices));
  await sleep(SETTLE_CONNECTED_MS - 1000);
  // The median of IDLE_WINDOWS one-second windows: V8's memory reducer runs one mark-compact
  // (~30 ms here) some seconds after start, once, and in a single window it read as steady burn.
  const perWindow: number[][] = servers.map(() => []);
  for (let w = 0; w < IDLE_WINDOWS; w++) {
    const cpu0 = servers.map((s) => cpuSecondsOf(s.pid));
    const t0 = performance.now();
    await sleep(1000);
    const seconds = (performance.now() - t0) / 1000;
    servers.forEach((s, i) => perWindow[i]!.push(((cpuSecondsOf(s.pid) - cpu0[i]!) * 1000) / seconds));
  }
  return servers.map((s, i) => ({ listening: listening[i]!, memory: memoryOf(s.pid), idleCpuMsPerS: medianOf(perWindow[i]!) }));
}

/** One-second windows the idle CPU is measured over (their median is reported). */
const IDLE_WINDOWS = 3;

/**
 * Every device busy at once, one C client each; `total` timed round trips spread over them, at
 * least MIN_PER_CLIENT each so that starting the clients stays a small part of the wall time.
 */
async function measureAllBusy(s: DeviceServer, cEcho: string, dir: string, total: number, warmup: number): Promise<Repeat['allBusy']> {
  await s.disconnectIdle(range(0, s.devices));
  const each = Math.max(MIN_PER_CLIENT, Math.ceil(total / s.devices));
  const warm = Math.ceil(warmup / s.devices);
  const cpu0 = cpuSecondsOf(s.pid);
  const t0 = performance.now();
  await Promise.all(s.sockets.map((sock, i) => runCClient(cEcho, sock, warm, each, join(dir, `all-${s.devices}-${i}.bin`))));
  const wallSeconds = (performance.now() - t0) / 1000;
  // Every round trip, warm-up included, over the wall time from the first spawn to the last exit.
  const roundTrips = (each + warm) * s.devices;
  const cpu = cpuSecondsOf(s.pid) - cpu0;
  return { roundTripsPerSecond: roundTrips / wallSeconds, serverCpuShare: cpu / wallSeconds, serverCpuUsPerRoundTrip: (cpu * 1e6) / roundTrips, wallSeconds };
}

async function measureRepeat(ctx: SuiteContext, dir: string, cEcho: string, repeat: number): Promise<Map<number, Repeat>> {
  const servers: DeviceServer[] = [];
  try {
    for (const n of COUNTS) {
      servers.push(await DeviceServer.start(dir, n, `r${repeat}-n${n}`));
      ctx.progress(`scale [repeat ${repeat}] ${n} device(s) serving after ${servers.at(-1)!.startSeconds.toFixed(1)} s (load ${load1()})`);
    }
    const idle = await measureIdle(servers);
    // Device 0 is the busy one: its quiet client makes way for the C client.
    for (const s of servers) await s.disconnectIdle([0]);
    const perRound = Math.max(100, Math.ceil(ctx.iterations / ROUNDS));
    const warm = Math.ceil(ctx.warmup / ROUNDS);
    const busy = servers.map(() => ({ samplesNs: [] as Float64Array[], cpuSeconds: 0, roundTrips: 0, loads: [] as number[] }));
    for (let round = 0; round < ROUNDS; round++) {
      // Rotate the order so no N always goes first (or right after another's burst).
      for (let k = 0; k < servers.length; k++) {
        const i = (k + round) % servers.length;
        const s = servers[i]!;
        const cpu0 = cpuSecondsOf(s.pid);
        busy[i]!.samplesNs.push(await runCClient(cEcho, s.sockets[0]!, warm, perRound, join(dir, `busy-${s.devices}.bin`)));
        busy[i]!.cpuSeconds += cpuSecondsOf(s.pid) - cpu0;
        busy[i]!.roundTrips += perRound + warm;
        busy[i]!.loads.push(load1());
      }
    }
    const out = new Map<number, Repeat>();
    for (const [i, s] of servers.entries()) {
      const allBusy = await measureAllBusy(s, cEcho, dir, ctx.iterations, ctx.warmup);
      const { loads, ...oneBusy } = busy[i]!;
      out.set(s.devices, { startSeconds: s.startSeconds, ...idle[i]!, oneBusy, allBusy, loads: [...loads, load1()] });
      const p = summarize(concat(oneBusy.samplesNs));
      ctx.progress(
        `scale [repeat ${repeat}] ${String(s.devices).padStart(2)} devices: RSS ${f1(mib(idle[i]!.memory.vmRssKiB))} MiB, one busy p99 ${us(p.p99Us)} µs, ` +
          `all busy ${Math.round(allBusy.roundTripsPerSecond).toLocaleString('en-US')} round trips/s (load ${load1()})`,
      );
    }
    return out;
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
  }
}

/** RSS of a bare node process (no tsx, no server): the runtime's own floor per process. */
async function bareNodeRss(): Promise<Memory> {
  const server = await startServer([process.execPath, '-e', "process.stdout.write('ready\\n'); setInterval(() => {}, 1e9)"], root);
  try {
    await sleep(200);
    return memoryOf(server.child.pid!);
  } finally {
    await stopServer(server);
  }
}

function concat(parts: readonly Float64Array[]): Float64Array {
  const out = new Float64Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const mib = (kib: number) => kib / 1024;
const f1 = (v: number) => v.toFixed(1);
const us = (v: number) => (v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0));
const met = (ok: boolean) => (ok ? 'met' : 'MISSED');

/** One row of the table: the repeats of one N summarized (samples pooled, the rest as medians). */
function summarizeRows(byN: Map<number, Repeat[]>) {
  const lone = byN.get(1)!;
  return COUNTS.map((n) => {
    const rs = byN.get(n)!;
    const busy = summarize(concat(rs.flatMap((r) => r.oneBusy.samplesNs)));
    // Each round's p99 ÷ the lone device's in the same round (visited moments apart): robust to load that comes and goes.
    const roundRatios = rs.flatMap((r, k) => r.oneBusy.samplesNs.map((samples, round) => summarize(samples).p99Us / summarize(lone[k]!.oneBusy.samplesNs[round]!).p99Us));
    // Per repeat, against the lone server of the same repeat: both were measured side by side.
    const addedKiB = n === 1 ? 0 : medianOf(rs.map((r, k) => (r.memory.vmRssKiB - r.memory.rssShmemKiB - (lone[k]!.memory.vmRssKiB - lone[k]!.memory.rssShmemKiB)) / (n - 1)));
    return {
      devices: n,
      startSeconds: medianOf(rs.map((r) => r.startSeconds)),
      rssMiB: mib(medianOf(rs.map((r) => r.memory.vmRssKiB))),
      rssSpreadMiB: mib(Math.max(...rs.map((r) => r.memory.vmRssKiB)) - Math.min(...rs.map((r) => r.memory.vmRssKiB))),
      anonMiB: mib(medianOf(rs.map((r) => r.memory.rssAnonKiB))),
      fileMiB: mib(medianOf(rs.map((r) => r.memory.rssFileKiB))),
      shmemMiB: mib(medianOf(rs.map((r) => r.memory.rssShmemKiB))),
      privateMiB: mib(medianOf(rs.map((r) => r.memory.privateKiB))),
      perAddedDeviceKiB: addedKiB,
      // Same process before and after: free of the process-to-process spread.
      perConnectionKiB: medianOf(rs.map((r) => (r.memory.vmRssKiB - r.listening.vmRssKiB) / n)),
      idleCpuMsPerS: medianOf(rs.map((r) => r.idleCpuMsPerS)),
      oneBusyMedianUs: busy.medianUs,
      oneBusyP99Us: busy.p99Us,
      oneBusyP99RoundRatioMedian: medianOf(roundRatios),
      oneBusyP99PerRepeatUs: rs.map((r) => summarize(concat(r.oneBusy.samplesNs)).p99Us),
      oneBusyCpuUsPerRoundTrip: medianOf(rs.map((r) => (r.oneBusy.cpuSeconds * 1e6) / r.oneBusy.roundTrips)),
      allBusyRoundTripsPerSecond: medianOf(rs.map((r) => r.allBusy.roundTripsPerSecond)),
      allBusyServerCpuShare: medianOf(rs.map((r) => r.allBusy.serverCpuShare)),
      allBusyServerCpuUsPerRoundTrip: medianOf(rs.map((r) => r.allBusy.serverCpuUsPerRoundTrip)),
      load: medianOf(rs.flatMap((r) => r.loads)),
      repeats: rs.map((r) => ({ ...r, oneBusy: { cpuSeconds: r.oneBusy.cpuSeconds, roundTrips: r.oneBusy.roundTrips, p99Us: summarize(concat(r.oneBusy.samplesNs)).p99Us } })),
    };
  });
}

function formatTable(rows: ReturnType<typeof summarizeRows>): string[] {
  const lone = rows[0]!;
  const header = [
    'devices', 'start s', 'RSS MiB', 'anon', 'file', 'shmem', 'private', 'KiB/added device', 'KiB/client', 'idle CPU ms/s',
    'busy one: median µs', 'p99 µs', 'p99 ÷ lone', 'CPU µs/rt', 'all busy: rt/s', '÷ N=1', 'server CPU', 'CPU µs/rt', 'load',
  ];
  const lines = rows.map((r) => [
    String(r.devices),
    r.startSeconds.toFixed(1),
    f1(r.rssMiB),
    f1(r.anonMiB),
    f1(r.fileMiB),
    f1(r.shmemMiB),
    f1(r.privateMiB),
    r.devices === 1 ? '-' : Math.round(r.perAddedDeviceKiB).toString(),
    Math.round(r.perConnectionKiB).toString(),
    f1(r.idleCpuMsPerS),
    us(r.oneBusyMedianUs),
    us(r.oneBusyP99Us),
    `${(r.oneBusyP99Us / lone.oneBusyP99Us).toFixed(2)}×`,
    f1(r.oneBusyCpuUsPerRoundTrip),
    Math.round(r.allBusyRoundTripsPerSecond).toLocaleString('en-US'),
    `${(r.allBusyRoundTripsPerSecond / lone.allBusyRoundTripsPerSecond).toFixed(2)}×`,
    `${Math.round(r.allBusyServerCpuShare * 100)} %`,
    f1(r.allBusyServerCpuUsPerRoundTrip),
    r.load.toFixed(2),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const fmt = (c: string[]) => c.map((v, i) => v.padStart(widths[i]!)).join('  ');
  return [fmt(header), fmt(widths.map((w) => '-'.repeat(w))), ...lines.map(fmt)];
}

async function run(ctx: SuiteContext): Promise<SuiteResult> {
  const loadBefore = load1();
  const dir = mkdtempSync(join(tmpdir(), 'edu-plus-bench-scale-'));
  try {
    const { binary: cEcho, compiler } = buildCEcho(join(root, 'bench/c-echo.c'), dir);
    const bare = await bareNodeRss();
    const byN = new Map<number, Repeat[]>(COUNTS.map((n) => [n, []]));
    for (let repeat = 1; repeat <= ctx.repeats; repeat++) {
      for (const [n, r] of await measureRepeat(ctx, dir, cEcho, repeat)) byN.get(n)!.push(r);
    }
    const rows = summarizeRows(byN);
    const [lone, , last] = [rows[0]!, rows[1]!, rows[rows.length - 1]!];
    const perDeviceMiB = mib(last.perAddedDeviceKiB);
    const p99Ratio = last.oneBusyP99Us / lone.oneBusyP99Us;
    const vcpus = cpus().length;
    const loadAfter = load1();
    const table = [
      `scale: N edu-plus devices in ONE server process (serve --device edu-plus … ×N, trace channels on, serve's default --wait-us), unpinned`,
      `Every device has a client that connected and negotiated (VERSION + 10 reads). Busy one: the C client (${compiler}) on device 0 while the others stay connected and quiet, ` +
        `${ROUNDS} rounds visiting the servers in turn, ${ctx.iterations.toLocaleString('en-US')} timed round trips per N per repeat (pooled). All busy: a C client per device at once, ` +
        `${ctx.iterations.toLocaleString('en-US')} round trips in total. ${ctx.repeats} repeat(s), fresh servers each.`,
      `${vcpus} vCPU ${cpus()[0]?.model ?? ''}; Linux ${release()}; node ${process.version}; load average ${loadBefore} before, ${loadAfter} after (the load column: during that N's runs)`,
      '',
      ...formatTable(rows),
      '',
      `Memory per added device: ${Math.round(last.perAddedDeviceKiB)} KiB beyond BAR memory ((RSS − RssShmem at ${last.devices}) − (the same at 1)) ÷ ${last.devices - 1}; goal ≤ ${MEMORY_GOAL_MIB} MiB: ${met(perDeviceMiB <= MEMORY_GOAL_MIB)}. ` +
        `It compares two processes, and processes doing the same work differ (V8's heap, which pages of the node binary they touched): the N = 1 server's RSS spanned ${f1(lone.rssSpreadMiB)} MiB over the repeats, ${Math.round((lone.rssSpreadMiB * 1024) / (last.devices - 1))} KiB in this figure. ` +
        `KiB/client is measured within one process, before and after the clients connected: ${Math.round(last.perConnectionKiB)} KiB per connected client at ${last.devices}.`,
      `RssShmem ${f1(last.shmemMiB)} MiB with ${last.devices} × 64 MiB BAR1 memfds: nobody touched them, so they are not resident and RSS does not count them.`,
      `Process per device instead: every device would cost the whole N = 1 server, ${f1(lone.rssMiB)} MiB RSS (${f1(lone.privateMiB)} MiB private); a bare node process alone holds ${f1(mib(bare.vmRssKiB))} MiB.`,
      `One busy device among ${last.devices - 1} idle: p99 ${us(last.oneBusyP99Us)} µs ÷ lone ${us(lone.oneBusyP99Us)} µs = ${p99Ratio.toFixed(2)}×; goal ≤ ${P99_GOAL}: ${met(p99Ratio <= P99_GOAL)} (per repeat: ${last.oneBusyP99PerRepeatUs.map(us).join(', ')} µs vs ${lone.oneBusyP99PerRepeatUs.map(us).join(', ')} µs; ` +
        `median over rounds of the round's ratio ${last.oneBusyP99RoundRatioMedian.toFixed(2)}×).`,
      `All ${last.devices} busy: ${Math.round(last.allBusyRoundTripsPerSecond).toLocaleString('en-US')} round trips/s, ${(last.allBusyRoundTripsPerSecond / lone.allBusyRoundTripsPerSecond).toFixed(2)}× one device's; ` +
        `the server used ${Math.round(last.allBusyServerCpuShare * 100)} % of a CPU on ${vcpus} vCPUs that the C clients and the machine's other load share. ` +
        `One event loop uses at most one CPU: at ${f1(last.allBusyServerCpuUsPerRoundTrip)} µs of server CPU per round trip, a CPU of its own would carry ${Math.round(1e6 / last.allBusyServerCpuUsPerRoundTrip).toLocaleString('en-US')} round trips/s ` +
        `(${Math.round(1e6 / lone.allBusyServerCpuUsPerRoundTrip).toLocaleString('en-US')} for one device, whose client waits for each reply).`,
    ];
    const headline: Headline[] = [
      { label: `RSS per added device, one process (${last.devices} vs 1)`, value: perDeviceMiB, unit: 'MiB', goal: MEMORY_GOAL_MIB, goalKind: 'max' },
      { label: `busy device p99, ${last.devices - 1} idle beside it ÷ lone`, value: p99Ratio, unit: 'ratio', goal: P99_GOAL, goalKind: 'max' },
      { label: `busy device p99, ${rows[1]!.devices - 1} idle beside it ÷ lone`, value: rows[1]!.oneBusyP99Us / lone.oneBusyP99Us, unit: 'ratio', goalKind: 'max' },
      { label: `all ${last.devices} busy: round trips/s ÷ one device's`, value: last.allBusyRoundTripsPerSecond / lone.allBusyRoundTripsPerSecond, unit: 'ratio', goalKind: 'min' },
    ];
    return {
      table: table.join('\n'),
      headline,
      json: {
        suite: 'scale',
        date: new Date().toISOString(),
        design: 'one serve process with N edu-plus devices (cli/serve-devices.ts), C clients (bench/c-echo.c) for the busy devices, quiet VfioUserClients for the idle ones',
        options: { iterations: ctx.iterations, warmup: ctx.warmup, repeats: ctx.repeats, rounds: ROUNDS },
        machine: { cpu: cpus()[0]?.model ?? null, vcpus, kernel: release(), node: process.version, compiler },
        loadAverage: { before: loadBefore, after: loadAfter },
        goals: { memoryPerDeviceMiB: MEMORY_GOAL_MIB, p99Ratio: P99_GOAL },
        bareNodeRssMiB: { vmRss: mib(bare.vmRssKiB), anon: mib(bare.rssAnonKiB), file: mib(bare.rssFileKiB), private: mib(bare.privateKiB) },
        rows,
      },
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export const scaleSuite: Suite = {
  name: 'scale',
  summary: 'N devices (1, 8, 32) in one serve process: RSS per added device, one busy device p99 among idle ones, all busy round trips/s',
  defaults: { iterations: 30_000, warmup: 2_000, repeats: 3 },
  run,
};
