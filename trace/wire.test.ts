/**
 * The trace channel's framing and msgpack conventions, against bytes laid out by hand (not by
 * the encoder under test): length prefix, frames split anywhere, bigints, byte arrays, and the
 * frames a reader must refuse.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FrameDecoder, FrameError, MAX_FRAME_BYTES, encodeFrame, toIndex } from './wire.ts';

/** A frame around hand-written msgpack bytes. */
function frame(body: number[]): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32LE(body.length);
  return Buffer.concat([length, Buffer.from(body)]);
}
const str = (s: string) => [0xa0 | s.length, ...Buffer.from(s)];
/** { id: 1, op: "info" } */
const INFO_REQUEST = [0x82, ...str('id'), 0x01, ...str('op'), ...str('info')];

function decodeAll(chunks: Buffer[]): unknown[] {
  const d = new FrameDecoder();
  const out: unknown[] = [];
  for (const c of chunks) {
    d.push(c);
    for (let m = d.next(); m; m = d.next()) out.push(m.value);
  }
  return out;
}

describe('trace wire: framing', () => {
  it('encodes a 4-byte little-endian length, then one msgpack value', () => {
    const bytes = encodeFrame({ id: 1, op: 'info' });
    assert.equal(bytes.readUInt32LE(0), bytes.length - 4);
    // msgpackr writes maps as map16 (0xde) where a fixmap would do; both are msgpack maps.
    assert.ok(bytes[4] === 0xde || (bytes[4]! & 0xf0) === 0x80, `map header 0x${bytes[4]!.toString(16)}`);
    assert.deepEqual(decodeAll([bytes]), [{ id: 1, op: 'info' }]);
  });

  it('returns frames that own their bytes (msgpackr reuses its pack buffer)', () => {
    const a = encodeFrame({ id: 1, op: 'info' });
    encodeFrame({ id: 2, op: 'stats', padding: 'x'.repeat(100) });
    assert.deepEqual(decodeAll([a]), [{ id: 1, op: 'info' }]);
  });

  it('reassembles frames split at every byte, and several frames in one chunk', () => {
    const bytes = frame(INFO_REQUEST);
    for (let cut = 0; cut <= bytes.length; cut++) {
      assert.deepEqual(decodeAll([bytes.subarray(0, cut), bytes.subarray(cut)]), [{ id: 1, op: 'info' }], `cut at ${cut}`);
    }
    const three = Buffer.concat([frame([0x01]), frame(INFO_REQUEST), frame([0xc0])]);
    assert.deepEqual(decodeAll([three]), [1, { id: 1, op: 'info' }, null]);
    // Front, middle and end of one frame in separate chunks, the last carrying the next frame too.
    assert.deepEqual(decodeAll([three.subarray(0, 2), three.subarray(2, 9), three.subarray(9)]), [1, { id: 1, op: 'info' }, null]);
  });

  it('refuses a zero length and an oversized length before buffering the body', () => {
    const d = new FrameDecoder();
    d.push(Buffer.from([0, 0, 0, 0, 0x01]));
    assert.throws(() => d.next(), (e: unknown) => e instanceof FrameError && /length 0/.test(e.message));
    const big = new FrameDecoder();
    const header = Buffer.alloc(4);
    header.writeUInt32LE(MAX_FRAME_BYTES + 1);
    big.push(header);
    assert.throws(() => big.next(), (e: unknown) => e instanceof FrameError && /exceeds the limit/.test(e.message));
  });

  it('refuses a body that is not exactly one msgpack value', () => {
    for (const body of [[0x92, 0x01], [0x01, 0x02], [0xa5, 0x61]]) {
      const d = new FrameDecoder();
      d.push(frame(body));
      assert.throws(() => d.next(), FrameError, `body ${Buffer.from(body).toString('hex')}`);
    }
  });
});

describe('trace wire: values', () => {
  it('decodes msgpack int64/uint64 as bigint and small ints as numbers', () => {
    const int64 = [0xd3, 0, 0, 0, 0, 0, 0, 0, 0x05];
    const uint64 = [0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0x01];
    assert.deepEqual(decodeAll([frame([0x93, ...int64, ...uint64, 0x07])]), [[5n, (1n << 63n) + 1n, 7]]);
  });

  it('keeps each value its type through a round trip: bigint stays bigint, number stays number', () => {
    const value = { small: 5n, large: 0xffff_ffff_ffff_fff0n, negative: -3n, n32: 0x1234_5678, n40: 2 ** 40, float: 1.5 };
    assert.deepEqual(decodeAll([encodeFrame(value)]), [value]);
  });

  it('carries byte arrays as msgpack bin, decoded into memory of their own', () => {
    const bytes = frame([0x81, ...str('data'), 0xc4, 0x03, 0x0a, 0x0b, 0x0c]);
    const [decoded] = decodeAll([bytes]) as [{ data: Uint8Array }];
    assert.ok(decoded.data instanceof Uint8Array);
    bytes.fill(0);
    assert.deepEqual([...decoded.data], [0x0a, 0x0b, 0x0c]);
    // And a Uint8Array is written as bin 8 (0xc4), not as an extension type.
    const encoded = encodeFrame({ data: Uint8Array.of(0x0a, 0x0b, 0x0c) });
    assert.ok(encoded.includes(Buffer.from([0xc4, 0x03, 0x0a, 0x0b, 0x0c])));
  });

  it('accepts an index as a number or a bigint, and nothing else', () => {
    assert.equal(toIndex(7, 'region'), 7);
    assert.equal(toIndex(0x4000_0000n, 'offset'), 0x4000_0000);
    for (const bad of [-1, 1.5, '3', null, undefined, 1n << 60n, -1n]) {
      assert.throws(() => toIndex(bad, 'offset'), /offset must be a non-negative integer/);
    }
  });
});
