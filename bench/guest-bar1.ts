/**
 * The `guest-bar1` suite: memcpy bandwidth of a TCG guest into and out of edu-plus's 64 MiB
 * BAR1 through the VFIO device mmap (and a DMABUF mmap where the guest kernel has it), against
 * the same copy into and out of ordinary guest RAM, in the same program and boot
 * (guest-tests/bench_bar1.c). The boot is shared with guest-mmio (bench/guest-run.ts).
 */
import { loadavg } from 'node:os';
import { type Bar1Line, guestBench } from './guest-run.ts';
import { medianOf } from './stats.ts';
import type { Suite, SuiteContext, SuiteResult } from './suite.ts';

const TARGETS = [
  { target: 'ram', label: 'guest RAM (anonymous)' },
  { target: 'bar1', label: 'BAR1, VFIO device mmap' },
  { target: 'dmabuf', label: 'BAR1, DMABUF mmap' },
] as const;
const OPS = [
  { op: 'write', label: 'write (RAM → target)' },
  { op: 'read', label: 'read (target → RAM)' },
] as const;

export interface Bar1Row {
  readonly target: string;
  readonly op: string;
  /** Median MiB/s across repeats; null when the target could not be measured. */
  readonly mibPerS: number | null;
  readonly perRepeat: number[];
  /** ÷ the RAM row of the same op (null for RAM itself and unmeasured targets). */
  readonly ratioToRam: number | null;
  readonly unsupported?: string;
}

const mibs = (v: number) => (v < 100 ? v.toFixed(1) : v.toFixed(0));

async function run(ctx: SuiteContext): Promise<SuiteResult> {
  const result = await guestBench(ctx);
  const boot = result.boots.find((b) => b.bar1.length > 0 || b.errors.length > 0) ?? result.boots[0]!;
  const rows: Bar1Row[] = [];
  for (const { op } of OPS) {
    const ram = medianOf(boot.bar1.filter((l) => l.target === 'ram' && l.op === op).map((l) => l.mibPerS));
    for (const { target } of TARGETS) {
      const lines: Bar1Line[] = boot.bar1.filter((l) => l.target === target && l.op === op);
      const perRepeat = lines.map((l) => l.mibPerS);
      const v = perRepeat.length ? medianOf(perRepeat) : null;
      rows.push({
        target,
        op,
        mibPerS: v,
        perRepeat,
        ratioToRam: v !== null && target !== 'ram' && Number.isFinite(ram) ? v / ram : null,
        unsupported: boot.unsupported[target] ?? (v === null ? 'not measured' : undefined),
      });
    }
  }

  const table: string[] = [];
  const bytes = boot.bar1[0]?.bytes ?? 64 << 20;
  table.push(`guest-bar1: memcpy bandwidth of a TCG guest, BAR1 (64 MiB prefetchable RAM BAR of edu-plus) ÷ guest RAM`);
  table.push(
    `one boot, one program: ${bytes / (1 << 20)} MiB per copy, ${result.bar1Repeats} repeats per target and direction, targets taking turns; ` +
      `median MiB/s across repeats (each repeat in brackets); load ${loadavg()[0]!.toFixed(2)}`,
  );
  table.push('');
  table.push(`${'target'.padEnd(24)}  ${'op'.padEnd(22)}  ${'MiB/s'.padStart(7)}  ${'÷ RAM'.padStart(6)}  repeats`);
  for (const r of rows) {
    const label = TARGETS.find((t) => t.target === r.target)!.label;
    const opLabel = OPS.find((o) => o.op === r.op)!.label;
    const value = r.mibPerS === null ? 'n/a' : mibs(r.mibPerS);
    const ratio = r.ratioToRam === null ? (r.target === 'ram' ? '1.00×' : '—') : `${r.ratioToRam.toFixed(2)}×`;
    const reps = r.perRepeat.length ? `[${r.perRepeat.map(mibs).join(', ')}]` : (r.unsupported ?? '');
    table.push(`${label.padEnd(24)}  ${opLabel.padEnd(22)}  ${value.padStart(7)}  ${ratio.padStart(6)}  ${reps}`);
  }
  table.push('');
  const bar1 = rows.filter((r) => r.target === 'bar1' && r.ratioToRam !== null);
  if (bar1.length) {
    table.push(
      `headline: BAR1 ÷ RAM = ${bar1.map((r) => `${r.ratioToRam!.toFixed(2)}× ${r.op}`).join(', ')} (goal ≥ 0.9). ` +
        'BAR1 is a shared memfd mapped into QEMU: guest copies never reach the server. Measured under TCG only.',
    );
  }
  table.push('The first copy into BAR1 also populates the memfd pages and the guest mapping; the median across repeats damps that and other noise.');
  for (const e of boot.errors) table.push(`  PROBLEM: ${e}`);

  return {
    table: table.join('\n'),
    headline: bar1.map((r) => ({ label: `guest BAR1 ${r.op} ÷ RAM`, value: r.ratioToRam!, unit: 'ratio' as const, goal: 0.9, goalKind: 'min' as const })),
    json: {
      suite: 'guest-bar1',
      accel: result.accel,
      repeats: result.bar1Repeats,
      bytesPerCopy: bytes,
      loadavg: loadavg(),
      rows,
      unsupported: boot.unsupported,
      lines: boot.bar1,
      errors: boot.errors,
      boot: { index: boot.index, initMs: boot.initMs, doneMs: boot.doneMs, durationMs: boot.durationMs },
    },
  };
}

export const guestBar1Suite: Suite = {
  name: 'guest-bar1',
  summary: 'TCG guest memcpy MiB/s into/out of BAR1 (VFIO mmap, DMABUF mmap) ÷ guest RAM',
  // The guest run is shared with guest-mmio (one boot serves both).
  defaults: { iterations: 5000, warmup: 200, repeats: 3 },
  run,
};
