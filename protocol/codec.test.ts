/** Codec against bytes laid out by hand from the spec (not by the production writer). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  decodeCaps,
  decodeDmaMap,
  decodeDmaUnmap,
  decodeIrqSet,
  decodeRegionAccess,
  decodeRegionInfo,
  decodeSparseAreas,
  decodeVersion,
  encodeRegionAccess,
  encodeRegionInfo,
  encodeSparseMmapCap,
  encodeVersion,
} from './codec.ts';
import { Errno, VfioUserError } from './errors.ts';

/** Little-endian fields laid out in order: [bytes, value]. */
function bytes(...fields: [1 | 2 | 4 | 8, number | bigint][]): Buffer {
  const parts = fields.map(([n, v]) => {
    const b = Buffer.alloc(n);
    if (n === 8) b.writeBigUInt64LE(BigInt(v));
    else b.writeUIntLE(Number(v), 0, n);
    return b;
  });
  return Buffer.concat(parts);
}

const isEinval = (err: unknown) => err instanceof VfioUserError && err.errno === Errno.EINVAL;

describe('VERSION', () => {
  it('decodes major, minor and the NUL-terminated JSON', () => {
    const json = '{"capabilities":{"max_msg_fds":16}}';
    const body = Buffer.concat([bytes([2, 0], [2, 0]), Buffer.from(json + '\0')]);
    assert.deepEqual(decodeVersion(body), { major: 0, minor: 0, json });
  });

  it('accepts a VERSION without capabilities', () => {
    assert.deepEqual(decodeVersion(bytes([2, 0], [2, 3])), { major: 0, minor: 3 });
  });

  it('refuses JSON without its NUL, and a NUL in the middle', () => {
    assert.throws(() => decodeVersion(Buffer.concat([bytes([2, 0], [2, 0]), Buffer.from('{}')])), isEinval);
    assert.throws(() => decodeVersion(Buffer.concat([bytes([2, 0], [2, 0]), Buffer.from('{}\0x\0')])), isEinval);
  });

  it('refuses a body shorter than major+minor', () => {
    assert.throws(() => decodeVersion(bytes([2, 0])), isEinval);
  });

  it('encodes with a trailing NUL', () => {
    const out = encodeVersion({ major: 0, minor: 0, json: '{}' });
    assert.deepEqual([...out], [0, 0, 0, 0, 0x7b, 0x7d, 0]);
  });
});

describe('region info', () => {
  it('decodes the fixed struct with u64 size and offset', () => {
    const body = bytes([4, 32], [4, 7], [4, 1], [4, 0], [8, 1n << 36n], [8, 0x1000n]);
    assert.deepEqual(decodeRegionInfo(body), { argsz: 32, flags: 7, index: 1, capOffset: 0, size: 1n << 36n, offset: 0x1000n });
  });

  it('lays out the sparse-mmap capability as linux/vfio.h does', () => {
    const cap = encodeSparseMmapCap([{ offset: 0n, size: 0x4000000n }]);
    const expected = bytes([2, 1], [2, 1], [4, 0], [4, 1], [4, 0], [8, 0n], [8, 0x4000000n]);
    assert.deepEqual([...cap], [...expected]);
    const info = encodeRegionInfo({ argsz: 32 + cap.length, flags: 15, index: 1, capOffset: 32, size: 0x4000000n, offset: 0n, caps: cap });
    const back = decodeRegionInfo(info);
    const caps = decodeCaps(back);
    assert.deepEqual(caps.map((c) => [c.id, c.version]), [[1, 1]]);
    assert.deepEqual(decodeSparseAreas(caps[0]!), [{ offset: 0n, size: 0x4000000n }]);
  });

  it('refuses a capability chain that loops or points outside the reply', () => {
    const loop = Buffer.concat([bytes([4, 48], [4, 8], [4, 1], [4, 32], [8, 0n], [8, 0n]), bytes([2, 1], [2, 1], [4, 32], [8, 0n])]);
    assert.throws(() => decodeCaps(decodeRegionInfo(loop)), isEinval);
    const outside = Buffer.concat([bytes([4, 40], [4, 8], [4, 1], [4, 4096], [8, 0n], [8, 0n]), bytes([8, 0n])]);
    assert.throws(() => decodeCaps(decodeRegionInfo(outside)), isEinval);
  });

  it('refuses a short region info', () => {
    assert.throws(() => decodeRegionInfo(bytes([4, 32], [4, 0], [4, 1])), isEinval);
  });
});

describe('region access', () => {
  it('decodes offset u64, region, count and the data that follows', () => {
    const body = Buffer.concat([bytes([8, 0xffff_ffff_0000_0004n], [4, 7], [4, 2]), Buffer.from([0xaa, 0xbb])]);
    const a = decodeRegionAccess(body);
    assert.equal(a.offset, 0xffff_ffff_0000_0004n);
    assert.deepEqual([a.region, a.count, ...a.data], [7, 2, 0xaa, 0xbb]);
  });

  it('encodes the same layout', () => {
    const out = encodeRegionAccess({ offset: 4n, region: 0, count: 4, data: Uint8Array.of(1, 2, 3, 4) });
    assert.deepEqual([...out], [...bytes([8, 4n], [4, 0], [4, 4]), 1, 2, 3, 4]);
  });

  it('refuses a body shorter than its 16-byte header', () => {
    assert.throws(() => decodeRegionAccess(bytes([8, 0n], [4, 0])), isEinval);
  });
});

describe('DMA and irq structures', () => {
  it('decodes DMA_MAP (argsz, flags, offset, address, size)', () => {
    const m = decodeDmaMap(bytes([4, 32], [4, 3], [8, 0x2000n], [8, 0xfee0_0000n], [8, 0x1000n]));
    assert.deepEqual(m, { argsz: 32, flags: 3, offset: 0x2000n, address: 0xfee0_0000n, size: 0x1000n });
  });

  it('decodes DMA_UNMAP (argsz, flags, address, size)', () => {
    assert.deepEqual(decodeDmaUnmap(bytes([4, 24], [4, 2], [8, 0n], [8, 0n])), { argsz: 24, flags: 2, address: 0n, size: 0n });
  });

  it('decodes SET_IRQS with its DATA_BOOL bytes', () => {
    const s = decodeIrqSet(Buffer.concat([bytes([4, 22], [4, 0x22], [4, 1], [4, 0], [4, 2]), Buffer.from([1, 0])]));
    assert.deepEqual({ ...s, data: [...s.data] }, { argsz: 22, flags: 0x22, index: 1, start: 0, count: 2, data: [1, 0] });
  });

  it('refuses short DMA and irq bodies', () => {
    assert.throws(() => decodeDmaMap(bytes([4, 32], [4, 3], [8, 0n])), isEinval);
    assert.throws(() => decodeDmaUnmap(bytes([4, 24])), isEinval);
    assert.throws(() => decodeIrqSet(bytes([4, 20], [4, 0x21])), isEinval);
  });
});
