/**
 * edu-plus: QEMU's educational edu device (1234:11e8) plus BAR1, 64 MiB of prefetchable 64-bit
 * RAM. BAR0 traps (every access is a REGION_READ/WRITE); BAR1 is shared memory the client maps,
 * so guest loads and stores to it never reach this process.
 */
import type { DeviceHost, DeviceModel, IrqDescription, RegionDescription, SharedMemory } from '../protocol/served-device.ts';
import { IrqInfoFlags, PCI_NUM_IRQS, PCI_NUM_REGIONS, PciIrq, PciRegion } from '../protocol/wire.ts';
import { CONFIG_SPACE_SIZE, Cfg, PciConfigSpace, msiCapability64 } from './config-space.ts';
import { DEFAULT_DMA_MASK, EduDmaEngine } from './edu-dma.ts';
import { DmaCmd, EDU_BAR0_SIZE, EDU_ID, EduRegisters } from './edu-registers.ts';

export const EDU_VENDOR_ID = 0x1234;
export const EDU_DEVICE_ID = 0x11e8;
export const EDU_REVISION = 0x10;
/** PCI_CLASS_OTHERS (base class 0xff, sub class 0x00): lspci shows "00ff". */
export const EDU_CLASS_CODE = 0x00ff00;
/** QEMU's default subsystem ids for its own devices. */
const QEMU_SUBSYSTEM_VENDOR = 0x1af4;
const QEMU_SUBSYSTEM_ID = 0x1100;

export const DEFAULT_BAR1_SIZE = 64n << 20n;
const COMMAND_BUS_MASTER = 0x4;
const COMMAND_INTX_DISABLE = 0x400;
const STATUS_INTERRUPT = 0x8;

export interface EduPlusOptions {
  /** BAR1 size in bytes: a power of two, at least 1 MiB. */
  readonly bar1Size?: bigint;
  /** Guest DMA addresses must fit this mask (edu's dma_mask property; default 28 bits). */
  readonly dmaMask?: bigint;
  /** Delay before a DMA transfer runs, in ms (QEMU's edu: 100 of virtual time; default 0). */
  readonly dmaDelayMs?: number;
  /** Back BAR1 with 2 MiB huge pages (the host must have them reserved). */
  readonly hugePages?: boolean;
}

export const MAX_BAR1_SIZE = 1n << 40n;

/** BAR1 must be a power of two (a PCI BAR) from 1 MiB to 1 TiB. */
export function validateBar1Size(size: bigint): void {
  if (size < 1n << 20n || size > MAX_BAR1_SIZE || (size & (size - 1n)) !== 0n) {
    throw new RangeError(`BAR1 size ${size} must be a power of two from 1 MiB to 1 TiB`);
  }
}

/** dma_mask must be a run of low one-bits (2^n - 1), at least 12 bits (one page). */
export function validateDmaMask(mask: bigint): void {
  if (mask < 0xfffn || mask > 0xffff_ffff_ffff_ffffn || (mask & (mask + 1n)) !== 0n) {
    throw new RangeError(`dma_mask 0x${mask.toString(16)} must be 2^n - 1 with n from 12 to 64 (e.g. 0xfffffff for 28 bits)`);
  }
}

export class EduPlus implements DeviceModel {
  readonly name = 'edu-plus';
  readonly numRegions = PCI_NUM_REGIONS;
  readonly numIrqs = PCI_NUM_IRQS;
  readonly resettable = true;
  readonly regions: readonly RegionDescription[];
  readonly irqs: readonly IrqDescription[] = [
    { index: PciIrq.INTX, count: 1, flags: IrqInfoFlags.EVENTFD | IrqInfoFlags.MASKABLE | IrqInfoFlags.AUTOMASKED },
    { index: PciIrq.MSI, count: 1, flags: IrqInfoFlags.EVENTFD | IrqInfoFlags.NORESIZE },
  ];
  readonly config: PciConfigSpace;
  readonly registers: EduRegisters;
  readonly dmaEngine: EduDmaEngine;
  readonly bar1: SharedMemory;
  /** INTx wanted (edu: while irq status is non-zero and MSI is off); see updateIntx. */
  private intxPending = false;
  /** The line as driven: pending and not disabled by the command register. */
  private intxLevel = false;

