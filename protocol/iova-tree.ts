/**
 * An ordered set of non-overlapping address ranges: the DMA map table's index.
 *
 * A vIOMMU makes QEMU send one DMA_MAP per 4 KiB page, so a guest pinning 1 GiB leaves ~262,000
 * ranges here and then unmaps them one by one. A sorted array pays O(n) per insert or removal
 * in the middle or at the front (unmapping 262,144 pages lowest first took 50 s that way); this
 * treap (a binary search tree balanced by random priorities) pays O(log n) expected for insert,
 * remove and lookup, and threads its nodes in address order (prev/next) so a transfer spanning
 * many adjacent pages walks them in O(1) each.
 */

/** A range kept in the tree; the tree owns the link fields. */
export interface IovaNode {
  readonly address: bigint;
  readonly size: bigint;
  /** Tree links: set and cleared by IovaTree only. */
  left: IovaNode | null;
  right: IovaNode | null;
  priority: number;
  /** The neighbours in address order (null at either end). */
  prev: IovaNode | null;
  next: IovaNode | null;
}

/** The link fields of a node not (yet) in a tree. */
export function unlinked(): Pick<IovaNode, 'left' | 'right' | 'priority' | 'prev' | 'next'> {
  return { left: null, right: null, priority: (Math.random() * 0x7fffffff) | 0, prev: null, next: null };
}

export class IovaTree<T extends IovaNode> {
  private root: T | null = null;
  private head: T | null = null;
  private tail: T | null = null;
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** The lowest range, or null. */
  get first(): T | null {
    return this.head;
  }

  /** The first range whose end is above `address` (the one containing it, or the next one up). */
  firstEndingAfter(address: bigint): T | null {
    let found: T | null = null;
    let n = this.root;
    while (n) {
      if (n.address + n.size > address) {
        found = n;
        n = n.left as T | null;
      } else {
        n = n.right as T | null;
      }
    }
    return found;
  }

  /**
   * Adds `node`, which must overlap no range in the tree (the caller checks with
   * firstEndingAfter) and must carry fresh links (unlinked()).
   */
  insert(node: T): void {
    const after = this.firstEndingAfter(node.address);
    const before = (after ? after.prev : this.tail) as T | null;
    node.prev = before;
    node.next = after;
    if (before) before.next = node;
    else this.head = node;
    if (after) after.prev = node;
    else this.tail = node;
    const [low, high] = split(this.root, node.address);
    this.root = merge(merge(low, node), high);
    this.count++;
  }

  /** Removes `node`, which must be in this tree. */
  delete(node: T): void {
    this.root = removeKey(this.root, node.address);
    const { prev, next } = node;
    if (prev) prev.next = next;
    else this.head = next as T | null;
    if (next) next.prev = prev;
    else this.tail = prev as T | null;
    node.left = node.right = node.prev = node.next = null;
    this.count--;
  }

  /** Forgets every range; returns them in address order. */
  clear(): T[] {
    const all = [...this];
    this.root = this.head = this.tail = null;
    this.count = 0;
    for (const n of all) n.left = n.right = n.prev = n.next = null;
    return all;
  }

  *[Symbol.iterator](): IterableIterator<T> {
    for (let n = this.head; n; n = n.next as T | null) yield n;
  }
}

/** Splits a subtree into the nodes below `key` and those at or above it. */
function split<T extends IovaNode>(n: T | null, key: bigint): [T | null, T | null] {
  if (!n) return [null, null];
  if (n.address < key) {
    const [low, high] = split(n.right as T | null, key);
    n.right = low;
    return [n, high];
  }
  const [low, high] = split(n.left as T | null, key);
  n.left = high;
  return [low, n];
}

/** Joins two subtrees where every key of `a` is below every key of `b`. */
function merge<T extends IovaNode>(a: T | null, b: T | null): T | null {
  if (!a) return b;
  if (!b) return a;
  if (a.priority > b.priority) {
    a.right = merge(a.right as T | null, b);
    return a;
  }
  b.left = merge(a, b.left as T | null);
  return b;
}

function removeKey<T extends IovaNode>(n: T | null, key: bigint): T | null {
  if (!n) return null;
  if (key < n.address) n.left = removeKey(n.left as T | null, key);
  else if (key > n.address) n.right = removeKey(n.right as T | null, key);
  else return merge(n.left as T | null, n.right as T | null);
  return n;
}
