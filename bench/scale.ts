/**
 * The `scale` suite: N edu-plus devices (1, 8, 32) served at once, in our design: one server
 * process per device (bench/serve-child.ts, the serve command's default 20 µs spin, unpinned).
 *
 * - Idle RSS per device: VmRSS from /proc/<pid>/status of each server after it started and a
 *   client connected, negotiated and did a few reads. BAR1 (64 MiB) is a sparse memfd nobody
 *   touched, so it is not resident; RssShmem (shared memory resident in the process) is shown
 *   to prove it. A bare `node` process's RSS is measured alongside: most of a device's RSS is
 *   the runtime, not the device.
 * - Round trip under load: one asynchronous client in this process drives all N devices at once,
 *   each with one 4-byte REGION_READ in flight (a closed loop per device); p99 and median of all
 *   round trips, and the p99 at N ÷ the p99 at N = 1 (goal ≤ 2).
 * With more devices than CPUs the servers and the client queue for CPU time: on a 2-vCPU machine
 * N = 32 measures contention, which the table says.
 */
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { VfioUserClient } from '../protocol/client.ts';
import { PciRegion } from '../protocol/wire.ts';
import { type RunningServer, startServer, stopServer } from './processes.ts';
import { medianOf, summarize } from './stats.ts';
import type { Headline, Suite, SuiteContext, SuiteResult } from './suite.ts';

const root = join(import.meta.dirname, '..');
const COUNTS = [1, 8, 32] as const;
/** The serve command's default --spin-us. */
const SPIN_US = 20;

interface Memory {
  readonly vmRssKiB: number;
  readonly rssAnonKiB: number;
  readonly rssFileKiB: number;
  readonly rssShmemKiB: number;
  /** From smaps_rollup: proportional set size, and pages only this process maps (its own cost). */
  readonly pssKiB: number;
  readonly privateKiB: number;
}

/** VmRSS and its parts from /proc/<pid>/status, in KiB. */
function memoryOf(pid: number): Memory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string) => {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
    if (!m) throw new Error(`/proc/${pid}/status has no ${field}`);
    return Number(m[1]);
  };
  const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const roll = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(rollup)?.[1] ?? NaN);
  return {
    vmRssKiB: kib('VmRSS'),
    rssAnonKiB: kib('RssAnon'),
    rssFileKiB: kib('RssFile'),
    rssShmemKiB: kib('RssShmem'),
    pssKiB: roll('Pss'),
    privateKiB: roll('Private_Clean') + roll('Private_Dirty'),
  };
}

interface Run {
  readonly devices: number;
  readonly memory: Memory[];
  readonly medianUs: number;
  readonly p99Us: number;
  readonly roundTripsPerSecond: number;
  readonly startSeconds: number;
}

async function measure(ctx: SuiteContext, dir: string, devices: number, run: number): Promise<Run> {
  const tsx = [process.execPath, '--import', 'tsx', join(root, 'bench/serve-child.ts')];
  const sockets = Array.from({ length: devices }, (_, i) => join(dir, `r${run}-d${i}.sock`));
  const t0 = performance.now();
  const settled = await Promise.allSettled(sockets.map((s) => startServer([...tsx, s, String(SPIN_US)], root, 180_000)));
  const servers = settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const clients: VfioUserClient[] = [];
  try {
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    const startSeconds = (performance.now() - t0) / 1000;
    for (const s of sockets) {
      const c = VfioUserClient.connect(s);
      clients.push(c);
      await c.version();
      for (let i = 0; i < 10; i++) await c.regionRead(PciRegion.BAR0, 0n, 4);
    }
    const memory = servers.map((s: RunningServer) => memoryOf(s.child.pid!));

    const perDevice = Math.max(50, Math.ceil(ctx.iterations / devices));
    const warm = Math.ceil(ctx.warmup / devices);
    const samples = new Float64Array(perDevice * devices);
    const wallStart = performance.now();
    await Promise.all(
      clients.map(async (c, d) => {
        for (let i = -warm; i < perDevice; i++) {
          const a = performance.now();
          const data = await c.regionRead(PciRegion.BAR0, 0n, 4);
          const b = performance.now();
          if (data[0] !== 0xed || data[3] !== 0x01) throw new Error(`device ${d}: REGION_READ returned ${Buffer.from(data).toString('hex')}`);
          if (i >= 0) samples[d * perDevice + i] = (b - a) * 1e6;
        }
      }),
    );
    // Aggregate rate: every round trip (warm-up included) over the wall time of the whole load.
    const wall = (performance.now() - wallStart) / 1000;
    const s = summarize(samples);
    return { devices, memory, medianUs: s.medianUs, p99Us: s.p99Us, roundTripsPerSecond: ((perDevice + warm) * devices) / wall, startSeconds };
  } finally {
    for (const c of clients) c.close();
    await Promise.all(servers.map((s) => stopServer(s)));
  }
}

