/**
 * The bytes and write masks of each capability a declaration can ask for, and where each one
 * lands in config space. Offsets inside a capability follow the spec section cited beside it.
 */
import {
  CapId,
  type CapabilityDeclaration,
  CONFIG_SPACE_SIZE,
  FIRST_CAPABILITY_OFFSET,
  type MsiDeclaration,
  type MsixDeclaration,
  type PciExpressDeclaration,
  type PowerManagementDeclaration,
} from './declaration.ts';

/** A capability's contents: bytes 0 (id) and 1 (next pointer) are filled in by the layout. */
export interface CapabilityImage {
  readonly id: number;
  readonly bytes: Uint8Array;
  readonly writable: Uint8Array;
}

/** MSI (PCI 3.0, 6.8.1.3): message control at +2, address at +4, data after the address. */
export const Msi = {
  CONTROL: 2,
  ADDRESS: 4,
  CONTROL_ENABLE: 0x0001,
  CONTROL_64BIT: 0x0080,
} as const;

/** MSI-X (PCI 3.0, 6.8.2): control at +2, table offset/BIR at +4, PBA offset/BIR at +8. */
export const Msix = {
  CONTROL: 2,
  TABLE: 4,
  PBA: 8,
  /** MSI-X Enable and Function Mask belong to the guest; the table size is read-only. */
  CONTROL_WRITABLE: 0xc000,
  ENTRY_SIZE: 16,
  /** Vector Control's Mask bit, set at reset for every entry. */
  ENTRY_MASKED: 1,
  VECTOR_CONTROL: 12,
  LENGTH: 12,
} as const;

/** Bytes of a pending-bit array for `vectors`: one bit each, in whole qwords. */
export function pbaLength(vectors: number): bigint {
  return BigInt(Math.ceil(vectors / 64) * 8);
}

/** PCI PM 1.2, 3.2: PMC at +2, PMCSR at +4. */
export const Pm = {
  PMC: 2,
  PMCSR: 4,
  /** PMC version field: 3 = PCI PM 1.2. */
  VERSION_1_2: 0x0003,
  STATE_MASK: 0x0003,
  STATE_D0: 0,
  STATE_D3HOT: 3,
  NO_SOFT_RESET: 0x0008,
  LENGTH: 8,
} as const;

/** PCI Express 2.0+, 7.8: capabilities at +2, Device Capabilities at +4, Device Control at +8. */
export const Exp = {
  FLAGS: 2,
  DEVCAP: 4,
  DEVCTL: 8,
  LNKCAP: 0x0c,
  LNKSTA: 0x12,
  /** Capability version 2, device/port type 0 (PCI Express Endpoint). */
  FLAGS_V2_ENDPOINT: 0x0002,
  DEVCAP_RBER: 1 << 15,
  DEVCAP_FLR: 1 << 28,
  /** Initiate Function Level Reset: write-only, always reads 0. */
  DEVCTL_FLR: 0x8000,
  /** Power-on Device Control: relaxed ordering, no snoop, 512-byte max read request. */
  DEVCTL_DEFAULT: 0x2810,
  /** Everything but Initiate FLR is ordinary read/write. */
  DEVCTL_WRITABLE: 0x7fff,
  /** 2.5 GT/s, x1: a plausible link for a device behind a port (QEMU hides it on a root bus). */
  LINK_GEN1_X1: 0x0011,
  LENGTH: 0x3c,
} as const;

/** Bytes a capability takes (header included), for layout and overlap checks. */
export function capabilityLength(cap: CapabilityDeclaration): number {
  switch (cap.kind) {
    case 'msi':
      return cap.address64 ? 14 : 10;
    case 'msix':
      return Msix.LENGTH;
    case 'pm':
      return Pm.LENGTH;
    case 'pcie':
      return Exp.LENGTH;
  }
}

function image(id: number, length: number): CapabilityImage & { view: DataView; mask: DataView } {
  const bytes = new Uint8Array(length);
  const writable = new Uint8Array(length);
  return { id, bytes, writable, view: new DataView(bytes.buffer), mask: new DataView(writable.buffer) };
}

function msiImage(cap: MsiDeclaration): CapabilityImage {
  const c = image(CapId.MSI, capabilityLength(cap));
  const mmc = Math.log2(cap.vectors);
  c.view.setUint16(Msi.CONTROL, (mmc << 1) | (cap.address64 ? Msi.CONTROL_64BIT : 0), true);
  // Enable and Multiple Message Enable (bits 6:4) are the guest's; the address is dword aligned.
  c.mask.setUint16(Msi.CONTROL, Msi.CONTROL_ENABLE | 0x0070, true);
  c.mask.setUint32(Msi.ADDRESS, 0xffff_fffc, true);
  if (cap.address64) c.mask.setUint32(Msi.ADDRESS + 4, 0xffff_ffff, true);
  c.mask.setUint16(Msi.ADDRESS + (cap.address64 ? 8 : 4), 0xffff, true);
  return c;
}

function msixImage(cap: MsixDeclaration): CapabilityImage {
  const c = image(CapId.MSIX, Msix.LENGTH);
  c.view.setUint16(Msix.CONTROL, cap.vectors - 1, true);
  c.mask.setUint16(Msix.CONTROL, Msix.CONTROL_WRITABLE, true);
  // The BAR indicator rides in the low three bits of the qword-aligned offset.
  c.view.setUint32(Msix.TABLE, Number(cap.table.offset) | cap.table.bar, true);
  c.view.setUint32(Msix.PBA, Number(cap.pba.offset) | cap.pba.bar, true);
  return c;
}

function pmImage(cap: PowerManagementDeclaration): CapabilityImage {
  const c = image(CapId.PM, Pm.LENGTH);
  // No D1/D2, no PME: the function knows D0 and D3hot only.
  c.view.setUint16(Pm.PMC, Pm.VERSION_1_2, true);
  c.view.setUint16(Pm.PMCSR, cap.softReset ? 0 : Pm.NO_SOFT_RESET, true);
  c.mask.setUint16(Pm.PMCSR, Pm.STATE_MASK, true);
  return c;
}

function expressImage(cap: PciExpressDeclaration): CapabilityImage {
  const c = image(CapId.EXP, Exp.LENGTH);
  c.view.setUint16(Exp.FLAGS, Exp.FLAGS_V2_ENDPOINT, true);
  c.view.setUint32(Exp.DEVCAP, Exp.DEVCAP_RBER | (cap.flr ? Exp.DEVCAP_FLR : 0), true);
  c.view.setUint16(Exp.DEVCTL, Exp.DEVCTL_DEFAULT, true);
  c.mask.setUint16(Exp.DEVCTL, Exp.DEVCTL_WRITABLE, true);
  c.view.setUint32(Exp.LNKCAP, Exp.LINK_GEN1_X1, true);
  c.view.setUint16(Exp.LNKSTA, Exp.LINK_GEN1_X1, true);
  return c;
}

export function capabilityImage(cap: CapabilityDeclaration): CapabilityImage {
  switch (cap.kind) {
    case 'msi':
      return msiImage(cap);
    case 'msix':
      return msixImage(cap);
    case 'pm':
      return pmImage(cap);
    case 'pcie':
      return expressImage(cap);
  }
}

/** Where each capability sits: its declared offset, else the next free dword after the last. */
export function layoutCapabilities(caps: readonly CapabilityDeclaration[]): number[] {
  let next = FIRST_CAPABILITY_OFFSET;
  return caps.map((cap) => {
    const at = cap.offset ?? next;
    next = Math.min(CONFIG_SPACE_SIZE, (at + capabilityLength(cap) + 3) & ~3);
    return at;
  });
}
