import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemfdMemory } from './shared-memory.ts';

const MiB = 1 << 20;

describe('MemfdMemory', () => {
  it('gives V8 no view of the region until someone reads it (each view counts as external memory and can force a GC)', () => {
    const external = () => process.memoryUsage().external;
    const before = external();
    const memory = new MemfdMemory('shared-memory-test', 64n * BigInt(MiB));
    try {
      assert.ok(external() - before < MiB, `creating the region added ${external() - before} bytes of external memory`);
      memory.bytes(100, 4).set([1, 2, 3, 4]);
      // The 64 MiB view can start a GC that frees other external memory meanwhile: half of it
      // is the margin (nothing else here holds anywhere near 32 MiB).
      assert.ok(external() - before >= 32 * MiB, `the first access views the whole region (external memory grew ${external() - before} bytes)`);
      assert.deepEqual([...memory.bytes(100, 4)], [1, 2, 3, 4]);
      assert.throws(() => memory.bytes(64 * MiB - 2, 4), RangeError);
    } finally {
      memory.close();
    }
    assert.throws(() => memory.bytes(0, 1), /used after close/);
  });
});
