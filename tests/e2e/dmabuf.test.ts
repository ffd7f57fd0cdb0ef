/**
 * The DMABUF suite (guest-tests/dmabuf) in a real guest against edu-plus. On the provisioned
 * stock Debian 7.3 kernel, exporting works and must pass, while mmap, memory attributes,
 * revoke and the lifetime cases need the DMABUF-mmap series: they must report SKIP with a
 * reason — neither pass nor fail. On a kernel that has the series, they must pass. Whatever
 * the kernel, every value the guest wrote through a mapping must sit at the BAR offset its
 * ranges imply, read back through the server's own mapping of BAR1: a wrong PFN calculation
 * in the kernel is caught by the device, not only by aliasing inside the guest.
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
import { type GuestRun, bootGuestTests, provisionTestVm } from './vm-harness.ts';

/**
 * Cases every 7.x kernel runs: DMABUF export (VFIO_DEVICE_FEATURE_DMA_BUF) and the device fd's
 * own BAR mmaps (non-zero offsets, refusals past the end, revoked while memory is disabled and
 * restored after), which need no DMABUF feature at all.
 */
const STOCK_CASES =
  /^(open_device|feature_probe|export_.*|device_mmap_.*|lifetime_memory_(disable_revokes|enable_restores)_device_mmap|cleanup)$/;

describe('DMABUF suite on the stock kernel', { timeout: 30 * 60_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'edu-plus-dmabuf-'));
  let server: VfioUserServer;
  let run: GuestRun;

  before(async () => {
    const vm = await provisionTestVm({ tests: ['dmabuf'] });
    server = VfioUserServer.listen({ socketPath: join(dir, 'edu-plus.sock'), device: createEduPlus(), log: createLogger({ write: () => {} }) });
    run = await bootGuestTests(vm, { socketPath: server.socketPath, timeoutMs: 240_000 });
    await server.clientGone();
  });

  after(() => {
    server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs the whole suite (every planned case reports)', (t) => {
    for (const l of run.ktapLines) t.diagnostic(l);
    assert.ok(run.ktap.plan && run.ktap.plan >= 50, `plan ${run.ktap.plan}`);
    assert.equal(run.ktap.results.length, run.ktap.plan);
  });

  it('passes every export case and every device-fd mmap case', () => {
    const stockCases = run.ktap.results.filter((r) => STOCK_CASES.test(r.name));
    assert.ok(stockCases.length >= 16, `${stockCases.length} cases every kernel runs`);
    assert.deepEqual(stockCases.filter((r) => !r.ok || r.skip).map((r) => `${r.name} ${r.directive ?? ''}`), []);
  });

  it('reports what the kernel lacks as SKIP with a reason, and fails nothing', () => {
    const stock = run.vm.lines.some((l) => /mmap of DMABUFs not supported by this kernel/.test(l));
    const failed = run.ktap.results.filter((r) => !r.ok);
    assert.deepEqual(failed.map((r) => `${r.name} ${r.directive ?? ''}`), []);
    const rest = run.ktap.results.filter((r) => !STOCK_CASES.test(r.name));
    if (stock) {
      // The provisioned kernel has no DMABUF mmap: none of these may claim a pass.
      assert.deepEqual(rest.filter((r) => !r.skip).map((r) => r.name), []);
      for (const r of rest) assert.match(r.directive ?? '', /^SKIP .{10,}/, `${r.name} skips without a reason`);
    } else {
      assert.ok(rest.filter((r) => !r.skip).length > 0, 'a kernel with DMABUF mmap ran none of the mmap cases');
    }
  });

  it('can see which cache mode the kernel gives BAR1 pages (the evidence memattr_wc_installed judges by)', (t) => {
    // x86 PAT's reservations decide the cache mode of every BAR page mapped at fault time; the
    // guest prints the one covering BAR1 before and after vfio-pci opens the device.
    const pat = run.vm.lines.filter((l) => /# x86 PAT/.test(l));
    for (const l of pat) t.diagnostic(l.trim());
    assert.equal(pat.length, 2, 'feature_probe and open_device each print the PAT state of BAR1');
    assert.ok(pat.every((l) => /so PFNs there are mapped [a-z-]+/.test(l)), 'PAT list readable in the guest');
  });

  it('finds every value the guest wrote through a mapping at the BAR offset its ranges imply', (t) => {
    const last = new Map<string, number>();
    for (const l of run.vm.lines) {
      const m = /# bar-write region=(\d+) offset=0x([0-9a-f]+) value=0x([0-9a-f]+)/.exec(l);
      if (m) last.set(`${m[1]}:${m[2]}`, Number.parseInt(m[3]!, 16));
    }
    t.diagnostic(`${last.size} distinct BAR locations written through DMABUF or VFIO mappings`);
    const device = server.device as EduPlus;
    const wrong: string[] = [];
    for (const [key, value] of last) {
      const [region, offHex] = key.split(':');
      const offset = Number.parseInt(offHex!, 16);
      const seen = Number(region) === PciRegion.BAR1
        ? new DataView(device.bar1.bytes(offset, 4).slice().buffer).getUint32(0, true)
        : ~device.registers.liveness >>> 0; // BAR0 writes are to the liveness register (0x04)
      if (seen !== value) wrong.push(`region ${region} +0x${offHex}: guest wrote 0x${value.toString(16)}, device holds 0x${seen.toString(16)}`);
    }
    assert.deepEqual(wrong, []);
  });
});