  constructor(
    private readonly host: DeviceHost,
    opts: EduPlusOptions = {},
  ) {
    const bar1Size = opts.bar1Size ?? DEFAULT_BAR1_SIZE;
    validateBar1Size(bar1Size);
    if (opts.dmaMask !== undefined) validateDmaMask(opts.dmaMask);
    this.config = new PciConfigSpace({
      vendorId: EDU_VENDOR_ID,
      deviceId: EDU_DEVICE_ID,
      revision: EDU_REVISION,
      classCode: EDU_CLASS_CODE,
      subsystemVendorId: QEMU_SUBSYSTEM_VENDOR,
      subsystemId: QEMU_SUBSYSTEM_ID,
      interruptPin: 1,
      bars: [
        { slot: 0, size: EDU_BAR0_SIZE, is64: false, prefetchable: false },
        { slot: 1, size: bar1Size, is64: true, prefetchable: true },
      ],
      capabilities: [msiCapability64()],
    });
    this.registers = new EduRegisters({
      log: host.log,
      raiseInterrupt: () => this.assertInterrupt(),
      lowerInterrupt: () => this.releaseInterrupt(),
      startDma: () => this.startDma(),
    });
    this.dmaEngine = new EduDmaEngine(host, opts.dmaMask ?? DEFAULT_DMA_MASK, opts.dmaDelayMs ?? 0, () => (this.config.u16(Cfg.COMMAND) & COMMAND_BUS_MASTER) !== 0);
    this.bar1 = host.allocateSharedMemory('edu-plus-bar1', bar1Size, { hugePages: opts.hugePages });
    this.regions = [
      { index: PciRegion.BAR0, size: EDU_BAR0_SIZE, readable: true, writable: true },
      // BAR1 is 64-bit, so it also takes slot 2: region 2 stays size 0.
      { index: PciRegion.BAR1, size: bar1Size, readable: true, writable: true, memory: this.bar1 },
      { index: PciRegion.CONFIG, size: BigInt(CONFIG_SPACE_SIZE), readable: true, writable: true },
    ];
  }

  /** The guest enabled MSI: vfio-pci wires an MSI eventfd (and tears INTx down) when it does. */
  private get msiEnabled(): boolean {
    return this.host.interrupts.isEnabled(PciIrq.MSI);
  }

  /** Like edu_raise_irq: an MSI edge when MSI is on, else INTx held asserted. */
  private assertInterrupt(): void {
    if (this.msiEnabled) {
      this.host.interrupts.trigger(PciIrq.MSI);
      return;
    }
    this.intxPending = true;
    this.updateIntx();
  }

  /** Like edu_lower_irq once the status is clear: INTx released (MSI has nothing to release). */
  private releaseInterrupt(): void {
    this.intxPending = false;
    this.updateIntx();
  }

  /**
   * PCI 2.3 INTx: the status register's Interrupt Status bit shows a pending INTx, and the
   * command register's Interrupt Disable bit keeps the line down while the bit stays set. The
   * guest's vfio-pci relies on both (it masks INTx with the disable bit and only claims an
   * interrupt whose status bit is set), as QEMU's PCI core provides them for its own edu.
   */
  private updateIntx(): void {
    this.config.setStatusBits(STATUS_INTERRUPT, this.intxPending);
    const level = this.intxPending && (this.config.u16(Cfg.COMMAND) & COMMAND_INTX_DISABLE) === 0;
    if (level === this.intxLevel) return;
    this.intxLevel = level;
    this.host.interrupts.setLevel(PciIrq.INTX, level);
  }

  private startDma(): void {
    const r = this.registers;
    this.dmaEngine.start(
      { src: r.dmaSrc, dst: r.dmaDst, count: r.dmaCount, toRam: (r.dmaCmd & DmaCmd.TO_RAM) !== 0n },
      (error) => r.completeDma(error),
    );
  }

  read(region: number, offset: number, into: Uint8Array): void {
    if (region === PciRegion.CONFIG) return this.config.read(offset, into);
    if (region === PciRegion.BAR0) {
      const v = this.registers.read(offset, into.length);
      const view = new DataView(into.buffer, into.byteOffset, into.length);
      if (into.length === 8) view.setBigUint64(0, v, true);
      else if (into.length === 4) view.setUint32(0, Number(v), true);
      else for (let i = 0; i < into.length; i++) into[i] = Number((v >> BigInt(8 * i)) & 0xffn);
      return;
    }
    this.host.log.warn(`guest error: read of region ${region} which traps nothing`);
    into.fill(0xff);
  }

