import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Errno } from './errors.ts';
import { FrameDecoder } from './framing.ts';

/** Builds a message by hand (independent of the production header encoder). */
function message(id: number, command: number, payload: number[] = [], sizeOverride?: number): Buffer {
  const b = Buffer.alloc(16 + payload.length);
  b.writeUInt16LE(id, 0);
  b.writeUInt16LE(command, 2);
  b.writeUInt32LE(sizeOverride ?? 16 + payload.length, 4);
  b.writeUInt32LE(0, 8);
  b.writeUInt32LE(0, 12);
  Buffer.from(payload).copy(b, 16);
  return b;
}

const decoder = () => new FrameDecoder({ maxMessageSize: () => 1024 });

describe('FrameDecoder', () => {
  it('frames one whole message', () => {
    const { frames, error } = decoder().push(message(7, 9, [1, 2, 3]), []);
    assert.equal(error, undefined);
    assert.equal(frames.length, 1);
    assert.deepEqual({ id: frames[0]!.header.id, command: frames[0]!.header.command, size: frames[0]!.header.size }, { id: 7, command: 9, size: 19 });
    assert.deepEqual([...frames[0]!.body], [1, 2, 3]);
  });

  it('frames several messages merged into one read', () => {
    const joined = Buffer.concat([message(1, 4, [9]), message(2, 5), message(3, 9, [1, 2, 3, 4, 5, 6, 7, 8])]);
    const { frames } = decoder().push(joined, []);
    assert.deepEqual(frames.map((f) => f.header.id), [1, 2, 3]);
    assert.deepEqual(frames.map((f) => f.body.length), [1, 0, 8]);
  });

  for (const [where, cut] of [
    ['inside the header', 5],
    ['right after the header', 16],
    ['inside the payload', 20],
  ] as const) {
    it(`reassembles a message split ${where}`, () => {
      const m = message(11, 10, Array.from({ length: 12 }, (_, i) => i + 100));
      const d = decoder();
      assert.equal(d.push(m.subarray(0, cut), []).frames.length, 0);
      assert.equal(d.buffered, cut);
      const { frames } = d.push(m.subarray(cut), []);
      assert.equal(frames.length, 1);
      assert.deepEqual([...frames[0]!.body], Array.from({ length: 12 }, (_, i) => i + 100));
      assert.equal(d.buffered, 0);
    });
  }

  it('survives a stream fed one byte at a time', () => {
    const stream = Buffer.concat([message(1, 1, [1, 2]), message(2, 2), message(3, 3, [3])]);
    const d = decoder();
    const ids: number[] = [];
    for (const byte of stream) for (const f of d.push(Buffer.from([byte]), []).frames) ids.push(f.header.id);
    assert.deepEqual(ids, [1, 2, 3]);
  });

  it('keeps a held-back body intact when the read buffer is reused', () => {
    const m = message(5, 10, [1, 2, 3, 4]);
    const readBuf = Buffer.alloc(64);
    const d = decoder();
    m.copy(readBuf, 0, 0, 18);
    d.push(readBuf.subarray(0, 18), []);
    readBuf.fill(0xee);
    m.copy(readBuf, 0, 18);
    const { frames } = d.push(readBuf.subarray(0, m.length - 18), []);
    assert.deepEqual([...frames[0]!.body], [1, 2, 3, 4]);
  });

  it('rejects a size smaller than the header with EINVAL', () => {
    const { frames, error } = decoder().push(message(9, 1, [], 8), []);
    assert.equal(frames.length, 0);
    assert.equal(error?.errno, Errno.EINVAL);
    assert.equal(error?.header.id, 9);
  });

  it('rejects a size above the limit with E2BIG', () => {
    const { error } = decoder().push(message(4, 10, [], 4096), []);
    assert.equal(error?.errno, Errno.E2BIG);
  });

  it('returns the good messages before a bad header and keeps its fds as orphans', () => {
    const d = decoder();
    const r1 = d.push(message(1, 1), []);
    assert.equal(r1.frames.length, 1);
    const r2 = d.push(message(2, 2, [], 3), [42]);
    assert.ok(r2.error);
    assert.deepEqual(d.takeOrphanFds(), [42]);
  });

  describe('pairs fds with messages', () => {
    it('gives fds to the message that starts in the read', () => {
      const { frames } = decoder().push(message(1, 2, [0, 0, 0, 0]), [10]);
      assert.deepEqual(frames[0]!.fds, [10]);
    });

    it('gives fds to the last message starting in a merged read', () => {
      const { frames } = decoder().push(Buffer.concat([message(1, 9), message(2, 2, [1])]), [10, 11]);
      assert.deepEqual(frames.map((f) => f.fds), [[], [10, 11]]);
    });

    it('gives fds to a message whose start arrived in the same read as an earlier tail', () => {
      const a = message(1, 9, [1, 2, 3, 4]);
      const b = message(2, 2, [5, 6]);
      const d = decoder();
      d.push(a.subarray(0, 10), []);
      const { frames } = d.push(Buffer.concat([a.subarray(10), b]), [33]);
      assert.deepEqual(frames.map((f) => f.fds), [[], [33]]);
    });

    it('keeps fds with a message that completes in a later read', () => {
      const m = message(3, 2, Array.from({ length: 32 }, () => 0));
      const d = decoder();
      assert.equal(d.push(m.subarray(0, 20), [7]).frames.length, 0);
      const { frames } = d.push(m.subarray(20), []);
      assert.deepEqual(frames[0]!.fds, [7]);
    });
  });
});
