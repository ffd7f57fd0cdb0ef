/**
 * Shared by the guest-mmio and guest-bar1 suites: one initramfs holding both guest benchmark
 * programs (guest-tests/bench_mmio.c, bench_bar1.c), booted under TCG with two 1234:11e8
 * devices attached — QEMU's in-process `-device edu` and edu-plus served over vfio-user by a
 * server in this process — and the programs' result lines parsed.
 *
 * The first boot (server spin at the default 20 µs) runs both programs; the second (spin 0)
 * runs bench_mmio only (`bench.skip_bar1` on the kernel command line: BAR1 copies never reach
 * the server, so the spin cannot matter there). Results are cached per option set, so when both
 * suites are selected in one `npm run bench` the guest boots once per spin setting, not twice.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createEduPlus } from '../device/edu-plus.ts';
import { buildGuestTests } from '../guest-tests/build.ts';
import { defaultInit } from '../qemu-configs/guest-init.ts';
import { buildInitramfs } from '../qemu-configs/initramfs.ts';
import { provisionKernel } from '../qemu-configs/provision-kernel.ts';
import { provisionQemu } from '../qemu-configs/provision-qemu.ts';
import { qemuArgs } from '../qemu-configs/qemu-command.ts';
import { runVm } from '../qemu-configs/run-vm.ts';
import { silentLogger } from '../protocol/log.ts';
import { VfioUserServer } from '../protocol/server.ts';
import type { SuiteContext } from './suite.ts';

/** The serve command's default --spin-us (cli/serve.ts). */
export const DEFAULT_SPIN_US = 20;
/** Under TCG a vfio-user access costs tens of µs: more than this many is minutes of nothing new. */
export const GUEST_MAX_ITERATIONS = 5000;
export const GUEST_MAX_WARMUP = 200;
/** memcpy repeats of 64 MiB per target and direction (at least this many). */
export const MIN_BAR1_REPEATS = 3;
const BOOT_TIMEOUT_MS = 15 * 60_000;

export interface MmioLine {
  readonly device: string;
  readonly op: string;
  readonly medianNs: number;
  readonly p99Ns: number;
  readonly minNs: number;
  readonly meanNs: number;
  readonly n: number;
}

export interface Bar1Line {
  readonly target: string;
  readonly op: string;
  readonly rep: number;
  readonly bytes: number;
  readonly ns: number;
  readonly mibPerS: number;
}

export interface BootResult {
  readonly spinMicros: number;
  readonly mmio: MmioLine[];
  readonly bar1: Bar1Line[];
  /** target → reason, e.g. dmabuf → "unsupported (EINVAL)". */
  readonly unsupported: Record<string, string>;
  /** bench-*-error lines and anything else that went wrong. */
  readonly errors: string[];
  /** The guest programs' own lines (bench-*), for the JSON. */
  readonly lines: string[];
  readonly initMs?: number;
  readonly doneMs?: number;
  readonly durationMs: number;
  readonly exitCode: number | null;
  readonly timedOut: boolean;
}

export interface GuestBenchResult {
  readonly iterations: number;
  readonly warmup: number;
  readonly bar1Repeats: number;
  readonly accel: 'tcg';
  readonly boots: BootResult[];
}

const MMIO_RE = /bench-mmio device=(\S+) op=(\S+) median_ns=(\d+) p99_ns=(\d+) min_ns=(\d+) mean_ns=(\d+) n=(\d+)/;
const BAR1_RE = /bench-bar1 target=(\S+) op=(\S+) rep=(\d+) bytes=(\d+) ns=(\d+) mib_s=([\d.]+)/;
const UNSUPPORTED_RE = /bench-bar1-unsupported target=(\S+) reason="([^"]*)"/;

export function parseBenchLines(lines: readonly string[]): Pick<BootResult, 'mmio' | 'bar1' | 'unsupported' | 'errors' | 'lines'> {
  const mmio: MmioLine[] = [];
  const bar1: Bar1Line[] = [];
  const unsupported: Record<string, string> = {};
  const errors: string[] = [];
  const own: string[] = [];
  for (const line of lines) {
    const at = line.indexOf('bench-');
    if (at < 0) continue;
    const text = line.slice(at);
    own.push(text);
    let m: RegExpExecArray | null;
    if ((m = MMIO_RE.exec(text))) {
      mmio.push({ device: m[1]!, op: m[2]!, medianNs: +m[3]!, p99Ns: +m[4]!, minNs: +m[5]!, meanNs: +m[6]!, n: +m[7]! });
    } else if ((m = BAR1_RE.exec(text))) {
      bar1.push({ target: m[1]!, op: m[2]!, rep: +m[3]!, bytes: +m[4]!, ns: +m[5]!, mibPerS: +m[6]! });
    } else if ((m = UNSUPPORTED_RE.exec(text))) {
      unsupported[m[1]!] = m[2]!;
    } else if (/^bench-\w+-error/.test(text)) {
      errors.push(text);
    }
  }
  return { mmio, bar1, unsupported, errors, lines: own };
}

