/**
 * End to end, for real: QEMU >= 10.1's vfio-user-pci client attaches to our server (running in
 * this process), a Debian 7.3 guest binds edu-plus to vfio-pci and runs guest-tests/
 * edu_plus_basic (KTAP). Then the host reads BAR1 through the server's own mapping and checks
 * every page holds what the guest wrote, and that no BAR1 access ever reached the server as a
 * REGION_READ/WRITE: guest loads and stores went straight to the shared memfd.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createEduPlus, type EduPlus } from '../../device/edu-plus.ts';
import { createLogger } from '../../protocol/log.ts';
import { VfioUserServer } from '../../protocol/server.ts';
import { PciRegion } from '../../protocol/wire.ts';
import { type GuestRun, bootGuestTests, provisionTestVm, type TestVm, notDoneReason } from './vm-harness.ts';

/** Same formula as guest-tests/bar1_pattern.h: change both together. */
function pagePattern(i: number): number {
  return (0xb1000000 ^ Math.imul(i, 0x9e3779b1)) >>> 0;
}
const PAGE = 4096;
const TAIL = 4092;

describe('walking skeleton: a real QEMU guest drives edu-plus through vfio-pci', { timeout: 30 * 60_000 }, () => {
  let dir: string;
  let vm: TestVm;
  let server: VfioUserServer;
  let run: GuestRun;
  const serverLog: string[] = [];

  before(async () => {
    vm = await provisionTestVm({ tests: ['edu_plus_basic'] });
    dir = mkdtempSync(join(tmpdir(), 'edu-plus-e2e-'));
    server = VfioUserServer.listen({
      socketPath: join(dir, 'edu-plus.sock'),
      device: createEduPlus(),
      log: createLogger({ level: 'info', write: (line) => serverLog.push(line) }),
    });
    run = await bootGuestTests(vm, { socketPath: server.socketPath, timeoutMs: 240_000 });
    await server.clientGone();
  });

  after(() => {
    server?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('boots the guest, which runs the tests and powers off', (t) => {
    t.diagnostic(`guest booted to /init in ${run.vm.initMs ?? '?'} ms, tests done at ${run.vm.doneMs ?? '?'} ms, QEMU exited after ${run.vm.durationMs} ms`);
    if (!run.vm.doneMs || run.vm.timedOut) {
      t.diagnostic('--- guest console ---');
      for (const line of run.vm.lines.slice(-80)) t.diagnostic(line);
      t.diagnostic('--- QEMU stderr ---');
      for (const line of run.vm.stderrLines.slice(-40)) t.diagnostic(line);
      t.diagnostic('--- server log ---');
      for (const line of serverLog.slice(-40)) t.diagnostic(line);
    }
    assert.equal(run.vm.timedOut, false, 'QEMU hit the hard timeout');
    assert.ok(run.vm.doneMs, notDoneReason(run.vm));
  });

  it('the guest reports every KTAP test ok', (t) => {
    for (const line of run.ktapLines) t.diagnostic(line);
    const report = run.ktap;
    assert.ok(report.plan !== undefined && report.plan > 0, 'no KTAP plan in the guest output');
    assert.equal(report.results.length, report.plan, `KTAP plan says ${report.plan} tests, ${report.results.length} reported`);
    const bad = report.results.filter((r) => !r.ok || r.skip);
    assert.deepEqual(
      bad.map((r) => `${r.number} ${r.name}${r.directive ? ` # ${r.directive}` : ''}`),
      [],
      'every guest test must pass (a SKIP here means a prerequisite failed)',
    );
  });

  it('the host sees every page the guest wrote, through the server\'s own BAR1 mapping', () => {
    const bar1 = (server.device as EduPlus).bar1;
    const pages = Number(bar1.size) / PAGE;
    const mismatches: string[] = [];
    for (let i = 0; i < pages; i++) {
      const page = bar1.bytes(i * PAGE, PAGE);
      const v = new DataView(page.buffer, page.byteOffset, PAGE);
      const head = v.getUint32(0, true);
      const tail = v.getUint32(TAIL, true);
      if (head !== pagePattern(i) || tail !== ~pagePattern(i) >>> 0) {
        mismatches.push(`page ${i}: head 0x${head.toString(16)} tail 0x${tail.toString(16)}, expected 0x${pagePattern(i).toString(16)}`);
      }
    }
    assert.equal(pages, 16384);
    assert.deepEqual(mismatches.slice(0, 5), [], `${mismatches.length} of ${pages} pages differ`);
  });

  it('the server received no REGION_READ/WRITE for BAR1 (guest accesses never trapped)', (t) => {
    const session = server.lastSession;
    assert.ok(session, 'QEMU never connected');
    const reads = session.stats.regionReads;
    const writes = session.stats.regionWrites;
    t.diagnostic(`trapped accesses: BAR0 ${reads.get(PciRegion.BAR0) ?? 0} reads / ${writes.get(PciRegion.BAR0) ?? 0} writes, config ${reads.get(PciRegion.CONFIG) ?? 0} / ${writes.get(PciRegion.CONFIG) ?? 0}, BAR1 ${reads.get(PciRegion.BAR1) ?? 0} / ${writes.get(PciRegion.BAR1) ?? 0}`);
    assert.ok((reads.get(PciRegion.BAR0) ?? 0) > 0, 'BAR0 was never read through the server: the guest test did not run against us');
    assert.equal(reads.get(PciRegion.BAR1) ?? 0, 0);
    assert.equal(writes.get(PciRegion.BAR1) ?? 0, 0);
  });
});
