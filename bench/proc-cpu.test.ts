import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type CpuSample, cpuDelta, sampleCpu } from './proc-cpu.ts';

const sample = (atMs: number, threads: [tid: number, group: string, statTicks: number, runNs: number | null][]): CpuSample => ({
  atMs,
  threads: threads.map(([tid, group, ticks, runNs]) => ({ tid, name: 'node', group, statNs: ticks * 1e7, runNs })),
});

describe('proc-cpu', () => {
  it('reads this process: a main thread, CPU that only grows while we spin', () => {
    const a = sampleCpu(process.pid);
    assert.ok(a.threads.some((t) => t.group === 'main' && t.tid === process.pid));
    const until = performance.now() + 30;
    while (performance.now() < until);
    const d = cpuDelta(a, sampleCpu(process.pid));
    assert.ok(d.totalNs > 0, `spinning 30 ms used ${d.totalNs} ns`);
    assert.ok(d.byName.find((g) => g.name === 'main')!.ns > 0);
  });

  it('sums threads per group, counts a new thread whole and a vanished one as a change', () => {
    const before = sample(0, [[1, 'main', 10, 100e6], [2, 'other', 1, 10e6], [3, 'other', 0, 5e6]]);
    const after = sample(500, [[1, 'main', 12, 120e6], [2, 'other', 2, 13e6], [4, 'other', 0, 2e6]]);
    const d = cpuDelta(before, after);
    assert.equal(d.source, 'schedstat');
    assert.equal(d.totalNs, 20e6 + 3e6 + 2e6);
    assert.equal(d.statNs, 3e7);
    assert.equal(d.wallMs, 500);
    assert.deepEqual(d.byName, [{ name: 'main', threads: 1, ns: 20e6 }, { name: 'other', threads: 2, ns: 5e6 }]);
    assert.equal(d.threadsChanged, 2);
  });

  it('falls back to utime + stime when a thread has no schedstat', () => {
    const d = cpuDelta(sample(0, [[1, 'main', 10, null]]), sample(1, [[1, 'main', 13, null]]));
    assert.equal(d.source, 'stat');
    assert.equal(d.totalNs, 3e7);
  });
});
