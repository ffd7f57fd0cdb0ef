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
} as const;

/** 0x010000ed: version 1.0 in the top bytes, 0xed in the low byte. */
export const EDU_ID = 0x010000ed;

export const Status = {
  COMPUTING: 0x01,
  IRQ_ON_FACTORIAL: 0x80,
} as const;

export const FACTORIAL_IRQ = 0x00000001;

/** What the registers need from the rest of the device. */
export interface EduRegisterHost {
  readonly log: Logger;
  /** Interrupt status went from zero to non-zero or changed: (re)assert the line. */
  raiseInterrupt(status: number): void;
  /** Interrupt status went back to zero. */
  lowerInterrupt(): void;
}

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

  constructor(private readonly host: EduRegisterHost) {}

  reset(): void {
    this.liveness = 0;
    this.factorial = 0;
    this.status = 0;
    this.irqStatus = 0;
    this.dmaSrc = this.dmaDst = this.dmaCount = this.dmaCmd = 0n;
    this.host.lowerInterrupt();
  }

  private sizeOk(offset: number, size: number): boolean {
    return offset < 0x80 ? size === 4 : size === 4 || size === 8;
  }

  /** Reads `size` bytes at `offset`; all-ones for a bad size or an unhandled offset. */
  read(offset: number, size: number): bigint {
    const ones = size >= 8 ? 0xffff_ffff_ffff_ffffn : (1n << BigInt(size * 8)) - 1n;
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
        return this.fit(this.dmaSrc, size);
      case Reg.DMA_DST:
        return this.fit(this.dmaDst, size);
      case Reg.DMA_COUNT:
        return this.fit(this.dmaCount, size);
      case Reg.DMA_CMD:
        return this.fit(this.dmaCmd, size);
      default:
        this.host.log.debug(`guest read of unhandled BAR0 offset 0x${offset.toString(16)}`);
        return ones;
    }
  }

  private fit(v: bigint, size: number): bigint {
    return size === 4 ? v & 0xffff_ffffn : v;
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
        this.irqStatus = (this.irqStatus & ~v32) >>> 0;
        if (this.irqStatus === 0) this.host.lowerInterrupt();
        return;
      case Reg.DMA_SRC:
      case Reg.DMA_DST:
      case Reg.DMA_COUNT:
      case Reg.DMA_CMD:
        this.writeDma(offset, size, value);
        return;
      default:
        this.host.log.debug(`guest write of 0x${value.toString(16)} to read-only or unhandled BAR0 offset 0x${offset.toString(16)} ignored`);
    }
  }

  /** OR bits into the interrupt status and assert the interrupt, as edu's edu_raise_irq. */
  raise(bits: number): void {
    this.irqStatus = (this.irqStatus | bits) >>> 0;
    if (this.irqStatus !== 0) this.host.raiseInterrupt(this.irqStatus);
  }

  private computeFactorial(n: number): void {
    if (this.status & Status.COMPUTING) {
      this.host.log.debug('factorial write ignored: a computation is in progress');
      return;
    }
    this.factorial = n;
    this.status |= Status.COMPUTING;
    let result = 1;
    for (let i = 2; i <= n; i++) result = Math.imul(result, i) >>> 0;
    this.factorial = result >>> 0;
    this.status &= ~Status.COMPUTING;
    if (this.status & Status.IRQ_ON_FACTORIAL) this.raise(FACTORIAL_IRQ);
  }

  private writeDma(offset: number, size: number, value: bigint): void {
    if (this.dmaCmd & 1n) {
      this.host.log.debug(`DMA register write at 0x${offset.toString(16)} ignored: a transfer is running`);
      return;
    }
    const merge = (old: bigint) => (size === 4 ? (old & ~0xffff_ffffn) | (value & 0xffff_ffffn) : value);
    if (offset === Reg.DMA_SRC) this.dmaSrc = merge(this.dmaSrc);
    else if (offset === Reg.DMA_DST) this.dmaDst = merge(this.dmaDst);
    else if (offset === Reg.DMA_COUNT) this.dmaCount = merge(this.dmaCount);
    else {
      this.dmaCmd = merge(this.dmaCmd);
      if (this.dmaCmd & 1n) {
        // The DMA engine arrives with device parity (issue 4); until then refuse, visibly.
        this.host.log.warn('guest started a DMA transfer; the DMA engine is not implemented yet, command cleared');
        this.dmaCmd &= ~1n;
      }
    }
  }
}
