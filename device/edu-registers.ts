/**
 * BAR0 of QEMU's edu device (docs/specs/edu.rst, hw/misc/edu.c): identification, liveness,
 * factorial, interrupt status/raise/acknowledge, and the DMA register file. Access rules as in
 * edu: 4-byte accesses below 0x80, 4 or 8 bytes from 0x80 up; anything else reads all-ones and
 * is ignored on write, and is logged as a guest error rather than failing.
 */
import type { Logger } from '../protocol/log.ts';

export const EDU_BAR0_SIZE = 1n << 20n;

export const Reg = {
  ID: 0x00,
  LIVENESS: 0x04,
  FACTORIAL: 0x08,
  STATUS: 0x20,
  IRQ_STATUS: 0x24,
  IRQ_RAISE: 0x60,
  IRQ_ACK: 0x64,
  DMA_SRC: 0x80,
  DMA_DST: 0x88,
  DMA_COUNT: 0x90,
  DMA_CMD: 0x98,
  /**
   * edu-plus only (edu leaves 0xa8 unused: it reads all-ones there): why the last transfer was
   * refused, a DmaError code; 0 while none was. Read-only; starting a transfer clears it. edu
   * itself has no way to tell a driver that a DMA did not happen.
   */
  DMA_ERROR: 0xa8,
} as const;

/** 0x010000ed: version 1.0 in the top bytes, 0xed in the low byte. */
export const EDU_ID = 0x010000ed;

export const Status = {
  COMPUTING: 0x01,
  IRQ_ON_FACTORIAL: 0x80,
} as const;

export const DmaCmd = {
  RUN: 0x1n,
  /** Set: device buffer → guest RAM; clear: guest RAM → device buffer. */
  TO_RAM: 0x2n,
  IRQ: 0x4n,
} as const;

/** The codes DMA_ERROR reads (edu-plus only): why the last transfer moved nothing. */
export const DmaError = {
  NONE: 0,
  /** Bus Master Enable is off in the PCI command register. */
  BUS_MASTER_OFF: 1,
  /** The device range leaves the 4 KiB buffer at 0x40000. */
  DEVICE_RANGE: 2,
  /** The guest range exceeds dma_mask. */
  DMA_MASK: 3,
  /** The guest range is not (or not fully, or not with that permission) in the client's DMA maps. */
  NOT_MAPPED: 4,
  /** The transfer failed in the server itself (a bug: the log says more). */
  INTERNAL: 5,
} as const;
export type DmaErrorCode = (typeof DmaError)[keyof typeof DmaError];

export const FACTORIAL_IRQ = 0x00000001;
export const DMA_IRQ = 0x00000100;

/** What the registers need from the rest of the device. */
export interface EduRegisterHost {
  readonly log: Logger;
  /** The interrupt status became non-zero or gained bits: assert (MSI edge or INTx level). */
  raiseInterrupt(): void;
  /** The interrupt status went back to zero: release INTx. */
  lowerInterrupt(): void;
  /** The guest wrote DMA_CMD with RUN set while idle: start the transfer the registers hold. */
  startDma(): void;
}

const ALL_ONES_64 = 0xffff_ffff_ffff_ffffn;

export class EduRegisters {
  /** Holds the inverse of the last value written (0 at power-on, as in edu). */
  liveness = 0;
  factorial = 0;
  status = 0;
  irqStatus = 0;
  dmaSrc = 0n;
  dmaDst = 0n;
  dmaCount = 0n;
  dmaCmd = 0n;
  /** DMA_ERROR: a DmaError code for the last transfer. */
  dmaError: DmaErrorCode = DmaError.NONE;

  constructor(private readonly host: EduRegisterHost) {}

  reset(): void {
    this.liveness = 0;
    this.factorial = 0;
    this.status = 0;
    this.irqStatus = 0;
    this.dmaSrc = this.dmaDst = this.dmaCount = this.dmaCmd = 0n;
    this.dmaError = DmaError.NONE;
    this.host.lowerInterrupt();
  }

  get dmaRunning(): boolean {
    return (this.dmaCmd & DmaCmd.RUN) !== 0n;
  }

  private sizeOk(offset: number, size: number): boolean {
    return offset < 0x80 ? size === 4 : size === 4 || size === 8;
  }

