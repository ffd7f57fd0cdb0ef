/**
 * Every refusal of an inconsistent declaration, each naming the field at fault (the server
 * refusing such a device at start is in tests/pci-function.test.ts).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { BarDeclaration, CapabilityDeclaration, PciFunctionDeclaration } from './declaration.ts';
import { PciDeclarationError, validateDeclaration } from './validate.ts';

const MiB = 1n << 20n;

const good: PciFunctionDeclaration = {
  name: 'sample',
  vendorId: 0x1234,
  deviceId: 0x0001,
  revision: 1,
  classCode: 0xff0000,
  subsystemVendorId: 0x1af4,
  subsystemId: 0x1100,
  interruptPin: 1,
  bars: [
    { index: 0, size: 4096n, backing: 'trapped' },
    { index: 2, size: 16n * MiB, is64: true, prefetchable: true, backing: 'memory', trappedRanges: [{ offset: 0n, size: 4096n }] },
  ],
  capabilities: [
    { kind: 'msi', vectors: 4, address64: true },
    { kind: 'pm', softReset: true },
    { kind: 'pcie', flr: true },
  ],
};

const withBars = (...bars: BarDeclaration[]): PciFunctionDeclaration => ({ ...good, bars });
const withCaps = (...capabilities: CapabilityDeclaration[]): PciFunctionDeclaration => ({ ...good, capabilities });

function refuses(d: PciFunctionDeclaration, field: string, why: RegExp): void {
  assert.throws(
    () => validateDeclaration(d),
    (err: unknown) => {
      assert.ok(err instanceof PciDeclarationError, `not a PciDeclarationError: ${String(err)}`);
      assert.equal(err.field, field);
      assert.match(err.message, why);
      assert.ok(err.message.startsWith(`${field}: `), 'the message starts with the field');
      return true;
    },
  );
}

describe('PCI declaration validation', () => {
  it('accepts a consistent declaration', () => {
    validateDeclaration(good);
  });

  it('refuses identities that do not fit their registers', () => {
    refuses({ ...good, vendorId: 0x10000 }, 'vendorId', /16-bit/);
    refuses({ ...good, vendorId: 0xffff }, 'vendorId', /no device/);
    refuses({ ...good, deviceId: -1 }, 'deviceId', /16-bit/);
    refuses({ ...good, revision: 256 }, 'revision', /8-bit/);
    refuses({ ...good, classCode: 0x1000000 }, 'classCode', /24-bit/);
    refuses({ ...good, subsystemId: 1.5 }, 'subsystemId', /16-bit/);
    refuses({ ...good, interruptPin: 5 }, 'interruptPin', /INTA#–INTD#/);
    refuses({ ...good, name: '' }, 'name', /needs a name/);
  });

  it('refuses odd, too small, too large and too-wide-for-32-bit BAR sizes', () => {
    refuses(withBars({ index: 0, size: 3000n, backing: 'trapped' }), 'bars[0].size', /power of two/);
    refuses(withBars({ index: 0, size: 8n, backing: 'trapped' }), 'bars[0].size', /from 16 bytes/);
    refuses(withBars({ index: 0, size: 2048n, backing: 'memory' }), 'bars[0].size', /from 4096 bytes/);
    refuses(withBars({ index: 0, size: 2n << 40n, is64: true, backing: 'memory' }), 'bars[0].size', /to 1 TiB/);
    refuses(withBars({ index: 0, size: 4n << 30n, backing: 'memory' }), 'bars[0].size', /32-bit BAR: set is64/);
  });

  it('refuses overlapping BAR slots, including the upper half of a 64-bit BAR, and a 64-bit BAR in slot 5', () => {
    refuses(withBars({ index: 1, size: 4096n, backing: 'trapped' }, { index: 1, size: 4096n, backing: 'trapped' }), 'bars[1].index', /slot 1 is already taken by bars\[0\]/);
    refuses(
      withBars({ index: 0, size: MiB, is64: true, backing: 'memory' }, { index: 1, size: 4096n, backing: 'trapped' }),
      'bars[1].index',
      /slot 1 is already taken by bars\[0\] \(upper half of a 64-bit BAR\)/,
    );
    refuses(withBars({ index: 5, size: MiB, is64: true, backing: 'memory' }), 'bars[0].is64', /slot 5 has no slot 6/);
    refuses(withBars({ index: 6, size: 4096n, backing: 'trapped' }), 'bars[0].index', /not a BAR slot 0–5/);
  });

  it('refuses a backing it does not know and huge pages where they cannot be', () => {
    refuses(withBars({ index: 0, size: 4096n, backing: 'rom' as 'memory' }), 'bars[0].backing', /"rom" is not/);
    refuses(withBars({ index: 0, size: 4096n, backing: 'trapped', hugePages: true }), 'bars[0].hugePages', /shared-memory BAR/);
    refuses(withBars({ index: 0, size: MiB, backing: 'memory', hugePages: true }), 'bars[0].hugePages', /at least 2 MiB/);
  });

  it('refuses trapped ranges that are not whole pages, leave the BAR, overlap, or sit in a trapped BAR', () => {
    const bar = (trappedRanges: { offset: bigint; size: bigint }[], backing: 'memory' | 'trapped' = 'memory') => withBars({ index: 0, size: MiB, backing, trappedRanges });
    refuses(bar([{ offset: 0x800n, size: 4096n }]), 'bars[0].trappedRanges[0x800]', /multiples of 4096/);
    refuses(bar([{ offset: 0n, size: 0n }]), 'bars[0].trappedRanges[0x0]', /non-empty/);
    refuses(bar([{ offset: MiB - 4096n, size: 8192n }]), 'bars[0].trappedRanges[0xff000]', /past the BAR/);
    refuses(bar([{ offset: 0n, size: 8192n }, { offset: 4096n, size: 4096n }]), 'bars[0].trappedRanges[0x1000]', /overlaps/);
    refuses(bar([{ offset: 0n, size: 4096n }], 'trapped'), 'bars[0].trappedRanges', /only a shared-memory BAR/);
  });

  it('refuses overlapping, misplaced and duplicated capabilities, and impossible MSI vector counts', () => {
    refuses(withCaps({ kind: 'msi', vectors: 1, address64: true, offset: 0x40 }, { kind: 'pm', softReset: true, offset: 0x48 }), 'capabilities[1].offset', /\[0x48, 0x50\) overlaps capabilities\[0\]/);
    refuses(withCaps({ kind: 'pm', softReset: true, offset: 0x30 }), 'capabilities[0].offset', /inside 0x40–0xff/);
    refuses(withCaps({ kind: 'pm', softReset: true, offset: 0x42 }), 'capabilities[0].offset', /dword aligned/);
    refuses(withCaps({ kind: 'pcie', flr: true, offset: 0xd0 }), 'capabilities[0].offset', /inside 0x40–0xff/);
    refuses(withCaps({ kind: 'pm', softReset: true }, { kind: 'pm', softReset: false }), 'capabilities[1].kind', /a second "pm"/);
    refuses(withCaps({ kind: 'msi', vectors: 3, address64: false }), 'capabilities[0].vectors', /power of two from 1 to 32/);
    refuses(withCaps({ kind: 'msi', vectors: 64, address64: false }), 'capabilities[0].vectors', /power of two from 1 to 32/);
  });
});

describe('MSI-X declaration validation', () => {
  const trappedBar0 = { index: 0, size: 16384n, backing: 'trapped' } as const;
  const msix = (table: { bar: number; offset: bigint }, pba: { bar: number; offset: bigint }, vectors = 8): PciFunctionDeclaration => ({
    ...good,
    bars: [trappedBar0, { index: 2, size: MiB, is64: true, backing: 'memory', trappedRanges: [{ offset: 0n, size: 4096n }] }],
    capabilities: [{ kind: 'msix', vectors, table, pba }],
  });

  it('accepts a table and PBA in a trapped BAR and in a trapped page of a RAM BAR', () => {
    validateDeclaration(msix({ bar: 0, offset: 0x2000n }, { bar: 0, offset: 0x3000n }));
    validateDeclaration(msix({ bar: 2, offset: 0n }, { bar: 2, offset: 0x800n }));
  });

  it('refuses a table or PBA outside its BAR, in shared memory, misaligned, in an undeclared BAR, or overlapping', () => {
    refuses(msix({ bar: 0, offset: 0x3f80n }, { bar: 0, offset: 0n }, 16), 'capabilities[0].table.offset', /\[0x3f80, 0x4080\) does not fit in BAR0/);
    refuses(msix({ bar: 2, offset: 0x1000n }, { bar: 0, offset: 0n }), 'capabilities[0].table', /lies in BAR2's shared memory/);
    refuses(msix({ bar: 0, offset: 0x2004n }, { bar: 0, offset: 0n }), 'capabilities[0].table.offset', /not qword/);
    refuses(msix({ bar: 4, offset: 0n }, { bar: 0, offset: 0n }), 'capabilities[0].table.bar', /BAR4 is not declared/);
    refuses(msix({ bar: 0, offset: 0n }, { bar: 0, offset: 0x40n }), 'capabilities[0].pba', /overlaps the vector table/);
    refuses(msix({ bar: 0, offset: 0n }, { bar: 0, offset: 0x4000n }), 'capabilities[0].pba.offset', /does not fit in BAR0/);
    refuses(msix({ bar: 0, offset: 0n }, { bar: 0, offset: 0x1000n }, 4096), 'capabilities[0].vectors', /from 1 to 2048/);
  });
});