const cache = new Map<string, Promise<GuestBenchResult>>();

/** Runs (once per option set and process) the guest boots both guest suites read. */
export function guestBench(ctx: SuiteContext): Promise<GuestBenchResult> {
  const iterations = Math.min(ctx.iterations, GUEST_MAX_ITERATIONS);
  const warmup = Math.min(ctx.warmup, GUEST_MAX_WARMUP);
  const bar1Repeats = Math.max(ctx.repeats, MIN_BAR1_REPEATS);
  const key = JSON.stringify({ iterations, warmup, bar1Repeats });
  let p = cache.get(key);
  if (!p) {
    p = runGuestBench(ctx, iterations, warmup, bar1Repeats);
    cache.set(key, p);
    p.catch(() => cache.delete(key));
  }
  return p;
}

async function runGuestBench(ctx: SuiteContext, iterations: number, warmup: number, bar1Repeats: number): Promise<GuestBenchResult> {
  ctx.progress('guest bench: provisioning QEMU, the guest kernel and the guest programs');
  const [qemu, kernel, built] = await Promise.all([provisionQemu(), provisionKernel(), buildGuestTests()]);
  const bin = (name: string) => {
    const b = built.binaries.find((x) => x.name === name);
    if (!b) throw new Error(`guest program ${name} was not built`);
    return { src: b.path, dest: `/bench/${name}` };
  };
  const dir = mkdtempSync(join(tmpdir(), 'edu-plus-bench-guest-'));
  try {
    const initrd = join(dir, 'bench.cpio.gz');
    await buildInitramfs({
      kernel,
      modules: ['vfio-pci', 'vfio_iommu_type1'],
      files: [bin('bench_mmio'), bin('bench_bar1')],
      init: defaultInit({
        commands: [
          `/bench/bench_mmio ${iterations} ${warmup} || echo "bench-mmio-error what=\\"exit $?\\""`,
          `case " $(cat /proc/cmdline) " in *" bench.skip_bar1 "*) ;; *) /bench/bench_bar1 ${bar1Repeats} 64 || echo "bench-bar1-error what=\\"exit $?\\"" ;; esac`,
        ],
      }),
      output: initrd,
    });
    const boots: BootResult[] = [];
    for (const spinMicros of [DEFAULT_SPIN_US, 0]) {
      ctx.progress(`guest bench: booting (TCG) with edu and edu-plus (server spin ${spinMicros} µs)${spinMicros === 0 ? ', bench_mmio only' : ''}`);
      const socketPath = join(dir, `edu-plus-${spinMicros}.sock`);
      const server = VfioUserServer.listen({ socketPath, device: createEduPlus(), log: silentLogger, waitMicros: spinMicros });
      try {
        const args = qemuArgs({
          kernel: kernel.vmlinuz,
          initrd,
          socketPath,
          extraDevices: ['edu'],
          accel: 'tcg',
          append: spinMicros === 0 ? 'bench.skip_bar1' : undefined,
        });
        const vm = await runVm({
          qemu,
          args,
          timeoutMs: BOOT_TIMEOUT_MS,
          onLine: (line) => {
            if (/bench-(mmio|bar1)-(done|error|unsupported)/.test(line)) ctx.progress(`  guest: ${line.trim()}`);
          },
        });
        const parsed = parseBenchLines(vm.lines);
        const errors = [...parsed.errors];
        if (vm.timedOut) errors.push(`QEMU hit the ${BOOT_TIMEOUT_MS / 1000} s timeout`);
        if (vm.doneMs === undefined) {
          errors.push('the guest never printed its done sentinel');
          errors.push(...vm.lines.slice(-30).map((l) => `console: ${l}`), ...vm.stderrLines.slice(-10).map((l) => `qemu: ${l}`));
        }
        boots.push({
          spinMicros,
          ...parsed,
          errors,
          initMs: vm.initMs,
          doneMs: vm.doneMs,
          durationMs: vm.durationMs,
          exitCode: vm.exitCode,
          timedOut: vm.timedOut,
        });
        ctx.progress(`guest bench: spin ${spinMicros} µs boot done in ${(vm.durationMs / 1000).toFixed(1)} s${errors.length ? ` with ${errors.length} problem(s)` : ''}`);
      } finally {
        server.close();
      }
    }
    return { iterations, warmup, bar1Repeats, accel: 'tcg', boots };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
