/**
 * The DMABUF suite (guest-tests/dmabuf) in one real guest with two devices attached, each
 * served by its own server: edu-plus (RAM in BAR1, 64 MiB) and the GPU-like device (VRAM in
 * BAR2, 4 GiB, sparse). The suite runs once per device (`dmabuf 1234:11e8`, `dmabuf
 * 1af4:10f0`), and each run finds the other device for the cross-device cases.
 *
 * On the provisioned stock Debian 7.3 kernel, exporting, the device fd's own mappings (a
 * 1 GiB PUD one of the VRAM included) and the cross-device export case work and must pass,
 * while mmap of DMABUFs, memory attributes, revoke and the lifetime cases need the DMABUF-mmap
 * series: they must report SKIP with the kernel's reason — neither pass nor fail, and never
 * "no second device". On a kernel that has the series, they must pass. Whatever the kernel,
 * every value the guest wrote through a mapping must sit at the BAR offset its ranges imply,
 * read back through the server's own mapping of that BAR: a wrong PFN calculation in the
 * kernel is caught by the device, not only by aliasing inside the guest.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Verdict, judge, programCommand } from '../../cli/vm-report.ts';
import { createEduPlus, type EduPlus } from '../../device/edu-plus.ts';
import { createGpu, GPU_DEVICE_ID, GPU_VENDOR_ID, type Gpu, GpuReg, VRAM_BAR } from '../../device/gpu.ts';
import { createLogger } from '../../protocol/log.ts';
import { VfioUserServer } from '../../protocol/server.ts';
import { PciRegion } from '../../protocol/wire.ts';
import { vfioUserDevice } from '../../qemu-configs/qemu-command.ts';
import { type GuestRun, bootGuestTests, provisionTestVm } from './vm-harness.ts';

/**
 * Cases every 7.x kernel runs: DMABUF export (VFIO_DEVICE_FEATURE_DMA_BUF), the device fd's
 * own BAR mmaps (non-zero offsets, refusals past the end, a 1 GiB mapping, revoked while
 * memory is disabled and restored after), which need no DMABUF feature at all, and exports of
 * two devices alive at once.
 */
const STOCK_CASES =
  /^(open_device|feature_probe|export_.*|device_mmap_.*|huge_pud_device_mmap_1g|cross_device_exports_independent|lifetime_memory_(disable_revokes|enable_restores)_device_mmap|cleanup)$/;

/** What one device's run is, and how the host reads back what the guest wrote. */
interface DeviceRun {
  readonly program: string;
  readonly command: string;
  readonly ramRegion: number;
  /**
   * Stock cases this device cannot run, with the reason the suite must give (the device's
   * layout, not the kernel): edu-plus has no BAR beyond BAR0 and BAR1, and no 1 GiB BAR.
   */
  readonly deviceSkips: Record<string, RegExp>;
  /** The 4 bytes at a RAM BAR offset, and the value BAR0's read/write register holds. */
  ram(offset: number): number;
  register(offset: number): number;
}

const u32 = (bytes: Uint8Array) => new DataView(bytes.slice().buffer).getUint32(0, true);
const hex4 = (n: number) => n.toString(16).padStart(4, '0');

