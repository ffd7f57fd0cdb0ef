/**
 * What a device author declares: identity, BARs and capabilities of one PCI function. Config
 * space, region and irq descriptions, BAR sizing masks and capability layout are all derived
 * from this one value (see PciFunction), so they cannot disagree with each other.
 */

/** A byte range inside a BAR, e.g. a doorbell page that traps inside a shared-memory BAR. */
export interface BarRange {
  readonly offset: bigint;
  readonly size: bigint;
}

export interface BarDeclaration {
  /** BAR slot 0–5. A 64-bit BAR also takes the next slot, which must stay undeclared. */
  readonly index: number;
  /** A power of two from 16 bytes (4 KiB for shared memory) to 1 TiB; over 2 GiB needs is64. */
  readonly size: bigint;
  readonly is64?: boolean;
  readonly prefetchable?: boolean;
  /**
   * trapped: every access reaches the device (REGION_READ/WRITE).
   * memory: zero-filled shared memory the client maps (a sparse memfd); accesses never reach
   * the device, except inside `trappedRanges`.
   */
  readonly backing: 'trapped' | 'memory';
  /**
   * memory only: page-aligned ranges that still trap (advertised as holes between the sparse
   * mmap areas). Accesses to them reach the device's barRead/barWrite.
   */
  readonly trappedRanges?: readonly BarRange[];
  /** memory only: back the memfd with 2 MiB huge pages. */
  readonly hugePages?: boolean;
}

/** MSI (PCI Local Bus 3.0, 6.8.1). */
export interface MsiDeclaration {
  readonly kind: 'msi';
  /** Vectors the function requests: a power of two from 1 to 32. */
  readonly vectors: number;
  /** 64-bit message address (edu: yes). */
  readonly address64: boolean;
  /** Config-space offset; default: the next free dword from 0x40. */
  readonly offset?: number;
}

/** PCI Power Management (PCI PM 1.2): D0 and D3hot only. */
export interface PowerManagementDeclaration {
  readonly kind: 'pm';
  /**
   * true: No_Soft_Reset is clear, so a D3hot→D0 transition resets the function — which is
   * what lets the kernel offer the "pm" reset method.
   */
  readonly softReset: boolean;
  readonly offset?: number;
}

/** PCI Express capability (version 2), an Endpoint; its presence makes config space 4 KiB. */
export interface PciExpressDeclaration {
  readonly kind: 'pcie';
  /** Function Level Reset: the Device Capabilities FLR bit, and Initiate FLR in Device Control. */
  readonly flr: boolean;
  readonly offset?: number;
}

/** Where an MSI-X structure lives: a BAR and a qword-aligned offset in it. */
export interface MsixLocation {
  readonly bar: number;
  readonly offset: bigint;
}

/**
 * MSI-X (PCI 3.0, 6.8.2): the vector table (16 bytes a vector) and the pending-bit array
 * (one bit a vector, in qwords) sit in trapped parts of BARs. A client such as QEMU emulates
 * both itself and expresses masking with SET_IRQS; the layer keeps the table as storage for
 * clients that read it through the device.
 */
export interface MsixDeclaration {
  readonly kind: 'msix';
  /** 1 to 2048. */
  readonly vectors: number;
  readonly table: MsixLocation;
  readonly pba: MsixLocation;
  readonly offset?: number;
}

export type CapabilityDeclaration = MsiDeclaration | MsixDeclaration | PowerManagementDeclaration | PciExpressDeclaration;

export interface PciFunctionDeclaration {
  /** Short name for logs. */
  readonly name: string;
  readonly vendorId: number;
  readonly deviceId: number;
  readonly revision: number;
  /** 24-bit class code: base class, sub class, programming interface. */
  readonly classCode: number;
  readonly subsystemVendorId: number;
  readonly subsystemId: number;
  /** INTx pin: 1 = INTA# … 4 = INTD#, 0 = no INTx. */
  readonly interruptPin: number;
  readonly bars: readonly BarDeclaration[];
  /** In chain order. */
  readonly capabilities: readonly CapabilityDeclaration[];
}

/** Standard type-0 header offsets (PCI Local Bus 3.0, 6.1). */
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

export const Command = {
  IO: 0x0001,
  MEMORY: 0x0002,
  BUS_MASTER: 0x0004,
  PARITY: 0x0040,
  SERR: 0x0100,
  INTX_DISABLE: 0x0400,
} as const;

export const Status = {
  INTERRUPT: 0x0008,
  CAP_LIST: 0x0010,
} as const;

export const CapId = { PM: 0x01, MSI: 0x05, EXP: 0x10, MSIX: 0x11 } as const;

/** Conventional config space; a function with a PCI Express capability has 4 KiB. */
export const CONFIG_SPACE_SIZE = 256;
export const EXTENDED_CONFIG_SPACE_SIZE = 4096;
/** Capabilities live after the 64-byte header. */
export const FIRST_CAPABILITY_OFFSET = 0x40;
export const MAX_BAR_SIZE = 1n << 40n;
export const PAGE_SIZE = 4096n;
