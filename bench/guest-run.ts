/**
 * Shared by the guest-mmio and guest-bar1 suites: one initramfs holding both guest benchmark
 * programs (guest-tests/bench_mmio.c, bench_bar1.c), booted under TCG with three 1234:11e8
 * devices at fixed PCI slots — QEMU's in-process `-device edu`, the C vfio-user peer
 * (bench/c-peer.c) and edu-plus served by `edu-plus serve` with its default options — each
 * server in its own process, so its CPU time can be read from /proc while the guest loops.
 *
 * Every boot runs bench_mmio over all three; the first boot then also runs bench_bar1 (after
 * removing the C peer's function from the guest's view: bench_bar1 takes the first 1234:11e8
 * with a BAR1, and that must be edu-plus). Boots repeat `repeats` times with fresh servers, so
 * each boot also shows a fresh server's first accesses. Results are cached per option set, so
 * when both suites are selected in one `npm run bench` the guests boot once, not twice.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildGuestTests } from '../guest-tests/build.ts';
import { defaultInit } from '../qemu-configs/guest-init.ts';
import { buildInitramfs } from '../qemu-configs/initramfs.ts';
import { provisionKernel } from '../qemu-configs/provision-kernel.ts';
import { provisionQemu } from '../qemu-configs/provision-qemu.ts';
import { qemuArgs, vfioUserDevice } from '../qemu-configs/qemu-command.ts';
import { runVm } from '../qemu-configs/run-vm.ts';
import { buildCPeer, dmaMapsForGuest, startCPeer } from './c-peer.ts';
import { type CpuDelta, type CpuSample, cpuDelta, sampleCpu } from './proc-cpu.ts';
import { startServer, stopServer } from './processes.ts';
import type { SuiteContext } from './suite.ts';

/** Under TCG a vfio-user access costs tens of µs: more than this many is minutes of nothing new. */
export const GUEST_MAX_ITERATIONS = 5000;
export const GUEST_MAX_WARMUP = 200;
/** memcpy repeats of 64 MiB per target and direction (at least this many). */
export const MIN_BAR1_REPEATS = 3;
/** Accesses per device timed from the very first one (the warm-up tail). */
export const FIRST_ACCESSES = 1000;
/** The idle window with every device open, in seconds. */
export const IDLE_SECONDS = 3;
const GUEST_MEMORY_MIB = 1024;
const BOOT_TIMEOUT_MS = 15 * 60_000;
const SERVER_START_TIMEOUT_MS = 120_000;
const ROOT = join(import.meta.dirname, '..');

/**
 * The devices, in the guest's turn order, at slots the host fixes (so the guest is told which
 * is which instead of guessing from BARs: the C peer and edu-plus look alike on purpose).
 */
export const MMIO_DEVICES = [
  { name: 'edu', slot: 3, server: null },
  { name: 'c-peer', slot: 4, server: 'C vfio-user peer (bench/c-peer.c)' },
  { name: 'edu-plus', slot: 5, server: 'edu-plus serve (default options)' },
] as const;
export type MmioDeviceName = (typeof MMIO_DEVICES)[number]['name'];
const bdf = (slot: number) => `0000:00:${slot.toString(16).padStart(2, '0')}.0`;

export interface MmioLine {
  readonly device: string;
  readonly op: string;
  readonly medianNs: number;
  readonly p99Ns: number;
  readonly minNs: number;
  readonly meanNs: number;
  readonly maxNs: number;
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

/** One server's CPU over one bracketed guest phase. */
export interface PhaseCpu extends CpuDelta {
  readonly device: string;
  readonly phase: string;
  /** Accesses the guest made to this device in the phase (none for idle). */
  readonly accesses: number;
}

export interface BootResult {
  /** 1-based boot number. */
  readonly index: number;
  readonly mmio: MmioLine[];
  readonly bar1: Bar1Line[];
  /** target → reason, e.g. dmabuf → "unsupported (EINVAL)". */
  readonly unsupported: Record<string, string>;
  readonly cpu: PhaseCpu[];
  /** The host's load average (1, 5, 15 min) when the boot started. */
  readonly load: readonly number[];
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
  readonly compiler: string;
  readonly boots: BootResult[];
  readonly wallMs: number;
}

const MMIO_RE = /bench-mmio device=(\S+) op=(\S+) median_ns=(\d+) p99_ns=(\d+) min_ns=(\d+) mean_ns=(\d+) max_ns=(\d+) n=(\d+)/;
const PHASE_RE = /bench-mmio-phase phase=(\S+) edge=(begin|end)(?: accesses=(\d+))?/;
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
      mmio.push({ device: m[1]!, op: m[2]!, medianNs: +m[3]!, p99Ns: +m[4]!, minNs: +m[5]!, meanNs: +m[6]!, maxNs: +m[7]!, n: +m[8]! });
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
  const boots = Math.max(1, ctx.repeats);
  const key = JSON.stringify({ iterations, warmup, bar1Repeats, boots });
  let p = cache.get(key);
  if (!p) {
    p = runGuestBench(ctx, { iterations, warmup, bar1Repeats, boots });
    cache.set(key, p);
    p.catch(() => cache.delete(key));
  }
  return p;
}

