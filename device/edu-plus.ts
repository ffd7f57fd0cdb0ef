/**
 * edu-plus: QEMU's educational edu device (1234:11e8) plus BAR1, 64 MiB of prefetchable 64-bit
 * RAM. BAR0 traps (every access is a REGION_READ/WRITE); BAR1 is shared memory the client maps,
 * so guest loads and stores to it never reach this process. Everything PCI (config space, BAR
 * sizing, INTx/MSI, resets) comes from the PCI function layer in pci/; this file is edu.
 */
import type { DeviceHost } from '../protocol/served-device.ts';
import type { CapabilityDeclaration, PciFunctionDeclaration } from './pci/declaration.ts';
import { PciFunction, type ResetCause } from './pci/function.ts';
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

/**
 * How a guest may reset the function through its own vfio-pci (VFIO_DEVICE_RESET):
 * none: like edu, a conventional function without FLR or PM capabilities — the guest kernel
 *   offers no reset method for it on a root bus;
 * flr: a PCI Express capability with Function Level Reset;
 * pm: a PCI Power Management capability without No_Soft_Reset (D3hot→D0 resets).
 */
export type EduResetMethod = 'none' | 'flr' | 'pm';
export const RESET_METHODS: readonly EduResetMethod[] = ['none', 'flr', 'pm'];

export interface EduPlusOptions {
  /** BAR1 size in bytes: a power of two, at least 1 MiB. */
  readonly bar1Size?: bigint;
  /** Guest DMA addresses must fit this mask (edu's dma_mask property; default 28 bits). */
  readonly dmaMask?: bigint;
  /** Delay before a DMA transfer runs, in ms (QEMU's edu: 100 of virtual time; default 0). */
  readonly dmaDelayMs?: number;
  /** Back BAR1 with 2 MiB huge pages (the host must have them reserved). */
  readonly hugePages?: boolean;
  /** The reset method offered to the guest (default none, as edu). */
  readonly reset?: EduResetMethod;
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

/** The reset method's capability, after edu's MSI (which keeps edu's offset, 0x40). */
function resetCapabilities(reset: EduResetMethod): CapabilityDeclaration[] {
  if (reset === 'pm') return [{ kind: 'pm', softReset: true }];
  if (reset === 'flr') return [{ kind: 'pcie', flr: true }];
  return [];
}

/** edu's PCI identity (pci_edu_realize, edu_class_init) with BAR1 and the chosen reset method. */
export function eduPlusDeclaration(opts: EduPlusOptions = {}): PciFunctionDeclaration {
  const reset = opts.reset ?? 'none';
  if (!RESET_METHODS.includes(reset)) throw new RangeError(`reset method "${reset}" is not one of ${RESET_METHODS.join(', ')}`);
  return {
    name: 'edu-plus',
    vendorId: EDU_VENDOR_ID,
    deviceId: EDU_DEVICE_ID,
    revision: EDU_REVISION,
    classCode: EDU_CLASS_CODE,
    subsystemVendorId: QEMU_SUBSYSTEM_VENDOR,
    subsystemId: QEMU_SUBSYSTEM_ID,
    interruptPin: 1,
    bars: [
      { index: 0, size: EDU_BAR0_SIZE, backing: 'trapped' },
      { index: 1, size: opts.bar1Size ?? DEFAULT_BAR1_SIZE, is64: true, prefetchable: true, backing: 'memory', hugePages: opts.hugePages },
    ],
    // msi_init(pdev, 0, 1, true, false): one vector, 64-bit, no per-vector masking.
    capabilities: [{ kind: 'msi', vectors: 1, address64: true }, ...resetCapabilities(reset)],
  };
}

export class EduPlus extends PciFunction {
  readonly registers: EduRegisters;
  readonly dmaEngine: EduDmaEngine;
  readonly resetMethod: EduResetMethod;

  constructor(host: DeviceHost, opts: EduPlusOptions = {}) {
    const bar1Size = opts.bar1Size ?? DEFAULT_BAR1_SIZE;
    validateBar1Size(bar1Size);
    if (opts.dmaMask !== undefined) validateDmaMask(opts.dmaMask);
    super(host, eduPlusDeclaration(opts));
    this.resetMethod = opts.reset ?? 'none';
    this.registers = new EduRegisters({
      log: host.log,
      raiseInterrupt: () => this.assertInterrupt(),
      lowerInterrupt: () => this.releaseInterrupt(),
      startDma: () => this.startDma(),
    });
    this.dmaEngine = new EduDmaEngine(host, opts.dmaMask ?? DEFAULT_DMA_MASK, opts.dmaDelayMs ?? 0, () => this.busMasterEnabled);
  }

  /** BAR1: RAM on the card, shared with the client. */
  get bar1() {
    return this.barMemory(1);
  }

  /** Like edu_raise_irq: an MSI edge when MSI is on, else INTx held asserted. */
  private assertInterrupt(): void {
    this.raiseInterrupt();
  }

  /** Like edu_lower_irq once the status is clear: INTx released (MSI has nothing to release). */
  private releaseInterrupt(): void {
    this.setIntx(false);
  }

  private startDma(): void {
    const r = this.registers;
    this.dmaEngine.start({ src: r.dmaSrc, dst: r.dmaDst, count: r.dmaCount, toRam: (r.dmaCmd & DmaCmd.TO_RAM) !== 0n }, (error) => {
      // Completion runs from a promise: whatever goes wrong raising the interrupt must be
      // logged here, or it becomes an unhandled rejection that ends the process.
      try {
        r.completeDma(error);
      } catch (err) {
        this.host.log.error(`DMA completion (status and interrupt) failed: ${(err as Error).message}`);
      }
    });
  }

  /**
   * BAR0 only (BAR1 is all shared memory). QEMU's memory core lets only 4- and 8-byte
   * accesses reach edu; EduRegisters applies edu's size rules to the rest.
   */
  protected barRead(_bar: number, offset: number, size: number): bigint {
    return this.registers.read(offset, size);
  }

  protected barWrite(_bar: number, offset: number, size: number, value: bigint): void {
    this.registers.write(offset, size, value);
  }

  /** The DMA engine forgets its buffer and any transfer in flight; the registers go to zero. */
  protected resetRegisters(_cause: ResetCause): void {
    this.dmaEngine.reset();
    this.registers.reset();
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
      intxLevel: this.intxAsserted,
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
