/**
 * Checks a PCI function declaration before anything is built from it, so an inconsistent
 * device is refused when the server starts, with the field at fault named — not discovered
 * later as a guest that cannot size a BAR or a client that maps the wrong pages.
 */
import { capabilityLength, layoutCapabilities, Msix, pbaLength } from './capabilities.ts';
import {
  type BarDeclaration,
  CONFIG_SPACE_SIZE,
  FIRST_CAPABILITY_OFFSET,
  MAX_BAR_SIZE,
  type MsixDeclaration,
  PAGE_SIZE,
  type PciFunctionDeclaration,
} from './declaration.ts';

export class PciDeclarationError extends Error {
  constructor(
    readonly field: string,
    problem: string,
  ) {
    super(`${field}: ${problem}`);
    this.name = 'PciDeclarationError';
  }
}

const isPowerOfTwo = (v: bigint) => v > 0n && (v & (v - 1n)) === 0n;

function checkInteger(field: string, value: number, bits: number): void {
  if (!Number.isInteger(value) || value < 0 || value >= 2 ** bits) {
    throw new PciDeclarationError(field, `${value} is not a ${bits}-bit unsigned integer`);
  }
}

function checkIdentity(d: PciFunctionDeclaration): void {
  checkInteger('vendorId', d.vendorId, 16);
  if (d.vendorId === 0xffff) throw new PciDeclarationError('vendorId', '0xffff means "no device" to every PCI driver');
  checkInteger('deviceId', d.deviceId, 16);
  checkInteger('revision', d.revision, 8);
  checkInteger('classCode', d.classCode, 24);
  checkInteger('subsystemVendorId', d.subsystemVendorId, 16);
  checkInteger('subsystemId', d.subsystemId, 16);
  if (!Number.isInteger(d.interruptPin) || d.interruptPin < 0 || d.interruptPin > 4) {
    throw new PciDeclarationError('interruptPin', `${d.interruptPin} is not 0 (none) or 1–4 (INTA#–INTD#)`);
  }
}

function checkRanges(field: string, bar: BarDeclaration): void {
  const ranges = [...(bar.trappedRanges ?? [])].sort((a, b) => (a.offset < b.offset ? -1 : 1));
  if (ranges.length && bar.backing !== 'memory') {
    throw new PciDeclarationError(`${field}.trappedRanges`, 'only a shared-memory BAR has trapped ranges inside it (a trapped BAR traps everywhere)');
  }
  let end = 0n;
  for (const r of ranges) {
    const at = `${field}.trappedRanges[0x${r.offset.toString(16)}]`;
    // Sparse mmap areas are mapped page by page: a hole must cover whole pages.
    if (r.size <= 0n || r.offset % PAGE_SIZE !== 0n || r.size % PAGE_SIZE !== 0n) {
      throw new PciDeclarationError(at, `offset and size must be non-empty multiples of ${PAGE_SIZE} (a trapped hole is whole pages)`);
    }
    if (r.offset + r.size > bar.size) throw new PciDeclarationError(at, `ends at 0x${(r.offset + r.size).toString(16)}, past the BAR's 0x${bar.size.toString(16)} bytes`);
    if (r.offset < end) throw new PciDeclarationError(at, 'overlaps another trapped range');
    end = r.offset + r.size;
  }
}

function checkBars(bars: readonly BarDeclaration[]): void {
  const taken = new Map<number, string>();
  bars.forEach((bar, i) => {
    const field = `bars[${i}]`;
    if (!Number.isInteger(bar.index) || bar.index < 0 || bar.index > 5) throw new PciDeclarationError(`${field}.index`, `${bar.index} is not a BAR slot 0–5`);
    const slots = bar.is64 ? [bar.index, bar.index + 1] : [bar.index];
    if (bar.is64 && bar.index === 5) throw new PciDeclarationError(`${field}.is64`, 'a 64-bit BAR takes two slots; slot 5 has no slot 6 after it');
    for (const slot of slots) {
      const other = taken.get(slot);
      if (other) throw new PciDeclarationError(`${field}.index`, `slot ${slot} is already taken by ${other}`);
      taken.set(slot, bar.is64 && slot !== bar.index ? `${field} (upper half of a 64-bit BAR)` : field);
    }
    const min = bar.backing === 'memory' ? PAGE_SIZE : 16n;
    if (!isPowerOfTwo(bar.size) || bar.size < min || bar.size > MAX_BAR_SIZE) {
      throw new PciDeclarationError(`${field}.size`, `${bar.size} must be a power of two from ${min} bytes to 1 TiB`);
    }
    if (!bar.is64 && bar.size > 1n << 31n) throw new PciDeclarationError(`${field}.size`, `${bar.size} bytes do not fit a 32-bit BAR: set is64`);
    if (bar.backing !== 'trapped' && bar.backing !== 'memory') throw new PciDeclarationError(`${field}.backing`, `"${String(bar.backing)}" is not "trapped" or "memory"`);
    if (bar.hugePages && bar.backing !== 'memory') throw new PciDeclarationError(`${field}.hugePages`, 'only a shared-memory BAR can use huge pages');
    if (bar.hugePages && bar.size < 2n << 20n) throw new PciDeclarationError(`${field}.hugePages`, 'a BAR on 2 MiB huge pages must be at least 2 MiB');
    checkRanges(field, bar);
  });
}

