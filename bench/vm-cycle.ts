/**
 * The `vm-cycle` suite: wall time of the end-to-end VM step as `npm test` runs it for
 * guest-tests/edu_plus_basic, split into
 *
 *   provisioning  provisionQemu, provisionKernel, buildGuestTests, buildInitramfs (each timed on
 *                 its own, one after the other; the e2e harness runs the first three together)
 *   boot          QEMU start → the /init sentinel (runVm's initMs)
 *   tests         /init sentinel → done sentinel (doneMs − initMs)
 *   shutdown      done sentinel → QEMU exited (durationMs − doneMs)
 *
 * with the cache as it is (warm), and — only when EDU_PLUS_BENCH_COLD=1 — with EDU_PLUS_CACHE
 * pointed at a fresh temporary directory for the provisioning part (about 160 MB of downloads),
 * then booting what that provisioned. Acceleration is what the e2e tests pick (KVM when usable).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createEduPlus } from '../device/edu-plus.ts';
import { buildGuestTests } from '../guest-tests/build.ts';
import { defaultInit } from '../qemu-configs/guest-init.ts';
import { buildInitramfs } from '../qemu-configs/initramfs.ts';
import { type GuestKernel, provisionKernel } from '../qemu-configs/provision-kernel.ts';
import { type QemuInstall, provisionQemu } from '../qemu-configs/provision-qemu.ts';
import { kvmUsable, qemuArgs } from '../qemu-configs/qemu-command.ts';
import { parseKtap, runVm } from '../qemu-configs/run-vm.ts';
import { silentLogger } from '../protocol/log.ts';
import { VfioUserServer } from '../protocol/server.ts';
import { medianOf } from './stats.ts';
import type { Suite, SuiteContext, SuiteResult } from './suite.ts';

const GUEST_TEST = 'edu_plus_basic';
const BOOT_TIMEOUT_MS = 240_000;
export const COLD_ENV = 'EDU_PLUS_BENCH_COLD';

export interface CycleRun {
  readonly cache: 'warm' | 'cold';
  readonly provisionQemuMs: number;
  readonly provisionKernelMs: number;
  readonly buildGuestTestsMs: number;
  readonly buildInitramfsMs: number;
  readonly provisioningMs: number;
  readonly bootMs: number;
  readonly testsMs: number;
  readonly shutdownMs: number;
  /** Around runVm (spawn to exit, as this process saw it). */
  readonly vmWallMs: number;
  readonly totalMs: number;
  readonly ktap: { plan?: number; ok: number; notOk: number; skip: number };
  readonly problems: string[];
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const v = await fn();
  return [v, performance.now() - t0];
}

interface Provisioned {
  readonly qemu: QemuInstall;
  readonly kernel: GuestKernel;
  readonly initrd: string;
  readonly ms: Pick<CycleRun, 'provisionQemuMs' | 'provisionKernelMs' | 'buildGuestTestsMs' | 'buildInitramfsMs'>;
}

async function provision(initrd: string): Promise<Provisioned> {
  const [qemu, provisionQemuMs] = await timed(() => provisionQemu());
  const [kernel, provisionKernelMs] = await timed(() => provisionKernel());
  const [built, buildGuestTestsMs] = await timed(() => buildGuestTests());
  const bin = built.binaries.find((b) => b.name === GUEST_TEST);
  if (!bin) throw new Error(`guest test ${GUEST_TEST} was not built`);
  const [, buildInitramfsMs] = await timed(() =>
    buildInitramfs({
      kernel,
      modules: ['vfio-pci', 'vfio_iommu_type1'],
      files: [{ src: bin.path, dest: `/tests/${GUEST_TEST}` }],
      init: defaultInit({ commands: [`/tests/${GUEST_TEST}`] }),
      output: initrd,
    }),
  );
  return { qemu, kernel, initrd, ms: { provisionQemuMs, provisionKernelMs, buildGuestTestsMs, buildInitramfsMs } };
}

async function cycle(cache: 'warm' | 'cold', dir: string, index: number): Promise<CycleRun> {
  const t0 = performance.now();
  const p = await provision(join(dir, `${cache}-${index}.cpio.gz`));
  const provisioningMs = performance.now() - t0;
  return boot(cache, p, dir, index, t0, provisioningMs);
}

async function boot(cache: 'warm' | 'cold', p: Provisioned, dir: string, index: number, t0: number, provisioningMs: number): Promise<CycleRun> {
  const server = VfioUserServer.listen({ socketPath: join(dir, `${cache}-${index}.sock`), device: createEduPlus(), log: silentLogger });
  try {
    const [vm, vmWallMs] = await timed(() => runVm({ qemu: p.qemu, args: qemuArgs({ kernel: p.kernel.vmlinuz, initrd: p.initrd, socketPath: server.socketPath }), timeoutMs: BOOT_TIMEOUT_MS }));
    const totalMs = performance.now() - t0;
    const results = parseKtap(vm.lines).results.filter((r) => r.indent === 0);
    const ktap = {
      plan: parseKtap(vm.lines).plan,
      ok: results.filter((r) => r.ok && !r.skip).length,
      notOk: results.filter((r) => !r.ok).length,
      skip: results.filter((r) => r.skip).length,
    };
    const problems: string[] = [];
    if (vm.timedOut) problems.push('QEMU hit the timeout');
    if (vm.initMs === undefined || vm.doneMs === undefined) problems.push('a sentinel is missing from the console');
    if (ktap.notOk || ktap.skip || !ktap.plan || results.length !== ktap.plan) problems.push(`KTAP: plan ${ktap.plan ?? '?'}, ok ${ktap.ok}, not ok ${ktap.notOk}, skip ${ktap.skip}`);
    return {
      cache,
      ...p.ms,
      provisioningMs,
      bootMs: vm.initMs ?? NaN,
      testsMs: (vm.doneMs ?? NaN) - (vm.initMs ?? NaN),
      shutdownMs: vm.durationMs - (vm.doneMs ?? NaN),
      vmWallMs,
      totalMs,
      ktap,
      problems,
    };
  } finally {
    server.close();
  }
}

