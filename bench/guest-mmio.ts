/**
 * The `guest-mmio` suite: guest-observed latency of 32-bit BAR0 accesses, QEMU's in-process
 * `-device edu` against edu-plus over vfio-user, both attached to ONE guest (TCG) and measured
 * by the same program (guest-tests/bench_mmio.c) in interleaved rounds. A second boot repeats
 * it with the server's busy-poll window at 0 µs. See bench/guest-run.ts for the boots.
 */
import { loadavg } from 'node:os';
import { type BootResult, DEFAULT_SPIN_US, GUEST_MAX_ITERATIONS, type MmioLine, guestBench } from './guest-run.ts';
import type { Suite, SuiteContext, SuiteResult } from './suite.ts';

const OPS = ['read-id', 'read-live', 'write-live'] as const;
const OP_LABEL: Record<string, string> = {
  'read-id': 'read 0x00 (identification)',
  'read-live': 'read 0x04 (liveness)',
  'write-live': 'write 0x04 (liveness)',
};

const us = (ns: number) => {
  const v = ns / 1000;
  return v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0);
};
const times = (v: number) => (Number.isFinite(v) ? `${v.toFixed(1)}×` : '—');

function find(boot: BootResult, device: string, op: string): MmioLine | undefined {
  return boot.mmio.find((l) => l.device === device && l.op === op);
}

export interface MmioRow {
  readonly spinMicros: number;
  readonly op: string;
  readonly edu?: MmioLine;
  readonly eduPlus?: MmioLine;
  readonly ratioMedian: number;
  readonly ratioP99: number;
}

function rows(boots: readonly BootResult[]): MmioRow[] {
  const out: MmioRow[] = [];
  for (const boot of boots) {
    for (const op of OPS) {
      const edu = find(boot, 'edu', op);
      const eduPlus = find(boot, 'edu-plus', op);
      out.push({
        spinMicros: boot.spinMicros,
        op,
        edu,
        eduPlus,
        ratioMedian: edu && eduPlus ? eduPlus.medianNs / edu.medianNs : NaN,
        ratioP99: edu && eduPlus ? eduPlus.p99Ns / edu.p99Ns : NaN,
      });
    }
  }
  return out;
}

function pad(cells: string[], widths: number[]): string {
  return cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
}

async function run(ctx: SuiteContext): Promise<SuiteResult> {
  const result = await guestBench(ctx);
  const table: string[] = [];
  const all = rows(result.boots);
  table.push(`guest-mmio: 32-bit BAR0 access latency seen by a TCG guest, edu-plus (vfio-user) ÷ QEMU's in-process edu`);
  table.push(
    `both devices in one VM, ${result.iterations} timed accesses per device and op` +
      `${result.iterations === GUEST_MAX_ITERATIONS ? ` (capped at ${GUEST_MAX_ITERATIONS} in the guest)` : ''}` +
      ` after ${result.warmup} warm-up, devices alternating every 64 accesses; load ${loadavg()[0]!.toFixed(2)}`,
  );
  table.push(`each access timed on its own with clock_gettime(CLOCK_MONOTONIC) (no batching); the clock's cost is included, not subtracted`);
  table.push('');
  const widths = [36, 9, 9, 10, 10, 9, 9];
  table.push(pad(['op (server spin)', 'edu med', 'edu p99', 'plus med', 'plus p99', '÷ med', '÷ p99'], widths));
  table.push(pad(['', 'µs', 'µs', 'µs', 'µs', '', ''], widths));
  for (const r of all) {
    const cell = (l: MmioLine | undefined, k: 'medianNs' | 'p99Ns') => (l ? us(l[k]) : 'n/a');
    table.push(
      pad([`${OP_LABEL[r.op]} (${r.spinMicros} µs)`, cell(r.edu, 'medianNs'), cell(r.edu, 'p99Ns'), cell(r.eduPlus, 'medianNs'), cell(r.eduPlus, 'p99Ns'), times(r.ratioMedian), times(r.ratioP99)], widths),
    );
  }
  const clock = result.boots[0]?.mmio.find((l) => l.op === 'clock');
  table.push('');
  if (clock) table.push(`clock_gettime pair alone: median ${us(clock.medianNs)} µs, p99 ${us(clock.p99Ns)} µs (inside every figure above)`);
  const head = all.find((r) => r.spinMicros === DEFAULT_SPIN_US && r.op === 'read-id');
  if (head && Number.isFinite(head.ratioMedian)) {
    table.push(
      `headline: a BAR0 read of edu-plus takes ${times(head.ratioMedian)} as long as QEMU's in-process edu in the same guest ` +
        `(${us(head.eduPlus!.medianNs)} vs ${us(head.edu!.medianNs)} µs median; spin ${DEFAULT_SPIN_US} µs): ` +
        `every access is a vfio-user round trip to this process`,
    );
  }
  for (const boot of result.boots) {
    table.push(`boot at spin ${boot.spinMicros} µs: /init at ${((boot.initMs ?? NaN) / 1000).toFixed(1)} s, done at ${((boot.doneMs ?? NaN) / 1000).toFixed(1)} s`);
    for (const e of boot.errors) table.push(`  PROBLEM: ${e}`);
  }
  const headline = head && Number.isFinite(head.ratioMedian)
    ? [{ label: 'guest BAR0 read ÷ QEMU edu (median)', value: head.ratioMedian, unit: 'ratio' as const, goalKind: 'max' as const }]
    : [];
  return {
    table: table.join('\n'),
    headline,
    json: {
      suite: 'guest-mmio',
      accel: result.accel,
      iterations: result.iterations,
      warmup: result.warmup,
      timing: 'per-access clock_gettime(CLOCK_MONOTONIC), clock cost included',
      roundSize: 64,
      loadavg: loadavg(),
      rows: all,
      boots: result.boots.map((b) => ({ spinMicros: b.spinMicros, mmio: b.mmio, errors: b.errors, initMs: b.initMs, doneMs: b.doneMs, durationMs: b.durationMs, exitCode: b.exitCode, timedOut: b.timedOut })),
    },
  };
}

export const guestMmioSuite: Suite = {
  name: 'guest-mmio',
  summary: 'TCG guest BAR0 read/write latency, edu-plus over vfio-user ÷ QEMU in-process edu, one VM (spin 20 and 0 µs)',
  defaults: { iterations: 5000, warmup: 200, repeats: 3 },
  run,
};