  write(region: number, offset: number, data: Uint8Array): void {
    if (region === PciRegion.CONFIG) {
      this.config.write(offset, data);
      // The Interrupt Disable bit gates the line.
      if (offset <= Cfg.COMMAND + 1 && offset + data.length > Cfg.COMMAND) this.updateIntx();
      return;
    }
    if (region === PciRegion.BAR0) {
      const view = new DataView(data.buffer, data.byteOffset, data.length);
      let v = 0n;
      if (data.length === 8) v = view.getBigUint64(0, true);
      else if (data.length === 4) v = BigInt(view.getUint32(0, true));
      else for (let i = data.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(data[i]!);
      this.registers.write(offset, data.length, v);
      return;
    }
    this.host.log.warn(`guest error: write to region ${region} which traps nothing, ignored`);
  }

  /**
   * Registers and config space return to power-on values. BAR1 keeps its contents: it models
   * RAM on the card, which a function reset does not clear (and tests can inspect it after).
   */
  reset(): void {
    this.dmaEngine.reset();
    this.registers.reset();
    this.config.reset();
    this.intxPending = false;
    this.updateIntx();
    this.host.trace.emit({ type: 'reset', source: 'device' });
    this.host.log.info('reset: registers and config space back to power-on values; BAR1 contents kept');
  }

  /**
   * Migration state: config space and registers. BAR1 is not included: it is shared memory
   * the destination maps from its own memfd, and 64 MiB per snapshot would dwarf the rest;
   * a migration of BAR1 contents belongs to the RAM-copy path, not the device state.
   */
  saveState(): unknown {
    const r = this.registers;
    return {
      device: this.name,
      version: STATE_VERSION,
      config: this.config.snapshot(),
      registers: Object.fromEntries([
        ...REGISTER_FIELDS.map((f) => [f, r[f]]),
        ...DMA_FIELDS.map((f) => [f, r[f].toString()]),
      ]),
    };
  }

  registerState(): Record<string, number | bigint | boolean | string> {
    const r = this.registers;
    return {
      id: EDU_ID,
      liveness: r.liveness,
      factorial: r.factorial,
      status: r.status,
      irqStatus: r.irqStatus,
      dmaSrc: r.dmaSrc,
      dmaDst: r.dmaDst,
      dmaCount: r.dmaCount,
      dmaCmd: r.dmaCmd,
      dmaError: r.dmaError,
      dmaBusy: this.dmaEngine.busy,
      msiEnabled: this.msiEnabled,
      intxLevel: this.intxLevel,
    };
  }

  loadState(state: unknown): void {
    const s = state as { device?: unknown; version?: unknown; config?: unknown; registers?: Record<string, unknown> };
    if (s?.device !== this.name || s.version !== STATE_VERSION) {
      throw new Error(`state is not ${this.name} version ${STATE_VERSION} (got ${String(s?.device)} ${String(s?.version)})`);
    }
    if (!(s.config instanceof Uint8Array)) throw new Error('state has no config space bytes');
    const regs = s.registers ?? {};
    for (const f of REGISTER_FIELDS) if (typeof regs[f] !== 'number') throw new Error(`state register ${f} is not a number`);
    for (const f of DMA_FIELDS) if (typeof regs[f] !== 'string' || !/^\d+$/.test(regs[f] as string)) throw new Error(`state register ${f} is not a decimal string`);
    this.config.restore(s.config);
    const r = this.registers;
    for (const f of REGISTER_FIELDS) r[f] = (regs[f] as number) >>> 0;
    for (const f of DMA_FIELDS) r[f] = BigInt(regs[f] as string);
  }
}

/** The register file as plain data (migration state, version 1). */
const REGISTER_FIELDS = ['liveness', 'factorial', 'status', 'irqStatus'] as const;
const DMA_FIELDS = ['dmaSrc', 'dmaDst', 'dmaCount', 'dmaCmd'] as const;
const STATE_VERSION = 1;

export function createEduPlus(opts: EduPlusOptions = {}) {
  return (host: DeviceHost): EduPlus => new EduPlus(host, opts);
}
