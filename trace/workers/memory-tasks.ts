/**
 * Work on shared memory that must not stall the message loop, run in piscina's worker
 * threads. Workers share the process's fd table, so a task names the memfd by number and maps
 * just the window it needs; the mapping is gone before the task returns.
 */
import { createHash } from 'node:crypto';
import { PROT_READ, mmapShared, munmap, viewOf } from '../../protocol/native/libc.ts';

export interface ChecksumTask {
  readonly op: 'checksum';
  readonly fd: number;
  readonly offset: number;
  readonly length: number;
  /** A node:crypto hash name, e.g. "sha256". */
  readonly algorithm: string;
}

const PAGE = 4096;
/** Hash in slices so a view never exceeds what V8 allows in one ArrayBuffer. */
const SLICE = 64 << 20;

export default function run(task: ChecksumTask): string {
  if (task.op !== 'checksum') throw new Error(`unknown memory task ${String((task as { op?: unknown }).op)}`);
  const start = Math.floor(task.offset / PAGE) * PAGE;
  const lead = task.offset - start;
  const mapped = BigInt(lead + task.length);
  const addr = mmapShared(task.fd, mapped, BigInt(start), PROT_READ);
  try {
    const hash = createHash(task.algorithm);
    for (let at = 0; at < task.length; at += SLICE) {
      const n = Math.min(SLICE, task.length - at);
      hash.update(new Uint8Array(viewOf(addr + BigInt(lead + at), n)));
    }
    return hash.digest('hex');
  } finally {
    munmap(addr, mapped);
  }
}
