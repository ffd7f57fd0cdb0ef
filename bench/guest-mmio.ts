/**
 * The `guest-mmio` suite: guest-observed latency of 32-bit BAR0 accesses to three devices in
 * ONE TCG guest, measured by the same program (guest-tests/bench_mmio.c) in interleaved rounds:
 * QEMU's in-process `-device edu`, the C vfio-user peer (bench/c-peer.c) and edu-plus served
 * by `edu-plus serve` with its default options. Besides latency it reports each server's CPU
 * per trapped access and while idle, and the tail of the first accesses after boot, each held
 * against issue 12's goals relative to the C peer. See bench/guest-run.ts for the boots and
 * bench/README.md for how to read the tables.
 */
import { loadavg } from 'node:os';
import { type BootResult, FIRST_ACCESSES, GUEST_MAX_ITERATIONS, IDLE_SECONDS, MMIO_DEVICES, type PhaseCpu, guestBench } from './guest-run.ts';
import { medianOf } from './stats.ts';
import type { Headline, Suite, SuiteContext, SuiteResult } from './suite.ts';

const OPS = ['read-id', 'read-live', 'write-live'] as const;
const OP_LABEL: Record<string, string> = {
  'read-id': 'read 0x00',
  'read-live': 'read 0x04',
  'write-live': 'write 0x04',
};

/** Issue 12's goals, each relative to the C peer measured in the same run. */
export const GOALS = {
  medianVsC: 1.0,
  p99VsC: 1.5,
  cpuPerAccessVsC: 1.5,
  /** "≈ 0": at most 1 ms of CPU per second idle (0.1 % of one CPU). */
  idleCpuFraction: 0.001,
  firstP99VsC: 1.5,
} as const;

const us = (ns: number) => {
  if (!Number.isFinite(ns)) return 'n/a';
  const v = ns / 1000;
  return v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0);
};
const times = (v: number) => (Number.isFinite(v) ? `${v.toFixed(2)}×` : '—');
/** C ÷ in-process edu is in the hundreds: whole numbers are precise enough. */
const wholeTimes = (v: number) => (Number.isFinite(v) ? `${v.toFixed(0)}×` : '—');
const verdict = (v: number, goal: number) => (!Number.isFinite(v) ? 'n/a' : v <= goal ? 'met' : 'MISSED');
const judged = (v: number, goal: number) => `${times(v)} ${verdict(v, goal)}`;

/** Median across boots of one figure of one device and op (NaN when no boot has it). */
function acrossBoots(boots: readonly BootResult[], device: string, op: string, key: 'medianNs' | 'p99Ns' | 'maxNs'): number {
  const values = boots.flatMap((b) => b.mmio.filter((l) => l.device === device && l.op === op).map((l) => l[key]));
  return values.length ? medianOf(values) : NaN;
}

export interface LatencyRow {
  readonly op: string;
  /** device → { median, p99 } in ns, medians across boots. */
  readonly ns: Record<string, { median: number; p99: number }>;
  readonly plusOverC: { median: number; p99: number };
  readonly cOverEdu: { median: number; p99: number };
}

function latencyRows(boots: readonly BootResult[]): LatencyRow[] {
  return OPS.map((op) => {
    const ns: LatencyRow['ns'] = {};
    for (const d of MMIO_DEVICES) ns[d.name] = { median: acrossBoots(boots, d.name, op, 'medianNs'), p99: acrossBoots(boots, d.name, op, 'p99Ns') };
    const ratio = (a: string, b: string) => ({ median: ns[a]!.median / ns[b]!.median, p99: ns[a]!.p99 / ns[b]!.p99 });
    return { op, ns, plusOverC: ratio('edu-plus', 'c-peer'), cOverEdu: ratio('c-peer', 'edu') };
  });
}

/** A server's CPU over the given phases of every boot: total ns ÷ total accesses (or ÷ wall time). */
function cpuOver(boots: readonly BootResult[], device: string, phases: readonly string[]) {
  const parts: PhaseCpu[] = boots.flatMap((b) => b.cpu.filter((c) => c.device === device && phases.includes(c.phase)));
  const ns = parts.reduce((s, c) => s + c.totalNs, 0);
  const accesses = parts.reduce((s, c) => s + c.accesses, 0);
  const wallMs = parts.reduce((s, c) => s + c.wallMs, 0);
  const groups = new Map<string, { threads: number; ns: number }>();
  for (const c of parts) {
    for (const g of c.byName) {
      const sum = groups.get(g.name) ?? { threads: 0, ns: 0 };
      sum.threads = Math.max(sum.threads, g.threads);
      sum.ns += g.ns;
      groups.set(g.name, sum);
    }
  }
  return {
    ns,
    accesses,
    wallMs,
    perAccessNs: parts.length && accesses ? ns / accesses : NaN,
    /** CPU seconds per wall second. */
    fraction: parts.length && wallMs ? ns / 1e6 / wallMs : NaN,
    source: parts[0]?.source ?? 'n/a',
    groups: [...groups].map(([name, g]) => ({ name, threads: g.threads, ns: g.ns })).sort((a, b) => b.ns - a.ns),
  };
}