describe('DMABUF suite on the stock kernel, edu-plus and gpu in one VM', { timeout: 30 * 60_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'edu-plus-dmabuf-'));
  const log = createLogger({ write: () => {} });
  let edu: VfioUserServer;
  let gpu: VfioUserServer;
  let run: GuestRun;
  let verdict: Verdict;
  let devices: DeviceRun[];

  before(async () => {
    devices = [
      {
        program: 'dmabuf-edu-plus',
        command: '/tests/dmabuf 1234:11e8',
        ramRegion: PciRegion.BAR1,
        deviceSkips: {
          export_other_bars_whole: /^SKIP edu-plus has no BAR besides BAR0 and the RAM BAR$/,
          huge_pud_device_mmap_1g: /^SKIP the RAM BAR1 of edu-plus is 0x4000000 bytes: no 1 GiB range/,
        },
        ram: (offset) => u32((edu.device as EduPlus).bar1.bytes(offset, 4)),
        // BAR0 writes go to the liveness register (0x04), which reads back inverted.
        register: (offset) => (offset === 4 ? ~(edu.device as EduPlus).registers.liveness >>> 0 : Number.NaN),
      },
      {
        program: 'dmabuf-gpu',
        command: `/tests/dmabuf ${hex4(GPU_VENDOR_ID)}:${hex4(GPU_DEVICE_ID)}`,
        ramRegion: VRAM_BAR,
        deviceSkips: {},
        ram: (offset) => u32((gpu.device as Gpu).vram.bytes(offset, 4)),
        register: (offset) => (offset === GpuReg.SCRATCH ? (gpu.device as Gpu).scratch : Number.NaN),
      },
    ];
    const commands = devices.map((d) => programCommand(d.program, d.command));
    const vm = await provisionTestVm({ tests: ['dmabuf'], name: 'dmabuf-two-devices', commands });
    edu = VfioUserServer.listen({ socketPath: join(dir, 'edu-plus.sock'), device: createEduPlus(), log });
    gpu = VfioUserServer.listen({ socketPath: join(dir, 'gpu.sock'), device: createGpu(), log });
    run = await bootGuestTests(vm, { socketPath: edu.socketPath, extraDevices: [vfioUserDevice(gpu.socketPath)], timeoutMs: 600_000 });
    await Promise.all([edu.clientGone(), gpu.clientGone()]);
    verdict = judge({
      lines: run.vm.lines, tests: devices.map((d) => d.program), timedOut: run.vm.timedOut,
      initSeen: run.vm.initMs !== undefined, doneSeen: run.vm.doneMs !== undefined,
    });
  });

  after(() => {
    edu?.close();
    gpu?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const program = (d: DeviceRun) => verdict.programs.find((p) => p.name === d.program)!;

  it('runs the whole suite against each device (every planned case reports)', (t) => {
    for (const l of run.ktapLines) t.diagnostic(l);
    t.diagnostic(`VM wall time ${(run.vm.durationMs / 1000).toFixed(1)} s`);
    assert.deepEqual(verdict.problems, []);
    for (const d of devices) {
      const p = program(d);
      assert.deepEqual(p.problems, [], d.program);
      assert.ok(p.cases.length >= 55, `${d.program}: ${p.cases.length} cases`);
    }
  });

  it('passes every case the stock kernel supports, on each device', () => {
    for (const d of devices) {
      const stock = program(d).cases.filter((r) => STOCK_CASES.test(r.name) && !(r.name in d.deviceSkips));
      assert.ok(stock.length >= 18, `${d.program}: ${stock.length} cases every kernel runs`);
      assert.deepEqual(stock.filter((r) => !r.ok || r.skip).map((r) => `${d.program}: ${r.name} ${r.directive ?? ''}`), []);
      for (const [name, reason] of Object.entries(d.deviceSkips)) {
        const r = program(d).cases.find((c) => c.name === name);
        assert.match(r?.directive ?? '(missing)', reason, `${d.program}: ${name} skips for the device's layout`);
      }
    }
  });

  it('reports what the kernel lacks as SKIP with the kernel\'s reason, and fails nothing', () => {
    const stockKernel = run.vm.lines.some((l) => /mmap of DMABUFs not supported by this kernel/.test(l));
    for (const d of devices) {
      const cases = program(d).cases;
      assert.deepEqual(cases.filter((r) => !r.ok).map((r) => `${d.program}: ${r.name} ${r.directive ?? ''}`), []);
      // Both devices are attached: no case may skip for want of the other one.
      assert.deepEqual(cases.filter((r) => /second device/.test(r.directive ?? '')).map((r) => `${r.name} ${r.directive}`), []);
      const rest = cases.filter((r) => !STOCK_CASES.test(r.name));
      if (stockKernel) {
        // The provisioned kernel has no DMABUF mmap: none of these may claim a pass.
        assert.deepEqual(rest.filter((r) => !r.skip).map((r) => `${d.program}: ${r.name}`), []);
        for (const r of rest) assert.match(r.directive ?? '', /^SKIP .{10,}/, `${d.program}: ${r.name} skips without a reason`);
      } else {
        assert.ok(rest.filter((r) => !r.skip).length > 0, `${d.program}: a kernel with DMABUF mmap ran none of the mmap cases`);
      }
    }
  });

  it('installs a 1 GiB (PUD) entry for a 1 GiB-aligned device mapping of the gpu\'s VRAM', (t) => {
    const gpuRun = program(devices[1]!);
    for (const l of gpuRun.output.filter((x) => /1 GiB|order/.test(x))) t.diagnostic(l.trim());
    const pud = gpuRun.cases.find((r) => r.name === 'huge_pud_device_mmap_1g');
    assert.ok(pud && pud.ok && !pud.skip, `huge_pud_device_mmap_1g: ${pud?.directive ?? 'missing'}`);
  });

  it('can see which cache mode the kernel gives RAM BAR pages (the evidence memattr_wc_installed judges by)', (t) => {
    // x86 PAT's reservations decide the cache mode of every BAR page mapped at fault time; the
    // guest prints the one covering the RAM BAR before and after vfio-pci opens the device.
    for (const d of devices) {
      const pat = program(d).output.filter((l) => /# x86 PAT/.test(l));
      for (const l of pat) t.diagnostic(`${d.program}: ${l.trim()}`);
      assert.equal(pat.length, 2, `${d.program}: open_device and feature_probe each print the PAT state of the RAM BAR`);
      assert.ok(pat.every((l) => /so PFNs there are mapped [a-z-]+/.test(l)), 'PAT list readable in the guest');
    }
  });

  it('finds every value the guest wrote through a mapping at the BAR offset its ranges imply, in that device', (t) => {
    const wrong: string[] = [];
    for (const d of devices) {
      const last = new Map<string, number>();
      for (const l of program(d).output) {
        const m = /# bar-write region=(\d+) offset=0x([0-9a-f]+) value=0x([0-9a-f]+)/.exec(l);
        if (m) last.set(`${m[1]}:${m[2]}`, Number.parseInt(m[3]!, 16));
      }
      t.diagnostic(`${d.program}: ${last.size} distinct BAR locations written through DMABUF or VFIO mappings`);
      assert.ok(last.size > 0, `${d.program} wrote nothing the host could check`);
      for (const [key, value] of last) {
        const [region, offHex] = key.split(':');
        const offset = Number.parseInt(offHex!, 16);
        const seen = Number(region) === d.ramRegion ? d.ram(offset) : Number(region) === 0 ? d.register(offset) : Number.NaN;
        if (seen !== value) wrong.push(`${d.program}: region ${region} +0x${offHex}: guest wrote 0x${value.toString(16)}, device holds 0x${seen.toString(16)}`);
      }
    }
    assert.deepEqual(wrong, []);
  });
});
