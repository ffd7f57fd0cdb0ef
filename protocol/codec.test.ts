/** Codec and struct tables against bytes laid out by hand from the spec (not by the production encoders). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { decodeCaps, decodeRegionAccess, decodeSparseAreas, decodeVersion, encodeRegionAccess, encodeSparseMmapCap, encodeVersion } from './codec.ts';
import { Errno, VfioUserError } from './errors.ts';
import { decodeHeader, encodeHeader } from './header.ts';
import { defineStruct } from './struct.ts';
import {
  CapHeader,
  DeviceFeature,
  DeviceInfo,
  DmaMap,
  DmaTransferHead,
  DmaUnmap,
  FeatureMigState,
  FeatureMigration,
  IrqInfo,
  IrqSet,
  MessageHeader,
  MigData,
  RegionAccess,
  RegionInfo,
  RegionIoFds,
  SparseMmapArea,
  SparseMmapCap,
  VersionHead,
  WriteMultiEntry,
  WriteMultiHead,
} from './wire.ts';

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
    const { caps, ...fields } = RegionInfo.decode(body);
    assert.deepEqual(fields, { argsz: 32, flags: 7, index: 1, capOffset: 0, size: 1n << 36n, offset: 0x1000n });
    assert.equal(caps.byteLength, 0);
  });

  it('lays out the sparse-mmap capability as linux/vfio.h does', () => {
    const cap = encodeSparseMmapCap([{ offset: 0n, size: 0x4000000n }]);
    const expected = bytes([2, 1], [2, 1], [4, 0], [4, 1], [4, 0], [8, 0n], [8, 0x4000000n]);
    assert.deepEqual([...cap], [...expected]);
    const info = RegionInfo.encode({ argsz: 32 + cap.length, flags: 15, index: 1, capOffset: 32, size: 0x4000000n, offset: 0n, caps: cap });
    const back = RegionInfo.decode(info);
    const caps = decodeCaps(back);
    assert.deepEqual(caps.map((c) => [c.id, c.version]), [[1, 1]]);
    assert.deepEqual(decodeSparseAreas(caps[0]!), [{ offset: 0n, size: 0x4000000n }]);
  });

  it('refuses a capability chain that loops or points outside the reply', () => {
    const loop = Buffer.concat([bytes([4, 48], [4, 8], [4, 1], [4, 32], [8, 0n], [8, 0n]), bytes([2, 1], [2, 1], [4, 32], [8, 0n])]);
    assert.throws(() => decodeCaps(RegionInfo.decode(loop)), isEinval);
    const outside = Buffer.concat([bytes([4, 40], [4, 8], [4, 1], [4, 4096], [8, 0n], [8, 0n]), bytes([8, 0n])]);
    assert.throws(() => decodeCaps(RegionInfo.decode(outside)), isEinval);
  });

  it('refuses a short region info', () => {
    assert.throws(() => RegionInfo.decode(bytes([4, 32], [4, 0], [4, 1])), isEinval);
  });
});

describe('region access (the hot path)', () => {
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
    const m = DmaMap.decode(bytes([4, 32], [4, 3], [8, 0x2000n], [8, 0xfee0_0000n], [8, 0x1000n]));
    assert.deepEqual(m, { argsz: 32, flags: 3, offset: 0x2000n, address: 0xfee0_0000n, size: 0x1000n });
  });

  it('decodes DMA_UNMAP (argsz, flags, address, size)', () => {
    assert.deepEqual(DmaUnmap.decode(bytes([4, 24], [4, 2], [8, 0n], [8, 0n])), { argsz: 24, flags: 2, address: 0n, size: 0n });
  });

  it('decodes SET_IRQS with its DATA_BOOL bytes', () => {
    const s = IrqSet.decode(Buffer.concat([bytes([4, 22], [4, 0x22], [4, 1], [4, 0], [4, 2]), Buffer.from([1, 0])]));
    assert.deepEqual({ ...s, data: [...s.data] }, { argsz: 22, flags: 0x22, index: 1, start: 0, count: 2, data: [1, 0] });
  });

  it('refuses short DMA and irq bodies', () => {
    assert.throws(() => DmaMap.decode(bytes([4, 32], [4, 3], [8, 0n])), isEinval);
    assert.throws(() => DmaUnmap.decode(bytes([4, 24])), isEinval);
    assert.throws(() => IrqSet.decode(bytes([4, 20], [4, 0x21])), isEinval);
  });
});

/**
 * Every struct table against linux/vfio.h and the vfio-user spec, written out here by hand:
 * name → [size, [field, offset]...]. A table that drifts from the C layout fails here, not in a
 * guest.
 */
