/**
 * Two vfio-user devices in one guest, served from one process: edu-plus and the GPU-like
 * device (its default 4 GiB VRAM BAR) attached to the same VM. The guest finds both, binds
 * each to vfio-pci, opens each through its own container, reads each one's identification
 * register, and holds both open at once in different IOMMU groups
 * (guest-tests/devices_present.c). The host checks each server had its own client.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { createEduPlus } from '../../device/edu-plus.ts';
import { createGpu } from '../../device/gpu.ts';
import { createLogger } from '../../protocol/log.ts';
import { VfioUserServer } from '../../protocol/server.ts';
import { vfioUserDevice } from '../../qemu-configs/qemu-command.ts';
import { type GuestRun, bootGuestTests, provisionTestVm, notDoneReason } from './vm-harness.ts';

describe('edu-plus and gpu in one VM', { timeout: 10 * 60_000 }, () => {
  let run: GuestRun;
  const serverLog: string[] = [];
  const clients = { edu: 0, gpu: 0 };
  before(async () => {
    const vm = await provisionTestVm({ tests: ['devices_present'] });
    const dir = mkdtempSync(join(tmpdir(), 'edu-plus-multi-'));
    const log = createLogger({ level: 'info', write: (line) => serverLog.push(line) });
    const edu = VfioUserServer.listen({ socketPath: join(dir, 'edu-plus.sock'), device: createEduPlus(), log: log.child('edu-plus') });
    const gpu = VfioUserServer.listen({ socketPath: join(dir, 'gpu.sock'), device: createGpu(), log: log.child('gpu') });
    edu.trace.subscribe((e) => void (e.type === 'client' && e.event === 'connect' && clients.edu++));
    gpu.trace.subscribe((e) => void (e.type === 'client' && e.event === 'connect' && clients.gpu++));
    try {
      run = await bootGuestTests(vm, { socketPath: edu.socketPath, extraDevices: [vfioUserDevice(gpu.socketPath)], timeoutMs: 240_000 });
      await Promise.all([edu.clientGone(), gpu.clientGone()]);
    } finally {
      edu.close();
      gpu.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('shows the guest both devices, each bound to vfio-pci and opened, in their own IOMMU groups', (t) => {
    for (const line of run.ktapLines) t.diagnostic(line);
    if (!run.vm.doneMs || run.vm.timedOut) {
      for (const line of run.vm.lines.slice(-60)) t.diagnostic(`console: ${line}`);
      for (const line of run.vm.stderrLines.slice(-20)) t.diagnostic(`qemu: ${line}`);
      for (const line of serverLog.slice(-20)) t.diagnostic(`server: ${line}`);
    }
    assert.equal(run.vm.timedOut, false, 'QEMU hit the hard timeout');
    assert.ok(run.vm.doneMs, notDoneReason(run.vm));
    const report = run.ktap;
    assert.equal(report.results.length, report.plan, `KTAP plan ${report.plan}, ${report.results.length} results`);
    const bad = report.results.filter((x) => !x.ok || x.skip).map((x) => `${x.number} ${x.name}${x.directive ? ` # ${x.directive}` : ''}`);
    assert.deepEqual(bad, [], 'every case must pass: both devices are attached, so a SKIP is a failure here');
    assert.deepEqual(clients, { edu: 1, gpu: 1 }, 'QEMU connected once to each server');
  });
});