/**
 * An MSI-X table or PBA: inside a declared BAR, qword aligned, and trapped — the device (not
 * shared memory) must answer for it, so it may not lie in an mmap area.
 */
function checkMsixStructure(field: string, where: { bar: number; offset: bigint }, length: bigint, bars: readonly BarDeclaration[]): void {
  const bar = bars.find((b) => b.index === where.bar);
  if (!bar) throw new PciDeclarationError(`${field}.bar`, `BAR${where.bar} is not declared (declared: ${bars.map((b) => b.index).join(', ') || 'none'})`);
  const end = where.offset + length;
  if (where.offset < 0n || where.offset % 8n !== 0n) throw new PciDeclarationError(`${field}.offset`, `0x${where.offset.toString(16)} is not qword (8-byte) aligned`);
  if (end > bar.size || where.offset >= 1n << 32n) {
    throw new PciDeclarationError(`${field}.offset`, `[0x${where.offset.toString(16)}, 0x${end.toString(16)}) does not fit in BAR${bar.index} (0x${bar.size.toString(16)} bytes)`);
  }
  const trapped = bar.backing === 'trapped' || (bar.trappedRanges ?? []).some((r) => where.offset >= r.offset && end <= r.offset + r.size);
  if (!trapped) throw new PciDeclarationError(field, `lies in BAR${bar.index}'s shared memory: declare the BAR trapped or cover it with one of its trappedRanges`);
}

function checkMsix(field: string, cap: MsixDeclaration, bars: readonly BarDeclaration[]): void {
  if (!Number.isInteger(cap.vectors) || cap.vectors < 1 || cap.vectors > 2048) throw new PciDeclarationError(`${field}.vectors`, `${cap.vectors} is not from 1 to 2048`);
  const tableLength = BigInt(cap.vectors * Msix.ENTRY_SIZE);
  checkMsixStructure(`${field}.table`, cap.table, tableLength, bars);
  checkMsixStructure(`${field}.pba`, cap.pba, pbaLength(cap.vectors), bars);
  const overlap = cap.table.bar === cap.pba.bar && cap.pba.offset < cap.table.offset + tableLength && cap.table.offset < cap.pba.offset + pbaLength(cap.vectors);
  if (overlap) throw new PciDeclarationError(`${field}.pba`, 'overlaps the vector table');
}

function checkCapabilities(d: PciFunctionDeclaration): void {
  const offsets = layoutCapabilities(d.capabilities);
  const seen = new Set<string>();
  const placed: { from: number; to: number; field: string }[] = [];
  d.capabilities.forEach((cap, i) => {
    const field = `capabilities[${i}]`;
    if (seen.has(cap.kind)) throw new PciDeclarationError(`${field}.kind`, `a second "${cap.kind}" capability (drivers use the first only)`);
    seen.add(cap.kind);
    const at = offsets[i]!;
    const to = at + capabilityLength(cap);
    if (at < FIRST_CAPABILITY_OFFSET || at % 4 !== 0 || to > CONFIG_SPACE_SIZE) {
      throw new PciDeclarationError(`${field}.offset`, `0x${at.toString(16)} (+${capabilityLength(cap)} bytes) must be dword aligned inside 0x40–0xff`);
    }
    const clash = placed.find((p) => at < p.to && p.from < to);
    if (clash) throw new PciDeclarationError(`${field}.offset`, `[0x${at.toString(16)}, 0x${to.toString(16)}) overlaps ${clash.field}`);
    placed.push({ from: at, to, field });
    if (cap.kind === 'msix') checkMsix(field, cap, d.bars);
    if (cap.kind === 'msi' && (!Number.isInteger(cap.vectors) || cap.vectors < 1 || cap.vectors > 32 || (cap.vectors & (cap.vectors - 1)) !== 0)) {
      throw new PciDeclarationError(`${field}.vectors`, `${cap.vectors} is not a power of two from 1 to 32`);
    }
  });
}

/** Throws a PciDeclarationError naming the first inconsistent field. */
export function validateDeclaration(d: PciFunctionDeclaration): void {
  if (!d.name) throw new PciDeclarationError('name', 'a device needs a name for logs');
  checkIdentity(d);
  checkBars(d.bars);
  checkCapabilities(d);
}