  /**
   * Reads `size` bytes at `offset`; all-ones for an 8-byte access below 0x80 or an unhandled
   * offset. QEMU's memory core only lets 4- and 8-byte accesses reach edu at all: anything
   * narrower reads 0 and is dropped on write, and our guest tests compare against that.
   */
  read(offset: number, size: number): bigint {
    if (size !== 4 && size !== 8) {
      this.host.log.warn(`guest error: BAR0 read of ${size} bytes at 0x${offset.toString(16)} (edu takes 4 or 8): reads 0`);
      return 0n;
    }
    const ones = size === 8 ? ALL_ONES_64 : 0xffff_ffffn;
    if (!this.sizeOk(offset, size)) {
      this.host.log.warn(`guest error: BAR0 read of ${size} bytes at 0x${offset.toString(16)} (edu allows 4 below 0x80, 4 or 8 above)`);
      return ones;
    }
    switch (offset) {
      case Reg.ID:
        return BigInt(EDU_ID);
      case Reg.LIVENESS:
        return BigInt(this.liveness);
      case Reg.FACTORIAL:
        return BigInt(this.factorial >>> 0);
      case Reg.STATUS:
        return BigInt(this.status);
      case Reg.IRQ_STATUS:
        return BigInt(this.irqStatus >>> 0);
      case Reg.DMA_SRC:
        return this.dmaSrc & ones;
      case Reg.DMA_DST:
        return this.dmaDst & ones;
      case Reg.DMA_COUNT:
        return this.dmaCount & ones;
      case Reg.DMA_CMD:
        return this.dmaCmd & ones;
      case Reg.DMA_ERROR:
        return BigInt(this.dmaError);
      default:
        this.host.log.debug(`guest read of unhandled BAR0 offset 0x${offset.toString(16)}`);
        return ones;
    }
  }

  write(offset: number, size: number, value: bigint): void {
    if (!this.sizeOk(offset, size)) {
      this.host.log.warn(`guest error: BAR0 write of ${size} bytes at 0x${offset.toString(16)} ignored (edu allows 4 below 0x80, 4 or 8 above)`);
      return;
    }
    const v32 = Number(value & 0xffff_ffffn);
    switch (offset) {
      case Reg.LIVENESS:
        this.liveness = ~v32 >>> 0;
        return;
      case Reg.FACTORIAL:
        this.computeFactorial(v32);
        return;
      case Reg.STATUS:
        // Only the raise-interrupt-after-factorial bit is writable; COMPUTING is read-only.
        this.status = (this.status & ~Status.IRQ_ON_FACTORIAL) | (v32 & Status.IRQ_ON_FACTORIAL);
        return;
      case Reg.IRQ_RAISE:
        this.raise(v32);
        return;
      case Reg.IRQ_ACK:
        this.acknowledge(v32);
        return;
      case Reg.DMA_SRC:
      case Reg.DMA_DST:
      case Reg.DMA_COUNT:
      case Reg.DMA_CMD:
        this.writeDma(offset, value);
        return;
      default:
        this.host.log.debug(`guest write of 0x${value.toString(16)} to read-only or unhandled BAR0 offset 0x${offset.toString(16)} ignored`);
    }
  }

  /** OR bits into the interrupt status and assert the interrupt (edu_raise_irq). */
  raise(bits: number): void {
    this.irqStatus = (this.irqStatus | bits) >>> 0;
    if (this.irqStatus !== 0) this.host.raiseInterrupt();
  }

  /** Clear bits; INTx is released once nothing is pending (edu_lower_irq). */
  acknowledge(bits: number): void {
    this.irqStatus = (this.irqStatus & ~bits) >>> 0;
    if (this.irqStatus === 0) this.host.lowerInterrupt();
  }

  private computeFactorial(n: number): void {
    if (this.status & Status.COMPUTING) {
      this.host.log.debug('factorial write ignored: a computation is in progress');
      return;
    }
    this.status |= Status.COMPUTING;
    // From 34! on, the product has 32 factors of two: n! mod 2^32 is 0. No need to loop 4e9 times.
    let result = n >= 34 ? 0 : 1;
    for (let i = 2; i <= n && result !== 0; i++) result = Math.imul(result, i) >>> 0;
    this.factorial = result >>> 0;
    this.status &= ~Status.COMPUTING;
    if (this.status & Status.IRQ_ON_FACTORIAL) this.raise(FACTORIAL_IRQ);
  }

  /**
   * As edu's dma_rw: ignored while a transfer runs; a write replaces the whole register (a
   * 4-byte write zero-extends); a DMA_CMD write without RUN is ignored, one with RUN starts.
   */
  private writeDma(offset: number, value: bigint): void {
    if (this.dmaRunning) {
      this.host.log.debug(`DMA register write at 0x${offset.toString(16)} ignored: a transfer is running`);
      return;
    }
    if (offset === Reg.DMA_SRC) this.dmaSrc = value;
    else if (offset === Reg.DMA_DST) this.dmaDst = value;
    else if (offset === Reg.DMA_COUNT) this.dmaCount = value;
    else if (value & DmaCmd.RUN) {
      this.dmaCmd = value;
      this.dmaError = DmaError.NONE;
      this.host.startDma();
    }
  }

  /**
   * The transfer finished (`error` NONE) or was refused: clear RUN, record why in DMA_ERROR,
   * and raise 0x100 if asked and it ran (edu raises nothing for a DMA that did not happen).
   */
  completeDma(error: DmaErrorCode): void {
    const wantIrq = (this.dmaCmd & DmaCmd.IRQ) !== 0n;
    this.dmaCmd &= ~DmaCmd.RUN;
    this.dmaError = error;
    if (error === DmaError.NONE && wantIrq) this.raise(DMA_IRQ);
  }
}