function pad(cells: string[], widths: number[]): string {
  return cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
}

async function run(ctx: SuiteContext): Promise<SuiteResult> {
  const result = await guestBench(ctx);
  const boots = result.boots;
  const lat = latencyRows(boots);
  const t: string[] = [];
  const loads = boots.map((b) => b.load[0]!.toFixed(1));
  t.push(`guest-mmio: 32-bit BAR0 access latency seen by a TCG guest — QEMU's in-process edu, the C vfio-user peer, edu-plus (serve defaults)`);
  t.push(
    `three devices in one VM, ${result.iterations} timed accesses per device and op` +
      `${result.iterations === GUEST_MAX_ITERATIONS ? ` (capped at ${GUEST_MAX_ITERATIONS} in the guest)` : ''}` +
      ` after ${result.warmup} warm-up, devices taking turns every 64 accesses; ${boots.length} boot(s) with fresh servers, ` +
      `each figure the median across boots; load average at each boot ${loads.join(', ')}, now ${loadavg()[0]!.toFixed(1)}`,
  );
  t.push(`each access timed on its own with clock_gettime(CLOCK_MONOTONIC) (no batching); the clock's cost is included, not subtracted`);
  t.push('');
  const w1 = [11, 8, 8, 8, 8, 8, 8, 18, 18, 7, 7];
  t.push(pad(['access', 'edu med', 'edu p99', 'C med', 'C p99', 'plus med', 'plus p99', 'plus÷C med ≤1.0', 'plus÷C p99 ≤1.5', 'C÷edu', 'C÷edu'], w1));
  t.push(pad(['', 'µs', 'µs', 'µs', 'µs', 'µs', 'µs', '', '', 'med', 'p99'], w1));
  for (const r of lat) {
    const n = r.ns;
    t.push(
      pad(
        [
          OP_LABEL[r.op]!,
          us(n.edu!.median), us(n.edu!.p99), us(n['c-peer']!.median), us(n['c-peer']!.p99), us(n['edu-plus']!.median), us(n['edu-plus']!.p99),
          judged(r.plusOverC.median, GOALS.medianVsC), judged(r.plusOverC.p99, GOALS.p99VsC),
          wholeTimes(r.cOverEdu.median), wholeTimes(r.cOverEdu.p99),
        ],
        w1,
      ),
    );
  }

  // Server CPU per trapped access, per op and over all three ops.
  t.push('');
  const cpuSource = cpuOver(boots, 'c-peer', OPS).source;
  t.push(`server CPU per trapped access (all threads of the server process, /proc ${cpuSource === 'schedstat' ? 'task/*/schedstat, ns resolution; utime+stime from task/*/stat in the JSON' : 'task/*/stat utime+stime, 10 ms resolution'}), over the bracketed guest loop incl. warm-up:`);
  const w2 = [11, 10, 12, 18];
  t.push(pad(['access', 'C µs', 'edu-plus µs', 'plus÷C ≤1.5'], w2));
  const cpuRows = [...OPS.map((op) => [op]), [...OPS]].map((phases) => {
    const c = cpuOver(boots, 'c-peer', phases);
    const p = cpuOver(boots, 'edu-plus', phases);
    return { phases, c, p, ratio: p.perAccessNs / c.perAccessNs };
  });
  for (const r of cpuRows) {
    t.push(pad([r.phases.length === 1 ? OP_LABEL[r.phases[0]!]! : 'all three', us(r.c.perAccessNs), us(r.p.perAccessNs), judged(r.ratio, GOALS.cpuPerAccessVsC)], w2));
  }
  const allOps = cpuRows[cpuRows.length - 1]!;
  for (const [name, c] of [['C peer', allOps.c], ['edu-plus', allOps.p]] as const) {
    const groups = c.groups.filter((g) => g.ns > 0).map((g) => `${g.name}${g.threads > 1 ? ` ×${g.threads}` : ''} ${us(g.ns / c.accesses)}`);
    t.push(`  ${name} by thread (µs per access): ${groups.join(', ') || 'n/a'}`);
  }

  // Idle.
  t.push('');
  const idle = { c: cpuOver(boots, 'c-peer', ['idle']), p: cpuOver(boots, 'edu-plus', ['idle']) };
  const ms = (f: number) => (Number.isFinite(f) ? (f * 1000).toFixed(2) : 'n/a');
  t.push(
    `idle (every device open and mapped, guest asleep ${IDLE_SECONDS} s per boot): C peer ${ms(idle.c.fraction)} ms CPU/s, ` +
      `edu-plus ${ms(idle.p.fraction)} ms CPU/s — goal ≈ 0 (≤ ${GOALS.idleCpuFraction * 1000} ms/s): ${verdict(idle.p.fraction, GOALS.idleCpuFraction)}`,
  );

  // The warm-up tail: the first accesses after boot, no warm-up.
  const first = (device: string) => ({
    median: acrossBoots(boots, device, 'first-read-id', 'medianNs'),
    p99: acrossBoots(boots, device, 'first-read-id', 'p99Ns'),
    max: Math.max(...boots.flatMap((b) => b.mmio.filter((l) => l.device === device && l.op === 'first-read-id').map((l) => l.maxNs))),
  });
  const firsts = Object.fromEntries(MMIO_DEVICES.map((d) => [d.name, first(d.name)]));
  const firstRatio = firsts['edu-plus']!.p99 / firsts['c-peer']!.p99;
  t.push('');
  t.push(`the first ${FIRST_ACCESSES} reads of 0x00 per device after boot (no warm-up; p99 the median across boots, max the largest of any boot):`);
  t.push(`  ${MMIO_DEVICES.map((d) => `${d.name} median ${us(firsts[d.name]!.median)} / p99 ${us(firsts[d.name]!.p99)} / max ${us(firsts[d.name]!.max)} µs`).join('; ')}`);
  t.push(`  edu-plus p99 ÷ C p99 = ${judged(firstRatio, GOALS.firstP99VsC)} (goal ≤ ${GOALS.firstP99VsC})`);

  t.push('');
  const clock = boots[0]?.mmio.find((l) => l.op === 'clock');
  if (clock) t.push(`clock_gettime pair alone: median ${us(clock.medianNs)} µs, p99 ${us(clock.p99Ns)} µs (inside every figure above)`);
  t.push(`wall time of the guest boots: ${(result.wallMs / 1000).toFixed(0)} s (shared with guest-bar1 when both run); C peer built with ${result.compiler}`);
  for (const boot of boots) {
    t.push(`boot ${boot.index}: /init at ${((boot.initMs ?? NaN) / 1000).toFixed(1)} s, done at ${((boot.doneMs ?? NaN) / 1000).toFixed(1)} s`);
    for (const e of boot.errors) t.push(`  PROBLEM: ${e}`);
  }

  const headline: Headline[] = [];
  const add = (label: string, value: number, goal?: number) => {
    if (Number.isFinite(value)) headline.push({ label, value, unit: 'ratio', goal, goalKind: 'max' });
  };
  for (const r of lat) {
    add(`${OP_LABEL[r.op]} edu-plus ÷ C, median`, r.plusOverC.median, GOALS.medianVsC);
    add(`${OP_LABEL[r.op]} edu-plus ÷ C, p99`, r.plusOverC.p99, GOALS.p99VsC);
  }
  add('CPU per access edu-plus ÷ C', allOps.ratio, GOALS.cpuPerAccessVsC);
  add('idle CPU edu-plus (CPU s per s)', idle.p.fraction, GOALS.idleCpuFraction);
  add(`first ${FIRST_ACCESSES} p99 edu-plus ÷ C`, firstRatio, GOALS.firstP99VsC);
  add('read 0x00 C ÷ QEMU edu, median (report)', lat[0]!.cOverEdu.median);
  return {
    table: t.join('\n'),
    headline,
    json: {
      suite: 'guest-mmio',
      accel: result.accel,
      iterations: result.iterations,
      warmup: result.warmup,
      firstAccesses: FIRST_ACCESSES,
      idleSeconds: IDLE_SECONDS,
      timing: 'per-access clock_gettime(CLOCK_MONOTONIC), clock cost included',
      roundSize: 64,
      goals: GOALS,
      devices: MMIO_DEVICES,
      compiler: result.compiler,
      wallMs: result.wallMs,
      loadavg: loadavg(),
      latency: lat,
      cpu: { perAccess: cpuRows.map((r) => ({ phases: r.phases, cPeer: r.c, eduPlus: r.p, ratio: r.ratio })), idle },
      first: { ...firsts, ratioP99: firstRatio },
      boots: boots.map((b) => ({ index: b.index, load: b.load, mmio: b.mmio, cpu: b.cpu, errors: b.errors, initMs: b.initMs, doneMs: b.doneMs, durationMs: b.durationMs, exitCode: b.exitCode, timedOut: b.timedOut })),
    },
  };
}

export const guestMmioSuite: Suite = {
  name: 'guest-mmio',
  summary: 'TCG guest BAR0 read/write latency, server CPU per access and idle, first-access tail: edu-plus ÷ a C vfio-user peer, C ÷ QEMU edu, one VM',
  defaults: { iterations: 5000, warmup: 200, repeats: 3 },
  run,
};