/** The guest's commands: bench_mmio on every boot, bench_bar1 unless the kernel says skip. */
function guestCommands(iterations: number, warmup: number, bar1Repeats: number): string[] {
  const devices = MMIO_DEVICES.map((d) => `${d.name}=${bdf(d.slot)}`).join(' ');
  const cPeer = MMIO_DEVICES.find((d) => d.name === 'c-peer')!;
  return [
    `/bench/bench_mmio -f ${FIRST_ACCESSES} -i ${IDLE_SECONDS} ${iterations} ${warmup} ${devices} || echo "bench-mmio-error what=\\"exit $?\\""`,
    `case " $(cat /proc/cmdline) " in *" bench.skip_bar1 "*) ;; *) ` +
      `echo 1 > /sys/bus/pci/devices/${bdf(cPeer.slot)}/remove; ` +
      `[ -e /sys/bus/pci/devices/${bdf(cPeer.slot)} ] && echo "bench-bar1-error what=\\"could not hide the C peer from bench_bar1\\""; ` +
      `/bench/bench_bar1 ${bar1Repeats} 64 || echo "bench-bar1-error what=\\"exit $?\\"" ;; esac`,
  ];
}

interface RunningDevice {
  readonly name: string;
  readonly pid: number;
  stop(): Promise<void>;
}

/**
 * Node flags for the edu-plus server process, from EDU_PLUS_BENCH_SERVE_FLAGS (space-separated):
 * how to profile the server under the guest loop (--cpu-prof --cpu-prof-dir=DIR) or watch its
 * compiler (--trace-deopt). Its stdout is not kept: write traces to a file (--logfile, --cpu-prof-dir).
 */
function serveNodeFlags(): string[] {
  return (process.env.EDU_PLUS_BENCH_SERVE_FLAGS ?? '').split(' ').filter(Boolean);
}

/** The C peer and an `edu-plus serve` process (default options) on sockets in dir. */
async function startServers(dir: string, boot: number): Promise<{ servers: RunningDevice[]; qemuDevices: string[] }> {
  const socket = (name: string) => join(dir, `${name}-${boot}.sock`);
  const [cPeer, eduPlus] = await Promise.allSettled([
    startCPeer(socket('c-peer'), { maxDmaMaps: dmaMapsForGuest(GUEST_MEMORY_MIB) }),
    startServer([process.execPath, ...serveNodeFlags(), '--import', 'tsx', join(ROOT, 'cli/main.ts'), 'serve', '--socket-path', socket('edu-plus')], ROOT, SERVER_START_TIMEOUT_MS, 'edu-plus is serving on'),
  ]);
  const servers: RunningDevice[] = [];
  if (cPeer.status === 'fulfilled') servers.push({ name: 'c-peer', pid: cPeer.value.pid, stop: cPeer.value.stop });
  if (eduPlus.status === 'fulfilled') {
    const s = eduPlus.value;
    servers.push({ name: 'edu-plus', pid: s.child.pid!, stop: () => stopServer(s) });
  }
  const failed = [cPeer, eduPlus].find((r) => r.status === 'rejected');
  if (failed) {
    await Promise.all(servers.map((s) => s.stop()));
    throw (failed as PromiseRejectedResult).reason;
  }
  const qemuDevices = MMIO_DEVICES.map((d) =>
    d.server === null ? `edu,addr=${d.slot.toString(16)}.0` : JSON.stringify({ ...JSON.parse(vfioUserDevice(socket(d.name))), addr: `${d.slot.toString(16)}.0` }),
  );
  return { servers, qemuDevices };
}

