/**
 * A conventional PCI type-0 configuration space (256 bytes) with per-bit write masks, so
 * BAR sizing (write all-ones, read back the size mask), the command register and capability
 * fields behave like hardware. QEMU emulates most of this itself (BARs, MSI) but reads the
 * initial contents from us and writes every guest config write through to us.
 */

export const CONFIG_SPACE_SIZE = 256;

// Standard header offsets (PCI Local Bus spec 3.0, 6.1).
export const Cfg = {
  VENDOR_ID: 0x00,
  DEVICE_ID: 0x02,
  COMMAND: 0x04,
  STATUS: 0x06,
  REVISION: 0x08,
  CLASS_PROG: 0x09,
  CACHE_LINE_SIZE: 0x0c,
  LATENCY_TIMER: 0x0d,
  HEADER_TYPE: 0x0e,
  BAR0: 0x10,
  SUBSYSTEM_VENDOR_ID: 0x2c,
  SUBSYSTEM_ID: 0x2e,
  CAPABILITIES_POINTER: 0x34,
  INTERRUPT_LINE: 0x3c,
  INTERRUPT_PIN: 0x3d,
} as const;

const STATUS_CAP_LIST = 1 << 4;
/** Command bits a guest may set: I/O, memory, bus master, parity, SERR#, INTx disable. */
const COMMAND_WRITABLE = 0x0001 | 0x0002 | 0x0004 | 0x0040 | 0x0100 | 0x0400;

export const PCI_CAP_ID_MSI = 0x05;

export interface BarSpec {
  /** BAR slot 0–5. A 64-bit BAR also uses the next slot. */
  readonly slot: number;
  readonly size: bigint;
  readonly is64: boolean;
  readonly prefetchable: boolean;
}

export interface CapabilitySpec {
  readonly id: number;
  /** Body after the id/next bytes. */
  readonly body: Uint8Array;
  /** Write mask for the body, same length. */
  readonly writable: Uint8Array;
}

export interface ConfigSpaceSpec {
  readonly vendorId: number;
  readonly deviceId: number;
  readonly revision: number;
  /** 24-bit class code: base class, sub class, programming interface. */
  readonly classCode: number;
  readonly subsystemVendorId: number;
  readonly subsystemId: number;
  /** 1 = INTA#, 0 = none. */
  readonly interruptPin: number;
  readonly bars: readonly BarSpec[];
  readonly capabilities: readonly CapabilitySpec[];
}

export class PciConfigSpace {
  private readonly bytes = new Uint8Array(CONFIG_SPACE_SIZE);
  private readonly writable = new Uint8Array(CONFIG_SPACE_SIZE);
  private readonly powerOn: Uint8Array;
  private readonly view = new DataView(this.bytes.buffer);

  constructor(readonly spec: ConfigSpaceSpec) {
    this.build();
    this.powerOn = this.bytes.slice();
  }

  private set16(offset: number, value: number): void {
    this.view.setUint16(offset, value, true);
  }

  private set32(offset: number, value: number): void {
    this.view.setUint32(offset, value >>> 0, true);
  }

  private mask(offset: number, bytes: number[]): void {
    this.writable.set(bytes, offset);
  }

  private build(): void {
    const s = this.spec;
    this.set16(Cfg.VENDOR_ID, s.vendorId);
    this.set16(Cfg.DEVICE_ID, s.deviceId);
    this.mask(Cfg.COMMAND, [COMMAND_WRITABLE & 0xff, COMMAND_WRITABLE >> 8]);
    this.bytes[Cfg.REVISION] = s.revision;
    this.bytes[Cfg.CLASS_PROG] = s.classCode & 0xff;
    this.bytes[Cfg.CLASS_PROG + 1] = (s.classCode >> 8) & 0xff;
    this.bytes[Cfg.CLASS_PROG + 2] = (s.classCode >> 16) & 0xff;
    this.mask(Cfg.CACHE_LINE_SIZE, [0xff, 0xff]);
    this.bytes[Cfg.HEADER_TYPE] = 0;
    for (const bar of s.bars) this.buildBar(bar);
    this.set16(Cfg.SUBSYSTEM_VENDOR_ID, s.subsystemVendorId);
    this.set16(Cfg.SUBSYSTEM_ID, s.subsystemId);
    this.bytes[Cfg.INTERRUPT_PIN] = s.interruptPin;
    this.mask(Cfg.INTERRUPT_LINE, [0xff]);
    this.buildCapabilities(s.capabilities);
  }

  private buildBar(bar: BarSpec): void {
    const size = bar.size;
    if (size < 16n || (size & (size - 1n)) !== 0n) throw new Error(`BAR${bar.slot} size ${size} is not a power of two ≥ 16`);
    if (!bar.is64 && size > 1n << 31n) throw new Error(`BAR${bar.slot} of ${size} bytes needs a 64-bit BAR`);
    const at = Cfg.BAR0 + bar.slot * 4;
    // Low bits: memory space (0), type (2 = 64-bit), prefetchable (bit 3).
    this.set32(at, (bar.is64 ? 0x4 : 0) | (bar.prefetchable ? 0x8 : 0));
    const sizeMask = ~(size - 1n) & 0xffff_ffff_ffff_ffffn;
    const lowMask = Number(sizeMask & 0xffff_fff0n);
    this.writable.set(le32(lowMask), at);
    if (bar.is64) this.writable.set(le32(Number(sizeMask >> 32n)), at + 4);
  }

  private buildCapabilities(caps: readonly CapabilitySpec[]): void {
    let at = 0x40;
    let prevNext = Cfg.CAPABILITIES_POINTER;
    for (const cap of caps) {
      this.bytes[prevNext] = at;
      this.bytes[at] = cap.id;
      this.bytes[at + 1] = 0;
      this.bytes.set(cap.body, at + 2);
      this.writable.set(cap.writable, at + 2);
      prevNext = at + 1;
      at = (at + 2 + cap.body.length + 3) & ~3;
    }
    if (caps.length) this.set16(Cfg.STATUS, STATUS_CAP_LIST);
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
   * Sets or clears read-only status bits the device itself drives (e.g. Interrupt Status,
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

  /** A copy of all 256 bytes (for migration). */
  snapshot(): Uint8Array {
    return this.bytes.slice();
  }

  /** Restores a snapshot; read-only fields must match this device's (same device model). */
  restore(bytes: Uint8Array): void {
    if (bytes.length !== CONFIG_SPACE_SIZE) throw new Error(`config space snapshot has ${bytes.length} bytes, not ${CONFIG_SPACE_SIZE}`);
    for (let i = 0; i < CONFIG_SPACE_SIZE; i++) {
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

function le32(v: number): number[] {
  return [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
}

/** An MSI capability with one vector, 64-bit addresses, no per-vector masking. */
export function msiCapability64(): CapabilitySpec {
  // Body: control u16, address low u32, address high u32, data u16.
  const body = new Uint8Array(12);
  body[0] = 0x80; // control: 64-bit address capable; 1 vector (MMC 0)
  const writable = new Uint8Array(12);
  writable.set([0x71, 0x00], 0); // MSI enable + multiple message enable
  writable.set([0xfc, 0xff, 0xff, 0xff], 2); // dword-aligned address
  writable.set([0xff, 0xff, 0xff, 0xff], 6);
  writable.set([0xff, 0xff], 10);
  return { id: PCI_CAP_ID_MSI, body, writable };
}