type Described = { readonly name: string; readonly size: number; readonly fields: readonly { name: string; offset: number }[] };
const C_LAYOUTS: Record<string, [Described, number, Record<string, number>]> = {
  vfio_user_header: [MessageHeader, 16, { id: 0, command: 2, size: 4, flags: 8, error: 12 }],
  vfio_user_version: [VersionHead, 4, { major: 0, minor: 2 }],
  vfio_device_info: [DeviceInfo, 16, { argsz: 0, flags: 4, numRegions: 8, numIrqs: 12 }],
  vfio_region_info: [RegionInfo, 32, { argsz: 0, flags: 4, index: 8, capOffset: 12, size: 16, offset: 24 }],
  vfio_info_cap_header: [CapHeader, 8, { id: 0, version: 2, next: 4 }],
  vfio_region_info_cap_sparse_mmap: [SparseMmapCap, 16, { id: 0, version: 2, next: 4, nrAreas: 8, reserved: 12 }],
  vfio_region_sparse_mmap_area: [SparseMmapArea, 16, { offset: 0, size: 8 }],
  vfio_irq_info: [IrqInfo, 16, { argsz: 0, flags: 4, index: 8, count: 12 }],
  vfio_irq_set: [IrqSet, 20, { argsz: 0, flags: 4, index: 8, start: 12, count: 16 }],
  vfio_user_dma_map: [DmaMap, 32, { argsz: 0, flags: 4, offset: 8, address: 16, size: 24 }],
  vfio_user_dma_unmap: [DmaUnmap, 24, { argsz: 0, flags: 4, address: 8, size: 16 }],
  vfio_user_region_access: [RegionAccess, 16, { offset: 0, region: 8, count: 12 }],
  vfio_user_region_io_fds_request: [RegionIoFds, 16, { argsz: 0, flags: 4, index: 8, count: 12 }],
  vfio_user_write_multi: [WriteMultiHead, 8, { wrCnt: 0 }],
  vfio_user_write_multi_data: [WriteMultiEntry, 24, { offset: 0, region: 8, count: 12, data: 16 }],
  vfio_user_dma_rw: [DmaTransferHead, 16, { address: 0, count: 8 }],
  vfio_device_feature: [DeviceFeature, 8, { argsz: 0, flags: 4 }],
  vfio_device_feature_migration: [FeatureMigration, 8, { flags: 0 }],
  vfio_device_feature_mig_state: [FeatureMigState, 8, { deviceState: 0, dataFd: 4 }],
  vfio_user_mig_data: [MigData, 8, { argsz: 0, size: 4 }],
};

describe('struct tables', () => {
  for (const [name, [struct, size, offsets]] of Object.entries(C_LAYOUTS)) {
    it(`${name}: ${size} bytes, fields where the C struct has them`, () => {
      assert.equal(struct.name, name);
      assert.equal(struct.size, size);
      assert.deepEqual(Object.fromEntries(struct.fields.map((f) => [f.name, f.offset])), offsets);
    });
  }

  it('decodes u16/u32/i32/u64/u8[N] fields and the tail, and encodes them back', () => {
    const s = defineStruct('test', { a: 'u16', b: 'u16', c: 'i32', d: 'u64', e: 'u8[8]' }, 'rest');
    const body = Buffer.concat([bytes([2, 0x1234], [2, 0xffff], [4, 0xffffffff], [8, 1n << 63n]), Buffer.from([1, 2, 3, 0, 0, 0, 0, 0, 9, 9])]);
    const d = s.decode(body);
    assert.deepEqual([d.a, d.b, d.c, d.d, [...d.e], [...d.rest]], [0x1234, 0xffff, -1, 1n << 63n, [1, 2, 3, 0, 0, 0, 0, 0], [9, 9]]);
    // A u8[N] field takes at most N bytes and is zero-padded; the tail follows the fixed part.
    assert.deepEqual([...s.encode({ ...d, e: Uint8Array.of(1, 2, 3) })], [...body]);
    assert.throws(() => s.decode(body.subarray(0, 15)), isEinval);
  });

  it('refuses a table whose fields are not naturally aligned (a field is missing)', () => {
    assert.throws(() => defineStruct('bad', { a: 'u32', b: 'u64' }), /bad\.b \(u64\) at offset 4 is misaligned/);
  });
});

describe('REGION_READ/WRITE fast path', () => {
  const access = fc.record({
    offset: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
    region: fc.integer({ min: 0, max: 0xffffffff }),
    count: fc.integer({ min: 0, max: 0xffffffff }),
    data: fc.uint8Array({ maxLength: 40 }),
  });

  it('encodes exactly what the table encodes', () => {
    fc.assert(fc.property(access, (a) => assert.deepEqual([...encodeRegionAccess(a)], [...RegionAccess.encode(a)])));
  });

  it('decodes exactly what the table decodes, any body length', () => {
    fc.assert(
      // Lengths drawn evenly: fast-check's default sizes would keep most bodies under 16 bytes.
      fc.property(fc.integer({ min: 0, max: 48 }).chain((n) => fc.uint8Array({ minLength: n, maxLength: n })), (body) => {
        const outcome = (decode: (b: Uint8Array) => RegionAccess) => {
          try {
            const a = decode(body);
            return { ...a, data: [...a.data] };
          } catch (err) {
            return isEinval(err) ? 'EINVAL' : err;
          }
        };
        assert.deepEqual(outcome(decodeRegionAccess), outcome((b) => RegionAccess.decode(b)));
      }),
    );
  });

  it('decodes a view into the frame (no copy), like the table', () => {
    const frame = Buffer.concat([bytes([8, 4n], [4, 1], [4, 2]), Buffer.from([7, 8])]);
    const a = decodeRegionAccess(frame);
    frame[16] = 0x55;
    assert.equal(a.data[0], 0x55);
  });
});

describe('message header fast path', () => {
  const header = fc.record({
    id: fc.integer({ min: 0, max: 0xffff }),
    command: fc.integer({ min: 0, max: 0xffff }),
    size: fc.integer({ min: 0, max: 0xffffffff }),
    flags: fc.integer({ min: 0, max: 0xffffffff }),
    error: fc.integer({ min: 0, max: 0xffffffff }),
  });

  it('encodes and decodes exactly what the table does', () => {
    fc.assert(
      fc.property(header, (h) => {
        const bytes = MessageHeader.encode(h);
        assert.deepEqual([...encodeHeader(h)], [...bytes]);
        assert.deepEqual(decodeHeader(bytes), MessageHeader.decode(bytes));
      }),
    );
  });
});