/** RSS of a bare node process (no tsx, no server): the runtime's own share of each device's RSS. */
async function bareNodeRss(): Promise<Memory> {
  const server = await startServer([process.execPath, '-e', "process.stdout.write('ready\\n'); setInterval(() => {}, 1e9)"], root);
  try {
    await new Promise((r) => setTimeout(r, 200));
    return memoryOf(server.child.pid!);
  } finally {
    await stopServer(server);
  }
}

const mib = (kib: number) => kib / 1024;
const f1 = (v: number) => v.toFixed(1);
const us = (v: number) => (v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0));

async function run(ctx: SuiteContext): Promise<SuiteResult> {
  const loadBefore = Number(loadavg()[0]!.toFixed(2));
  const dir = mkdtempSync(join(tmpdir(), 'edu-plus-bench-scale-'));
  try {
    const bare = await bareNodeRss();
    ctx.progress(`scale: a bare node process holds ${f1(mib(bare.vmRssKiB))} MiB RSS`);
    const runs = new Map<number, Run[]>(COUNTS.map((n) => [n, []]));
    let k = 0;
    for (let repeat = 1; repeat <= ctx.repeats; repeat++) {
      for (const n of COUNTS) {
        k++;
        const r = await measure(ctx, dir, n, k);
        runs.get(n)!.push(r);
        ctx.progress(
          `scale [${k}/${COUNTS.length * ctx.repeats}] ${String(n).padStart(2)} devices: started in ${r.startSeconds.toFixed(1)} s, ` +
            `RSS/device ${f1(mib(medianOf(r.memory.map((m) => m.vmRssKiB))))} MiB, median ${us(r.medianUs)} µs, p99 ${us(r.p99Us)} µs`,
        );
      }
    }
    const rows = COUNTS.map((n) => {
      const rs = runs.get(n)!;
      const all = rs.flatMap((r) => r.memory);
      return {
        devices: n,
        rssPerDeviceMiB: mib(medianOf(all.map((m) => m.vmRssKiB))),
        rssAnonMiB: mib(medianOf(all.map((m) => m.rssAnonKiB))),
        rssFileMiB: mib(medianOf(all.map((m) => m.rssFileKiB))),
        rssShmemMiB: mib(medianOf(all.map((m) => m.rssShmemKiB))),
        pssMiB: mib(medianOf(all.map((m) => m.pssKiB))),
        privateMiB: mib(medianOf(all.map((m) => m.privateKiB))),
        totalRssMiB: mib(medianOf(rs.map((r) => r.memory.reduce((a, m) => a + m.vmRssKiB, 0)))),
        medianUs: medianOf(rs.map((r) => r.medianUs)),
        p99Us: medianOf(rs.map((r) => r.p99Us)),
        roundTripsPerSecond: medianOf(rs.map((r) => r.roundTripsPerSecond)),
        startSeconds: medianOf(rs.map((r) => r.startSeconds)),
        runs: rs,
      };
    });
    const p99One = rows[0]!.p99Us;
    const header = ['devices', 'RSS/device MiB', 'anon', 'file', 'shmem', 'PSS', 'private', 'total RSS MiB', 'median µs', 'p99 µs', 'p99 ÷ N=1', 'round trips/s (all)', 'start s'];
    const lines = rows.map((r) => [
      String(r.devices),
      f1(r.rssPerDeviceMiB),
      f1(r.rssAnonMiB),
      f1(r.rssFileMiB),
      f1(r.rssShmemMiB),
      f1(r.pssMiB),
      f1(r.privateMiB),
      f1(r.totalRssMiB),
      us(r.medianUs),
      us(r.p99Us),
      `${(r.p99Us / p99One).toFixed(2)}×`,
      Math.round(r.roundTripsPerSecond).toLocaleString('en-US'),
      r.startSeconds.toFixed(1),
    ]);
    const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
    const fmt = (c: string[]) => c.map((v, i) => v.padStart(widths[i]!)).join('  ');
    const vcpus = cpus().length;
    const last = rows[rows.length - 1]!;
    const out = [
      `scale: N edu-plus devices at once, one server process per device (serve-child, spin ${SPIN_US} µs, unpinned), one async client process driving all N`,
      `RSS after start + connect + VERSION + 10 reads (median over devices and repeats; anon/file/shmem split VmRSS; PSS and private from smaps_rollup); ${ctx.iterations.toLocaleString('en-US')} round trips per N spread over the devices, one in flight per device; ${ctx.repeats} repeat(s)`,
      `${vcpus} vCPU ${cpus()[0]?.model ?? ''}; Linux ${release()}; node ${process.version}; load average ${loadBefore} before`,
      '',
      fmt(header),
      fmt(widths.map((w) => '-'.repeat(w))),
      ...lines.map(fmt),
      '',
      `A bare node process (no tsx, no server) holds ${f1(mib(bare.vmRssKiB))} MiB (anon ${f1(mib(bare.rssAnonKiB))}): that is the runtime's floor per process in a process-per-device design.`,
      `shmem ${f1(last.rssShmemMiB)} MiB: the 64 MiB BAR1 memfd is untouched and not resident, so RSS excludes it.`,
      `RssFile is mostly the node binary, shared by every device process: the private column (pages no other process maps) is what one more device costs.`,
      `Idle RSS per device ${f1(last.rssPerDeviceMiB)} MiB (private ${f1(last.privateMiB)} MiB) vs the goal ≤ 15 MiB; p99 at ${last.devices} ÷ 1 device = ${(last.p99Us / p99One).toFixed(2)}× vs the goal ≤ 2.`,
      ...(last.devices > vcpus
        ? [`With ${last.devices} devices on ${vcpus} vCPUs the servers and the client share CPUs: the p99 at N = ${last.devices} measures CPU contention (each round trip waits for its turn), not per-device cost.`]
        : []),
    ];
    const headline: Headline[] = [
      { label: 'idle RSS per device (process per device)', value: last.rssPerDeviceMiB, unit: 'MiB', goal: 15, goalKind: 'max' },
      { label: 'idle private memory per device', value: last.privateMiB, unit: 'MiB', goal: 15, goalKind: 'max' },
      ...rows.slice(1).map((r): Headline => ({ label: `p99 at ${r.devices} devices ÷ 1 device`, value: r.p99Us / p99One, unit: 'ratio', ...(r.devices === 32 ? { goal: 2 } : {}), goalKind: 'max' })),
    ];
    return {
      table: out.join('\n'),
      headline,
      json: {
        suite: 'scale',
        date: new Date().toISOString(),
        design: 'one server process per device (bench/serve-child.ts), unpinned',
        options: { iterations: ctx.iterations, warmup: ctx.warmup, repeats: ctx.repeats, spinUs: SPIN_US },
        machine: { cpu: cpus()[0]?.model ?? null, vcpus, kernel: release(), node: process.version },
        loadAverage: { before: loadBefore, after: Number(loadavg()[0]!.toFixed(2)) },
        bareNodeRssMiB: { vmRss: mib(bare.vmRssKiB), anon: mib(bare.rssAnonKiB), file: mib(bare.rssFileKiB), shmem: mib(bare.rssShmemKiB) },
        rows,
      },
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export const scaleSuite: Suite = {
  name: 'scale',
  summary: 'N devices (1, 8, 32) at once, one process each: idle RSS per device, p99 round trip at N ÷ N=1',
  defaults: { iterations: 20_000, warmup: 1_000, repeats: 3 },
  run,
};
