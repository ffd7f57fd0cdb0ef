import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { IovaTree, type IovaNode, unlinked } from './iova-tree.ts';

const range = (address: bigint, size: bigint): IovaNode => ({ address, size, ...unlinked() });

/** A deterministic pseudo-random sequence (xorshift), so a failure can be replayed. */
function rng(seed: number): () => number {
  let x = seed;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x1_0000_0000;
  };
}

/** The reference: the same ranges in a plain sorted array, searched linearly. */
function firstEndingAfter(sorted: IovaNode[], address: bigint): IovaNode | null {
  return sorted.find((r) => r.address + r.size > address) ?? null;
}

describe('IovaTree', () => {
  it('keeps random inserts and deletes in address order, threaded both ways, like a sorted array', () => {
    const random = rng(12345);
    const tree = new IovaTree<IovaNode>();
    const reference: IovaNode[] = [];
    // Slots of 16 pages; each holds at most one range of 1..8 pages at a random page inside it.
    const slots = new Map<number, IovaNode>();
    for (let step = 0; step < 5000; step++) {
      const slot = Math.floor(random() * 400);
      const held = slots.get(slot);
      if (held) {
        tree.delete(held);
        reference.splice(reference.indexOf(held), 1);
        slots.delete(slot);
      } else {
        const node = range(BigInt(slot * 16 + Math.floor(random() * 8)) << 12n, BigInt(1 + Math.floor(random() * 8)) << 12n);
        tree.insert(node);
        reference.push(node);
        reference.sort((a, b) => (a.address < b.address ? -1 : 1));
        slots.set(slot, node);
      }
      assert.equal(tree.size, reference.length);
      const probe = BigInt(Math.floor(random() * 400 * 16 * 4096));
      assert.equal(tree.firstEndingAfter(probe), firstEndingAfter(reference, probe), `firstEndingAfter(0x${probe.toString(16)}) at step ${step}`);
    }
    assert.deepEqual([...tree], reference);
    // prev and next agree with the order, and the ends are null.
    const all = [...tree];
    all.forEach((n, i) => {
      assert.equal(n.prev, all[i - 1] ?? null);
      assert.equal(n.next, all[i + 1] ?? null);
    });
  });

  it('finds the range containing an address, or the next one above it, or none past the last', () => {
    const tree = new IovaTree<IovaNode>();
    const a = range(0x1000n, 0x1000n);
    const b = range(0x4000n, 0x2000n);
    tree.insert(b);
    tree.insert(a);
    assert.equal(tree.firstEndingAfter(0n), a);
    assert.equal(tree.firstEndingAfter(0x1fffn), a);
    assert.equal(tree.firstEndingAfter(0x2000n), b);
    assert.equal(tree.firstEndingAfter(0x5fffn), b);
    assert.equal(tree.firstEndingAfter(0x6000n), null);
    assert.equal(tree.first, a);
  });

  it('stays shallow for 262,144 pages mapped in ascending order and unmapped from the lowest (a vIOMMU pin)', () => {
    const tree = new IovaTree<IovaNode>();
    const nodes: IovaNode[] = [];
    for (let i = 0; i < 262_144; i++) {
      const n = range(BigInt(i) << 12n, 4096n);
      nodes.push(n);
      tree.insert(n);
    }
    // A sorted insertion order would make an unbalanced tree a list; the treap stays logarithmic.
    const depth = (n: IovaNode | null): number => (n ? 1 + Math.max(depth(n.left), depth(n.right)) : 0);
    const root = (tree as unknown as { root: IovaNode | null }).root;
    assert.ok(depth(root) < 100, `depth ${depth(root)} for 262,144 nodes`);
    for (const n of nodes) tree.delete(n);
    assert.equal(tree.size, 0);
    assert.equal(tree.first, null);
  });

  it('clear() hands back every range in order and empties the tree', () => {
    const tree = new IovaTree<IovaNode>();
    const nodes = [range(0x3000n, 0x1000n), range(0x1000n, 0x1000n), range(0x2000n, 0x1000n)];
    for (const n of nodes) tree.insert(n);
    assert.deepEqual(tree.clear().map((n) => n.address), [0x1000n, 0x2000n, 0x3000n]);
    assert.equal(tree.size, 0);
    assert.equal(tree.firstEndingAfter(0n), null);
  });
});
