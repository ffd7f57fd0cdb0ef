/**
 * gpu: a GPU-like PCI function for exercising the kernel paths a real GPU takes through
 * vfio-pci (DMABUF export of a large VRAM BAR, 1 GiB mappings, MSI-X, FLR) — it renders
 * nothing. Identity 1af4:10f0: QEMU's PCI id list leaves 1af4:10f0–10ff to experimental use
 * without registration, so it is nobody's real GPU and no guest driver claims it (virtio-pci
 * matches the vendor but refuses ids past 0x107f). Class 0x030200, a 3D controller: a display
 * class, yet not VGA, so neither the VGA arbiter nor a console driver takes an interest.
 *
 * BAR0 (16 KiB, trapped): registers, the MSI-X table at 0x2000 and its PBA at 0x3000.
 * BAR2 (default 4 GiB, 64-bit prefetchable, sparse memfd): VRAM. Its size is a power of two of
 *   at least 1 GiB, so its guest address is 1 GiB aligned and a 1 GiB (PUD) mapping can cover it.
 * BAR4 (4 KiB, trapped): doorbells, one dword each; a ring is counted, logged, traced (as every
 *   trapped write) and raises the doorbell's MSI-X vector when the guest enabled that.
 * A PCI Express capability with FLR: any reset clears the registers and keeps VRAM.
 */
import type { DeviceHost } from '../protocol/served-device.ts';
import type { PciFunctionDeclaration } from './pci/declaration.ts';
import { PciFunction, type ResetCause } from './pci/function.ts';

export const GPU_VENDOR_ID = 0x1af4;
export const GPU_DEVICE_ID = 0x10f0;
/** PCI_CLASS_DISPLAY_3D. */
export const GPU_CLASS_CODE = 0x030200;
export const GPU_ID = 0x67707501; // "gpu" and a version, read at BAR0+0
export const GPU_VECTORS = 16;
export const GPU_DOORBELLS = 16;
export const DEFAULT_VRAM_SIZE = 4n << 30n;
const GiB = 1n << 30n;

export const VRAM_BAR = 2;
export const DOORBELL_BAR = 4;

/** BAR0 register offsets. */
export const GpuReg = {
  /** Read-only GPU_ID. */
  ID: 0x00,
  /** Read-only, 64-bit: VRAM size in bytes. */
  VRAM_SIZE: 0x08,
  /** Read/write, 0 after reset. */
  SCRATCH: 0x10,
  /** Read/write bit mask: doorbell n raises vector n when bit n is set. */
  DOORBELL_IRQ_ENABLE: 0x14,
  /** Write-only: raises the vector written (a software interrupt, for tests). */
  IRQ_RAISE: 0x18,
  /** Write-only: releases INTx, which is used only while MSI-X is off. */
  IRQ_ACK: 0x1c,
  /** Read-only, per doorbell n at +8n: rings since reset, then the last value written. */
  DOORBELL_COUNT: 0x100,
  DOORBELL_LAST: 0x104,
  MSIX_TABLE: 0x2000,
  MSIX_PBA: 0x3000,
} as const;

export interface GpuOptions {
  /** VRAM (BAR2) size: a power of two from 1 GiB to 1 TiB. */
  readonly vramSize?: bigint;
  readonly hugePages?: boolean;
}

export function validateVramSize(size: bigint): void {
  if (size < GiB || size > 1n << 40n || (size & (size - 1n)) !== 0n) {
    throw new RangeError(`VRAM size ${size} must be a power of two from 1 GiB to 1 TiB (so a 1 GiB mapping can cover it)`);
  }
}

export function gpuDeclaration(opts: GpuOptions = {}): PciFunctionDeclaration {
  return {
    name: 'gpu',
    vendorId: GPU_VENDOR_ID,
    deviceId: GPU_DEVICE_ID,
    revision: 1,
    classCode: GPU_CLASS_CODE,
    subsystemVendorId: 0x1af4,
    subsystemId: 0x1100,
    interruptPin: 1,
    bars: [
      { index: 0, size: 16n << 10n, backing: 'trapped' },
      { index: VRAM_BAR, size: opts.vramSize ?? DEFAULT_VRAM_SIZE, is64: true, prefetchable: true, backing: 'memory', hugePages: opts.hugePages },
      { index: DOORBELL_BAR, size: 4096n, backing: 'trapped' },
    ],
    capabilities: [
      { kind: 'msix', vectors: GPU_VECTORS, table: { bar: 0, offset: BigInt(GpuReg.MSIX_TABLE) }, pba: { bar: 0, offset: BigInt(GpuReg.MSIX_PBA) } },
      { kind: 'pcie', flr: true },
    ],
  };
}

