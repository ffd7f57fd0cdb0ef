/**
 * edu parity, end to end: guest-tests/edu_functions runs in a real guest three times —
 * against QEMU's in-process `-device edu` (the reference), against edu-plus with guest RAM
 * shared (DMA straight through the mapped memfd), and against edu-plus with plain guest RAM
 * (DMA carried by DMA_READ/DMA_WRITE messages). The three KTAP result lists must be the same,
 * and the host checks through the trace channel what the device saw: the guest's DMA
 * addresses and lengths on the right path, the interrupts it raised, the overrun it refused.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createEduPlus } from '../../device/edu-plus.ts';
import { createLogger } from '../../protocol/log.ts';
import { VfioUserServer } from '../../protocol/server.ts';
import type { TracedEvent } from '../../protocol/trace-bus.ts';
import { PciIrq } from '../../protocol/wire.ts';
import { TraceClient } from '../../trace/trace-client.ts';
import { startTraceServer } from '../../trace/trace-server.ts';
import { type GuestRun, bootGuestTests, provisionTestVm, type TestVm } from './vm-harness.ts';

interface OurRun {
  readonly run: GuestRun;
  readonly events: readonly TracedEvent[];
  readonly log: string[];
}

const dir = mkdtempSync(join(tmpdir(), 'edu-plus-parity-'));
let serial = 0;

/** Boots the guest against a fresh edu-plus, watching it through the trace channel. */
async function runAgainstOurs(vm: TestVm, sharedMemory: boolean): Promise<OurRun> {
  const log: string[] = [];
  const socketPath = join(dir, `edu-plus-${serial++}.sock`);
  const server = VfioUserServer.listen({
    socketPath,
    device: createEduPlus(),
    log: createLogger({ level: 'info', write: (line) => log.push(line) }),
  });
  const traceServer = await startTraceServer({ socketPath: `${socketPath}.trace`, server, log: createLogger({ write: (l) => log.push(l) }) });
  const trace = await TraceClient.connect(traceServer.socketPath);
  try {
    await trace.subscribe(['dma', 'interrupt', 'reset', 'client']);
    const run = await bootGuestTests(vm, { socketPath, sharedMemory, timeoutMs: 240_000 });
    await server.clientGone();
    return { run, events: [...trace.received], log };
  } finally {
    trace.close();
    await traceServer.close();
    server.close();
  }
}

/** "ok 3 name" / "not ok 3 name" / "ok 3 name # SKIP ..." → comparable result lines. */
function results(run: GuestRun): string[] {
  return run.ktap.results.map((r) => `${r.ok ? 'ok' : 'not ok'} ${r.number} ${r.name}${r.skip ? ' # SKIP' : ''}`);
}

/** The guest's `# dma xfer dir=... src=0x.. dst=0x.. count=0x..` diagnostics. */
function guestTransfers(run: GuestRun): { toRam: boolean; guest: bigint; device: bigint; count: number }[] {
  return run.vm.lines
    .map((l) => /# dma xfer dir=(to-device|to-ram) src=(0x[0-9a-f]+) dst=(0x[0-9a-f]+) count=(0x[0-9a-f]+)/.exec(l))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => {
      const toRam = m[1] === 'to-ram';
      return { toRam, guest: BigInt(toRam ? m[3]! : m[2]!), device: BigInt(toRam ? m[2]! : m[3]!), count: Number(m[4]) };
    });
}

function showFailure(t: { diagnostic(msg: string): void }, r: OurRun | GuestRun): void {
  const run = 'run' in r ? r.run : r;
  for (const l of run.ktapLines) t.diagnostic(l);
  if ('log' in r) for (const l of r.log.filter((x) => / (warn|error) /.test(x)).slice(-30)) t.diagnostic(l);
}

describe('edu parity: the same guest test against QEMU\'s edu and against edu-plus (both DMA paths)', { timeout: 30 * 60_000 }, () => {
  let vm: TestVm;
  let reference: GuestRun;
  let direct: OurRun;
  let messages: OurRun;

  before(async () => {
    vm = await provisionTestVm({ tests: ['edu_functions'] });
    reference = await bootGuestTests(vm, { extraDevices: ['edu'], timeoutMs: 240_000 });
    direct = await runAgainstOurs(vm, true);
    messages = await runAgainstOurs(vm, false);
  });

  after(() => rmSync(dir, { recursive: true, force: true }));

  it('QEMU\'s in-process edu passes every case (the reference run is sound)', (t) => {
    const bad = reference.ktap.results.filter((r) => !r.ok || r.skip);
    if (bad.length) showFailure(t, reference);
    assert.ok(reference.ktap.plan && reference.ktap.plan > 0, 'no KTAP plan from the reference run');
    assert.deepEqual(bad.map((r) => r.name), []);
  });

  it('edu-plus with shared guest RAM (DMA through the mapped memfd) gives the same results', (t) => {
    for (const l of direct.run.ktapLines.filter((x) => /^(not )?ok /.test(x))) t.diagnostic(l);
    if (results(direct.run).join() !== results(reference).join()) showFailure(t, direct);
    assert.deepEqual(results(direct.run), results(reference));
  });

  it('edu-plus with plain guest RAM (DMA_READ/DMA_WRITE messages) gives the same results', (t) => {
    if (results(messages.run).join() !== results(reference).join()) showFailure(t, messages);
    assert.deepEqual(results(messages.run), results(reference));
  });

  for (const [name, get, path] of [
    ['shared RAM', () => direct, 'direct'],
    ['plain RAM', () => messages, 'messages'],
  ] as const) {
    it(`the device saw every DMA the guest programmed, at its guest address and length, via ${path} (${name})`, (t) => {
      const r = get();
      const programmed = guestTransfers(r.run);
      assert.ok(programmed.length >= 3, `the guest printed ${programmed.length} dma xfer diagnostics`);
      const done = r.events.filter((e): e is Extract<TracedEvent, { type: 'dma' }> => e.type === 'dma' && e.ok);
      for (const p of programmed) {
        const seen = done.find((e) => e.guestAddress === p.guest && e.deviceAddress === p.device && e.length === p.count && (e.direction === 'from-device') === p.toRam);
        t.diagnostic(`guest programmed ${p.toRam ? 'device→RAM' : 'RAM→device'} guest 0x${p.guest.toString(16)} len 0x${p.count.toString(16)}: ${seen ? `device did it via ${seen.path}` : 'NOT SEEN'}`);
        assert.ok(seen, `no successful DMA event for guest 0x${p.guest.toString(16)} length ${p.count}`);
        assert.equal(seen.path, path);
      }
    });

    it(`the device refused the overrun, naming the guest address, and raised MSI and INTx (${name})`, () => {
      const r = get();
      const refused = r.events.filter((e): e is Extract<TracedEvent, { type: 'dma' }> => e.type === 'dma' && !e.ok);
      assert.ok(refused.some((e) => e.length === 0x2000 && /outside the buffer/.test(e.error ?? '')), 'the 8 KiB overrun was not refused');
      const delivered = (index: number) => r.events.filter((e) => e.type === 'interrupt' && e.index === index && e.delivered).length;
      assert.ok(delivered(PciIrq.MSI) >= 3, `MSI delivered ${delivered(PciIrq.MSI)} times`);
      assert.ok(delivered(PciIrq.INTX) >= 3, `INTx delivered ${delivered(PciIrq.INTX)} times`);
    });
  }
});