/**
 * Samples every server's CPU at each phase marker the guest prints and keeps the differences.
 * The guest sleeps after each begin marker, so the sample is taken before its first access.
 */
function phaseSampler(servers: readonly RunningDevice[], errors: string[]) {
  const open = new Map<string, CpuSample[]>();
  const cpu: PhaseCpu[] = [];
  const sampleAll = (): CpuSample[] | null => {
    try {
      return servers.map((s) => sampleCpu(s.pid));
    } catch (err) {
      errors.push(`could not read a server's CPU time: ${(err as Error).message}`);
      return null;
    }
  };
  return {
    cpu,
    onLine(line: string): void {
      const m = PHASE_RE.exec(line);
      if (!m) return;
      const [, phase, edge, accesses] = m;
      const now = sampleAll();
      if (!now) return;
      if (edge === 'begin') {
        open.set(phase!, now);
        return;
      }
      const before = open.get(phase!);
      if (!before) {
        errors.push(`phase ${phase} ended without a begin marker`);
        return;
      }
      open.delete(phase!);
      servers.forEach((s, i) => cpu.push({ device: s.name, phase: phase!, accesses: Number(accesses ?? 0), ...cpuDelta(before[i]!, now[i]!) }));
    },
  };
}

interface RunOptions {
  readonly iterations: number;
  readonly warmup: number;
  readonly bar1Repeats: number;
  readonly boots: number;
}

async function runGuestBench(ctx: SuiteContext, opts: RunOptions): Promise<GuestBenchResult> {
  const started = performance.now();
  ctx.progress('guest bench: provisioning QEMU, the guest kernel and the guest programs; building the C peer');
  const [qemu, kernel, built] = await Promise.all([provisionQemu(), provisionKernel(), buildGuestTests()]);
  const { compiler } = buildCPeer();
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
      init: defaultInit({ commands: guestCommands(opts.iterations, opts.warmup, opts.bar1Repeats) }),
      output: initrd,
    });
    const boots: BootResult[] = [];
    for (let index = 1; index <= opts.boots; index++) {
      const withBar1 = index === 1;
      ctx.progress(`guest bench: boot ${index}/${opts.boots} (TCG) with edu, the C peer and edu-plus${withBar1 ? '' : ', bench_mmio only'}`);
      const load = loadavg();
      const { servers, qemuDevices } = await startServers(dir, index);
      const errors: string[] = [];
      const sampler = phaseSampler(servers, errors);
      try {
        const args = qemuArgs({
          kernel: kernel.vmlinuz,
          initrd,
          memoryMiB: GUEST_MEMORY_MIB,
          extraDevices: qemuDevices,
          accel: 'tcg',
          append: withBar1 ? undefined : 'bench.skip_bar1',
        });
        const vm = await runVm({
          qemu,
          args,
          timeoutMs: BOOT_TIMEOUT_MS,
          onLine: (line) => {
            sampler.onLine(line);
            if (/bench-(mmio|bar1)-(done|error|unsupported)/.test(line)) ctx.progress(`  guest: ${line.trim()}`);
          },
        });
        const parsed = parseBenchLines(vm.lines);
        errors.unshift(...parsed.errors);
        if (vm.timedOut) errors.push(`QEMU hit the ${BOOT_TIMEOUT_MS / 1000} s timeout`);
        if (vm.doneMs === undefined) {
          errors.push('the guest never printed its done sentinel');
          errors.push(...vm.lines.slice(-30).map((l) => `console: ${l}`), ...vm.stderrLines.slice(-10).map((l) => `qemu: ${l}`));
        }
        boots.push({
          index,
          ...parsed,
          cpu: sampler.cpu,
          load,
          errors,
          initMs: vm.initMs,
          doneMs: vm.doneMs,
          durationMs: vm.durationMs,
          exitCode: vm.exitCode,
          timedOut: vm.timedOut,
        });
        ctx.progress(`guest bench: boot ${index} done in ${(vm.durationMs / 1000).toFixed(1)} s${errors.length ? ` with ${errors.length} problem(s)` : ''}`);
      } finally {
        await Promise.all(servers.map((s) => s.stop()));
      }
    }
    const { iterations, warmup, bar1Repeats } = opts;
    return { iterations, warmup, bar1Repeats, accel: 'tcg', compiler, boots, wallMs: performance.now() - started };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