const COLUMNS: { key: keyof CycleRun; label: string }[] = [
  { key: 'provisionQemuMs', label: '  provisionQemu' },
  { key: 'provisionKernelMs', label: '  provisionKernel' },
  { key: 'buildGuestTestsMs', label: '  buildGuestTests' },
  { key: 'buildInitramfsMs', label: '  buildInitramfs' },
  { key: 'provisioningMs', label: 'provisioning' },
  { key: 'bootMs', label: 'boot (QEMU start → /init)' },
  { key: 'testsMs', label: `tests (${GUEST_TEST})` },
  { key: 'shutdownMs', label: 'shutdown (done → QEMU exit)' },
  { key: 'totalMs', label: 'total' },
];

const secs = (ms: number) => (Number.isFinite(ms) ? (ms / 1000).toFixed(ms < 10_000 ? 2 : 1) : 'n/a');

async function run(ctx: SuiteContext): Promise<SuiteResult> {
  const dir = mkdtempSync(join(tmpdir(), 'edu-plus-bench-cycle-'));
  const warm: CycleRun[] = [];
  let cold: CycleRun | null = null;
  const coldWanted = process.env[COLD_ENV] === '1';
  try {
    // One unrecorded cycle first, so "warm" really is warm (and builds what is missing).
    ctx.progress('vm-cycle: one unrecorded cycle to warm the cache');
    await cycle('warm', dir, 0);
    for (let i = 1; i <= ctx.repeats; i++) {
      ctx.progress(`vm-cycle: warm cycle ${i}/${ctx.repeats}`);
      warm.push(await cycle('warm', dir, i));
    }
    if (coldWanted) {
      const coldCache = mkdtempSync(join(tmpdir(), 'edu-plus-bench-cold-cache-'));
      const saved = process.env.EDU_PLUS_CACHE;
      ctx.progress(`vm-cycle: cold cycle, EDU_PLUS_CACHE=${coldCache} (downloads about 160 MB)`);
      try {
        const t0 = performance.now();
        let p: Provisioned;
        process.env.EDU_PLUS_CACHE = coldCache;
        try {
          p = await provision(join(coldCache, 'images', 'cold.cpio.gz'));
        } finally {
          if (saved === undefined) delete process.env.EDU_PLUS_CACHE;
          else process.env.EDU_PLUS_CACHE = saved;
        }
        cold = await boot('cold', p, dir, 0, t0, performance.now() - t0);
      } finally {
        rmSync(coldCache, { recursive: true, force: true });
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  const accel = kvmUsable() ? 'KVM' : 'TCG';
  const table: string[] = [];
  table.push(`vm-cycle: wall time of the e2e VM step for ${GUEST_TEST} (${accel}), seconds`);
  table.push(
    `warm: median of ${warm.length} cycle(s) after one unrecorded one (each in brackets); provisioning steps timed one after another; load ${loadavg()[0]!.toFixed(2)}`,
  );
  table.push('');
  table.push(`${'phase'.padEnd(30)}  ${'warm'.padStart(7)}  ${'cold'.padStart(7)}  warm runs`);
  for (const { key, label } of COLUMNS) {
    const values = warm.map((r) => r[key] as number);
    const coldCell = cold ? secs(cold[key] as number) : 'skipped';
    table.push(`${label.padEnd(30)}  ${secs(medianOf(values)).padStart(7)}  ${coldCell.padStart(7)}  [${values.map(secs).join(', ')}]`);
  }
  table.push('');
  if (!cold) table.push(`cold cache: skipped (set ${COLD_ENV}=1 to provision into a fresh EDU_PLUS_CACHE; downloads about 160 MB)`);
  const warmTotal = medianOf(warm.map((r) => r.totalMs));
  table.push(`headline: warm VM step ${secs(warmTotal)} s under ${accel} (goal ≤ 10 s under TCG)`);
  for (const r of [...warm, ...(cold ? [cold] : [])]) for (const p of r.problems) table.push(`  PROBLEM (${r.cache}): ${p}`);

  return {
    table: table.join('\n'),
    headline: [{ label: 'vm-cycle warm', value: warmTotal / 1000, unit: 's' as const, goal: 10, goalKind: 'max' as const }],
    json: { suite: 'vm-cycle', accel, guestTest: GUEST_TEST, loadavg: loadavg(), warm, cold, coldSkipped: !cold },
  };
}

export const vmCycleSuite: Suite = {
  name: 'vm-cycle',
  summary: `wall time of the e2e VM step (provisioning / boot / tests / shutdown), warm cache; cold with ${COLD_ENV}=1`,
  defaults: { iterations: 1, warmup: 0, repeats: 2 },
  run,
};
