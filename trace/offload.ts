/**
 * Heavy work on device memory off the message loop: a piscina pool of worker threads (started
 * on first use, at most two threads on this two-core class of machine). While a task runs, the
 * loop keeps answering the client — register reads stay responsive.
 *
 * Only the trace channel asks for such work (checksum-region), so the pool lives here and the
 * vfio-user side (protocol/) carries no worker-thread dependency.
 */
import { Piscina } from 'piscina';
import type { SharedMemory } from '../protocol/served-device.ts';
import { MemfdMemory } from '../protocol/shared-memory.ts';
import type { ChecksumTask } from './workers/memory-tasks.ts';

let pool: Piscina | null = null;

function workers(): Piscina {
  pool ??= new Piscina({
    filename: new URL('./workers/boot.mjs', import.meta.url).href,
    maxThreads: 2,
    idleTimeout: 30_000,
  });
  return pool;
}

/** A hash of [offset, offset+length) of a shared-memory region, computed in a worker thread. */
export async function checksumMemory(memory: SharedMemory, offset: number, length: number, algorithm = 'sha256'): Promise<string> {
  if (!(memory instanceof MemfdMemory)) throw new Error('only server-allocated shared memory can be checksummed off-thread');
  if (offset < 0 || length <= 0 || BigInt(offset + length) > memory.size) {
    throw new RangeError(`checksum range [${offset}, +${length}) is outside the ${memory.size}-byte region`);
  }
  const task: ChecksumTask = { op: 'checksum', fd: memory.fd, offset, length, algorithm };
  return (await workers().run(task)) as string;
}

/** Stops the worker threads (tests and shutdown); the next task starts a new pool. */
export async function closeOffload(): Promise<void> {
  const p = pool;
  pool = null;
  await p?.destroy();
}
