/**
 * CPU time a process has used, read per thread from /proc: the guest-mmio suite samples each
 * device server at the guest's phase markers and divides the difference by the accesses the
 * guest made in between.
 *
 * Two counters per thread:
 * - `/proc/PID/task/TID/stat` utime + stime (fields 14 and 15), in clock ticks (USER_HZ,
 *   100 per second here): the classic figure, but 10 ms coarse;
 * - `/proc/PID/task/TID/schedstat` field 1, the nanoseconds the thread ran (the same total
 *   at full resolution; absent on kernels without CONFIG_SCHED_INFO).
 * Threads are summed into a total and into groups: the main thread (tid = pid), and the others
 * by name, where a name equal to the main thread's (node names every thread "node") is "other".
 */
import { readFileSync, readdirSync } from 'node:fs';

/** USER_HZ: the unit of utime/stime. Linux has reported 100 on x86 and arm64 for decades. */
export const CLOCK_TICKS_PER_S = 100;

export interface ThreadCpu {
  readonly tid: number;
  readonly name: string;
  /** 'main', 'other', or the thread's own name when it differs from the main thread's. */
  readonly group: string;
  /** utime + stime from stat, in ns (ticks × 10 ms). */
  readonly statNs: number;
  /** From schedstat, or null where the kernel does not keep it. */
  readonly runNs: number | null;
}

export interface CpuSample {
  /** performance.now() when read. */
  readonly atMs: number;
  readonly threads: readonly ThreadCpu[];
}

/** A stat line's command name and utime + stime in ticks. */
function parseStat(stat: string): { name: string; ticks: number } {
  // The name is in parentheses and may itself hold spaces or parentheses: split after the last ')'.
  const close = stat.lastIndexOf(')');
  const fields = stat.slice(close + 2).split(' ');
  // fields[0] is field 3 (state), so utime (14) and stime (15) are fields[11] and fields[12].
  return { name: stat.slice(stat.indexOf('(') + 1, close), ticks: Number(fields[11]) + Number(fields[12]) };
}

/** CPU time (user + system, every thread) a process has used so far, in seconds (10 ms steps). */
export function cpuSecondsOf(pid: number): number {
  return parseStat(readFileSync(`/proc/${pid}/stat`, 'utf8')).ticks / CLOCK_TICKS_PER_S;
}

function readThread(pid: number, tid: number): Omit<ThreadCpu, 'group'> | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
  } catch {
    return null; // the thread ended between readdir and read
  }
  const { name, ticks } = parseStat(stat);
  let runNs: number | null = null;
  try {
    runNs = Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
  } catch {
    runNs = null;
  }
  return { tid, name, statNs: (ticks * 1e9) / CLOCK_TICKS_PER_S, runNs };
}

/** Every live thread of pid; throws when the process is gone. */
export function sampleCpu(pid: number): CpuSample {
  const atMs = performance.now();
  const raw: Omit<ThreadCpu, 'group'>[] = [];
  for (const entry of readdirSync(`/proc/${pid}/task`)) {
    const t = readThread(pid, Number(entry));
    if (t) raw.push(t);
  }
  const mainName = raw.find((t) => t.tid === pid)?.name;
  const threads = raw.map((t) => ({ ...t, group: t.tid === pid ? 'main' : t.name === mainName ? 'other' : t.name }));
  return { atMs, threads };
}

export interface CpuDelta {
  readonly wallMs: number;
  /** Summed over threads (schedstat where every thread has it, else stat), ns. */
  readonly totalNs: number;
  /** The stat (utime + stime) sum alone, ns, 10 ms resolution. */
  readonly statNs: number;
  readonly source: 'schedstat' | 'stat';
  /** By thread group (see ThreadCpu.group), ns, largest first. */
  readonly byName: { readonly name: string; readonly threads: number; readonly ns: number }[];
  /** Threads that started or ended between the samples (their CPU is only partly counted). */
  readonly threadsChanged: number;
}

/** What the process used between two samples, per thread group. */
export function cpuDelta(before: CpuSample, after: CpuSample): CpuDelta {
  const old = new Map(before.threads.map((t) => [t.tid, t]));
  const useRun = after.threads.every((t) => t.runNs !== null) && before.threads.every((t) => t.runNs !== null);
  const groups = new Map<string, { threads: number; ns: number }>();
  let totalNs = 0;
  let statNs = 0;
  let changed = 0;
  for (const t of after.threads) {
    const o = old.get(t.tid);
    if (!o) changed++;
    old.delete(t.tid);
    const ns = useRun ? t.runNs! - (o?.runNs ?? 0) : t.statNs - (o?.statNs ?? 0);
    statNs += t.statNs - (o?.statNs ?? 0);
    totalNs += ns;
    const g = groups.get(t.group) ?? { threads: 0, ns: 0 };
    g.threads++;
    g.ns += ns;
    groups.set(t.group, g);
  }
  changed += old.size;
  return {
    wallMs: after.atMs - before.atMs,
    totalNs,
    statNs,
    source: useRun ? 'schedstat' : 'stat',
    byName: [...groups].map(([name, g]) => ({ name, ...g })).sort((a, b) => b.ns - a.ns),
    threadsChanged: changed,
  };
}
