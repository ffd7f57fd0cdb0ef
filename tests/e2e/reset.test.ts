/**
 * A guest resets edu-plus through its own vfio-pci (VFIO_DEVICE_RESET), for each reset method
 * `--reset` can offer: the guest kernel must list the method in sysfs reset_method, the ioctl
 * must succeed, and the device must be back at power-on state with BAR1 kept
 * (guest-tests/edu_plus_reset.c). The host side checks the device itself saw the reset arrive
 * by that method (FLR or PM D3hot→D0), not as a DEVICE_RESET from QEMU. With the default
 * (none, as QEMU's edu) the kernel must offer no method at all.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { createEduPlus, type EduResetMethod } from '../../device/edu-plus.ts';
import { createLogger } from '../../protocol/log.ts';
import { VfioUserServer } from '../../protocol/server.ts';
import type { TracedEvent } from '../../protocol/trace-bus.ts';
import { type GuestRun, bootGuestTests, provisionTestVm, notDoneReason } from './vm-harness.ts';

interface ResetRun {
  run: GuestRun;
  resets: string[];
  serverLog: string[];
}

async function runResetGuest(method: EduResetMethod): Promise<ResetRun> {
  const expected = method === 'none' ? '' : ` ${method}`;
  const vm = await provisionTestVm({ tests: ['edu_plus_reset'], name: `edu_plus_reset-${method}`, commands: [`/tests/edu_plus_reset${expected}`] });
  const dir = mkdtempSync(join(tmpdir(), 'edu-plus-reset-'));
  const serverLog: string[] = [];
  const server = VfioUserServer.listen({
    socketPath: join(dir, 'edu-plus.sock'),
    device: createEduPlus({ reset: method }),
    log: createLogger({ level: 'info', write: (line) => serverLog.push(line) }),
  });
  const resets: string[] = [];
  server.trace.subscribe((e: TracedEvent) => {
    if (e.type === 'reset') resets.push(e.source);
  });
  try {
    const run = await bootGuestTests(vm, { socketPath: server.socketPath, timeoutMs: 240_000 });
    await server.clientGone();
    return { run, resets, serverLog };
  } finally {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

function showRun(t: { diagnostic(s: string): void }, r: ResetRun): void {
  for (const line of r.run.ktapLines) t.diagnostic(line);
  t.diagnostic(`resets the device saw: ${r.resets.join(', ') || '(none)'}`);
  if (!r.run.vm.doneMs || r.run.vm.timedOut) {
    for (const line of r.run.vm.lines.slice(-60)) t.diagnostic(`console: ${line}`);
    for (const line of r.run.vm.stderrLines.slice(-20)) t.diagnostic(`qemu: ${line}`);
    for (const line of r.serverLog.slice(-20)) t.diagnostic(`server: ${line}`);
  }
}

for (const method of ['pm', 'flr'] as const) {
  describe(`a guest resets edu-plus --reset ${method} through vfio-pci`, { timeout: 10 * 60_000 }, () => {
    let r: ResetRun;
    before(async () => {
      r = await runResetGuest(method);
    });

    it(`lists ${method} in reset_method, and VFIO_DEVICE_RESET brings the registers back to power-on values with BAR1 kept`, (t) => {
      showRun(t, r);
      assert.equal(r.run.vm.timedOut, false, 'QEMU hit the hard timeout');
      assert.ok(r.run.vm.doneMs, notDoneReason(r.run.vm));
      const report = r.run.ktap;
      assert.equal(report.results.length, report.plan, `KTAP plan ${report.plan}, ${report.results.length} results`);
      const bad = report.results.filter((x) => !x.ok || x.skip).map((x) => `${x.number} ${x.name}${x.directive ? ` # ${x.directive}` : ''}`);
      assert.deepEqual(bad, [], 'every guest case must pass (a SKIP means a prerequisite failed)');
    });

    it(`the device saw the guest's resets arrive as ${method}, not as DEVICE_RESET`, (t) => {
      showRun(t, r);
      assert.ok(r.resets.includes(method), `no ${method} reset among ${r.resets.join(', ') || 'none'}`);
    });
  });
}

describe('edu-plus with the default --reset none, like QEMU\'s edu', { timeout: 10 * 60_000 }, () => {
  let r: ResetRun;
  before(async () => {
    r = await runResetGuest('none');
  });

  it('offers the guest no reset method: reset_method is empty and the reset case skips for that reason', (t) => {
    showRun(t, r);
    assert.ok(r.run.vm.doneMs, notDoneReason(r.run.vm));
    assert.ok(r.run.ktapLines.some((l) => /# reset_method: \(none\)/.test(l)), 'the guest printed no empty reset_method');
    const offered = r.run.ktap.results.find((x) => x.name === 'reset_method_offered');
    assert.ok(offered?.ok && offered.skip, 'reset_method_offered should SKIP');
    assert.match(offered.directive ?? '', /offers no reset method/);
    assert.deepEqual(r.resets.filter((s) => s === 'flr' || s === 'pm'), [], 'no FLR or PM reset reached the device');
  });
});