export class Gpu extends PciFunction {
  readonly vramSize: bigint;
  scratch = 0;
  doorbellIrqEnable = 0;
  readonly ringCounts = new Array<number>(GPU_DOORBELLS).fill(0);
  readonly lastRings = new Array<number>(GPU_DOORBELLS).fill(0);

  constructor(host: DeviceHost, opts: GpuOptions = {}) {
    const vramSize = opts.vramSize ?? DEFAULT_VRAM_SIZE;
    validateVramSize(vramSize);
    super(host, gpuDeclaration({ ...opts, vramSize }));
    this.vramSize = vramSize;
  }

  get vram() {
    return this.barMemory(VRAM_BAR);
  }

  protected barRead(bar: number, offset: number, size: number): bigint {
    if (bar === DOORBELL_BAR) return 0n; // doorbells are write-only
    const perBell = offset - GpuReg.DOORBELL_COUNT;
    if (perBell >= 0 && perBell < GPU_DOORBELLS * 8 && size === 4) {
      const n = perBell >> 3;
      return BigInt((perBell & 7) === 0 ? this.ringCounts[n]! : this.lastRings[n]!);
    }
    switch (offset) {
      case GpuReg.ID:
        return BigInt(GPU_ID);
      case GpuReg.VRAM_SIZE:
        return size === 8 ? this.vramSize : this.vramSize & 0xffff_ffffn;
      case GpuReg.VRAM_SIZE + 4:
        return this.vramSize >> 32n;
      case GpuReg.SCRATCH:
        return BigInt(this.scratch);
      case GpuReg.DOORBELL_IRQ_ENABLE:
        return BigInt(this.doorbellIrqEnable);
      default:
        return 0n;
    }
  }

  protected barWrite(bar: number, offset: number, size: number, value: bigint): void {
    const v = Number(value & 0xffff_ffffn);
    if (bar === DOORBELL_BAR) return this.ring(offset, size, v);
    if (offset === GpuReg.SCRATCH) this.scratch = v;
    else if (offset === GpuReg.DOORBELL_IRQ_ENABLE) this.doorbellIrqEnable = v & ((1 << GPU_DOORBELLS) - 1);
    else if (offset === GpuReg.IRQ_RAISE && v < GPU_VECTORS) this.raiseInterrupt(v);
    else if (offset === GpuReg.IRQ_ACK) this.setIntx(false);
    else this.host.log.warn(`guest error: ${size}-byte write of 0x${v.toString(16)} to BAR0+0x${offset.toString(16)}, which is read-only or no register: ignored`);
  }

  private ring(offset: number, size: number, value: number): void {
    const n = offset >> 2;
    if (size !== 4 || offset % 4 !== 0 || n >= GPU_DOORBELLS) {
      this.host.log.warn(`guest error: doorbell write of ${size} bytes at 0x${offset.toString(16)} (doorbells are dwords 0x0–0x${(GPU_DOORBELLS * 4 - 4).toString(16)}): ignored`);
      return;
    }
    this.ringCounts[n]!++;
    this.lastRings[n] = value;
    this.host.log.debug(`doorbell ${n} rung with 0x${value.toString(16)} (${this.ringCounts[n]} rings)`);
    if (this.doorbellIrqEnable & (1 << n)) this.raiseInterrupt(n);
  }

  protected resetRegisters(_cause: ResetCause): void {
    this.scratch = 0;
    this.doorbellIrqEnable = 0;
    this.ringCounts.fill(0);
    this.lastRings.fill(0);
  }

  registerState(): Record<string, number | bigint | boolean | string> {
    return {
      id: GPU_ID,
      vramSize: this.vramSize,
      scratch: this.scratch,
      doorbellIrqEnable: this.doorbellIrqEnable,
      rings: this.ringCounts.join(' '),
      intxLevel: this.intxAsserted,
    };
  }
}

export function createGpu(opts: GpuOptions = {}) {
  return (host: DeviceHost): Gpu => new Gpu(host, opts);
}
