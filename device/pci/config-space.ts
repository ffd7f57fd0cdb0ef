/**
 * A type-0 configuration space built from a function's declaration, with per-bit write masks,
 * so BAR sizing (write all-ones, read back the size mask), the command register and capability
 * fields behave like hardware. QEMU emulates much of this itself (BARs, MSI) but reads the
 * initial contents from us and writes every guest config write through to us.
 */
import { capabilityImage, layoutCapabilities } from './capabilities.ts';
import {
  type BarDeclaration,
  Cfg,
  Command,
  CONFIG_SPACE_SIZE,
  EXTENDED_CONFIG_SPACE_SIZE,
  type PciFunctionDeclaration,
  Status,
} from './declaration.ts';

/** Command bits a guest may set: I/O, memory, bus master, parity, SERR#, INTx disable. */
const COMMAND_WRITABLE = Command.IO | Command.MEMORY | Command.BUS_MASTER | Command.PARITY | Command.SERR | Command.INTX_DISABLE;

/** BAR low bits (PCI 3.0, 6.2.5.1): memory space, type 2 = 64-bit, prefetchable. */
const BAR_TYPE_64 = 0x4;
const BAR_PREFETCHABLE = 0x8;

/**
 * The bits of a BAR register pair a guest can write: all address bits above the size (the
 * sizing mask the guest reads back after writing all-ones). Derived here, once, from the size.
 */
export function barSizingMask(bar: Pick<BarDeclaration, 'size' | 'is64'>): bigint {
  const mask = ~(bar.size - 1n) & 0xffff_ffff_ffff_fff0n;
  return bar.is64 ? mask : mask & 0xffff_fff0n;
}

export class PciConfigSpace {
  readonly size: number;
  /** Where each declared capability landed, in declaration order. */
  readonly capabilityOffsets: readonly number[];
  private readonly bytes: Uint8Array;
  private readonly writable: Uint8Array;
  private readonly powerOn: Uint8Array;
  private readonly view: DataView;

  constructor(readonly declaration: PciFunctionDeclaration) {
    const express = declaration.capabilities.some((c) => c.kind === 'pcie');
    this.size = express ? EXTENDED_CONFIG_SPACE_SIZE : CONFIG_SPACE_SIZE;
    this.bytes = new Uint8Array(this.size);
    this.writable = new Uint8Array(this.size);
    this.view = new DataView(this.bytes.buffer);
    this.capabilityOffsets = layoutCapabilities(declaration.capabilities);
    this.build();
    this.powerOn = this.bytes.slice();
  }

  private build(): void {
    const d = this.declaration;
    this.set16(Cfg.VENDOR_ID, d.vendorId);
    this.set16(Cfg.DEVICE_ID, d.deviceId);
    new DataView(this.writable.buffer).setUint16(Cfg.COMMAND, COMMAND_WRITABLE, true);
    this.view.setUint32(Cfg.REVISION, (d.classCode << 8) | d.revision, true);
    this.writable.set([0xff, 0xff], Cfg.CACHE_LINE_SIZE);
    for (const bar of d.bars) this.buildBar(bar);
    this.set16(Cfg.SUBSYSTEM_VENDOR_ID, d.subsystemVendorId);
    this.set16(Cfg.SUBSYSTEM_ID, d.subsystemId);
    this.bytes[Cfg.INTERRUPT_PIN] = d.interruptPin;
    this.writable[Cfg.INTERRUPT_LINE] = 0xff;
    this.buildCapabilities();
  }

  private buildBar(bar: BarDeclaration): void {
    const at = Cfg.BAR0 + bar.index * 4;
    this.view.setUint32(at, (bar.is64 ? BAR_TYPE_64 : 0) | (bar.prefetchable ? BAR_PREFETCHABLE : 0), true);
    const mask = barSizingMask(bar);
    const masks = new DataView(this.writable.buffer);
    masks.setUint32(at, Number(mask & 0xffff_ffffn), true);
    if (bar.is64) masks.setUint32(at + 4, Number(mask >> 32n), true);
  }

  private buildCapabilities(): void {
    const caps = this.declaration.capabilities;
    if (caps.length === 0) return;
    // The chain follows declaration order, whatever the offsets.
    let pointer = Cfg.CAPABILITIES_POINTER;
    caps.forEach((cap, i) => {
      const at = this.capabilityOffsets[i]!;
      const image = capabilityImage(cap);
      this.bytes.set(image.bytes, at);
      this.writable.set(image.writable, at);
      this.bytes[at] = image.id;
      this.bytes[pointer] = at;
      pointer = at + 1;
    });
    this.set16(Cfg.STATUS, Status.CAP_LIST);
  }

  private set16(offset: number, value: number): void {
    this.view.setUint16(offset, value, true);
  }

  /** Reads [offset, offset+into.length); the caller has checked the range. */
  read(offset: number, into: Uint8Array): void {
    into.set(this.bytes.subarray(offset, offset + into.length));
  }

  /** Writes only the writable bits; read-only bits keep their value, like hardware. */
  write(offset: number, data: Uint8Array): void {
    for (let i = 0; i < data.length; i++) {
      const m = this.writable[offset + i]!;
      this.bytes[offset + i] = (this.bytes[offset + i]! & ~m) | (data[i]! & m);
    }
  }

  /**
   * Sets or clears read-only status bits the function itself drives (e.g. Interrupt Status,
   * which the guest's vfio-pci checks before it claims an INTx as ours).
   */
  setStatusBits(mask: number, on: boolean): void {
    const v = this.u16(Cfg.STATUS);
    this.set16(Cfg.STATUS, on ? v | mask : v & ~mask);
  }

  u16(offset: number): number {
    return this.view.getUint16(offset, true);
  }

  u32(offset: number): number {
    return this.view.getUint32(offset, true);
  }

  reset(): void {
    this.bytes.set(this.powerOn);
  }

  /** A copy of every byte (for migration). */
  snapshot(): Uint8Array {
    return this.bytes.slice();
  }

  /** Restores a snapshot; read-only fields must match this function's (same declaration). */
  restore(bytes: Uint8Array): void {
    if (bytes.length !== this.size) throw new Error(`config space snapshot has ${bytes.length} bytes, not ${this.size}`);
    for (let i = 0; i < this.size; i++) {
      const readOnly = ~this.writable[i]! & 0xff;
      if ((bytes[i]! & readOnly) !== (this.powerOn[i]! & readOnly) && !this.isStatus(i)) {
        throw new Error(`config space snapshot differs in read-only bits at 0x${i.toString(16)}: not this device model`);
      }
    }
    this.bytes.set(bytes);
  }

  private isStatus(offset: number): boolean {
    return offset === Cfg.STATUS || offset === Cfg.STATUS + 1;
  }
}
