/**
 * DMA_MAP at guest scale, for the dma suite: what a vIOMMU makes QEMU send when a guest pins
 * 1 GiB for a device (262,144 DMA_MAPs of 4 KiB, each with the guest-RAM memfd, then the same
 * DMA_UNMAPs), sent by bench/dma-map-client.c (plain blocking C, so the time is the server's)
 * to a vfio-user server in its own process.
 *
 * measureDmaMaps takes only a socket path, so the same measurement runs against any server:
 * ours (startTsServer) or a C peer, for a ÷ C ratio.
 */
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { DmaMapTable } from '../protocol/dma.ts';
import { DEFAULT_WAIT_MICROS } from '../protocol/request-wait.ts';
import { DmaMapFlags } from '../protocol/wire.ts';
import { buildC, type RunningServer, runClient, startServer } from './processes.ts';

/** 1 GiB in 4 KiB pages. */
export const GUEST_PAGES = 262_144;

export interface DmaMapRun {
  readonly count: number;
  /** Requests in flight: 1 is QEMU's way under a vIOMMU (it waits for each reply). */
  readonly depth: number;
  readonly mapSeconds: number;
  readonly unmapSeconds: number;
  readonly mapsPerSecond: number;
  readonly unmapsPerSecond: number;
  /** Both phases: the figure the ≤ 5 s goal is about. */
  readonly totalSeconds: number;
}

/** Builds bench/dma-map-client.c into dir (gcc -O2). */
export function buildDmaMapClient(root: string, dir: string): string {
  return buildC(join(root, 'bench/dma-map-client.c'), dir, 'dma-map-client').binary;
}

/**
 * Maps `count` 4 KiB pages with DMA_MAP (an fd each) through the server on `socketPath`, then
 * unmaps them one by one, at most `depth` requests in flight. Any refused map or unmap fails
 * the run with the client's message (page number and errno).
 */
export async function measureDmaMaps(client: string, socketPath: string, opts: { count?: number; depth?: number; dir: string; timeoutMs?: number }): Promise<DmaMapRun> {
  const count = opts.count ?? GUEST_PAGES;
  const depth = opts.depth ?? 1;
  const out = join(opts.dir, `dma-maps-${process.pid}-${depth}.bin`);
  try {
    await runClient([client, socketPath, String(count), String(depth), out], opts.dir, opts.timeoutMs ?? 600_000);
    const raw = readFileSync(out);
    const mapSeconds = raw.readDoubleLE(0) / 1e9;
    const unmapSeconds = raw.readDoubleLE(8) / 1e9;
    return {
      count,
      depth,
      mapSeconds,
      unmapSeconds,
      mapsPerSecond: count / mapSeconds,
      unmapsPerSecond: count / unmapSeconds,
      totalSeconds: mapSeconds + unmapSeconds,
    };
  } finally {
    rmSync(out, { force: true });
  }
}


/** Our server (bench/serve-child.ts, the default --wait-us) on socketPath, in its own process. */
export function startTsServer(root: string, socketPath: string): Promise<RunningServer> {
  return startServer([process.execPath, '--import', 'tsx', join(root, 'bench/serve-child.ts'), socketPath, String(DEFAULT_WAIT_MICROS)], root);
}

/**
 * The server's JavaScript heap per fd-less mapping (the table's own cost; an fd-backed one adds
 * only a pointer to its shared file): `count` 4 KiB maps added to a fresh table, with a full GC
 * before each heap reading.
 */
export function heapBytesPerMap(count = GUEST_PAGES): number {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  gc();
  const before = process.memoryUsage().heapUsed;
  const table = new DmaMapTable(count);
  for (let i = 0; i < count; i++) {
    table.add({ argsz: 32, flags: DmaMapFlags.READ | DmaMapFlags.WRITE, offset: BigInt(i) << 12n, address: (1n << 32n) + (BigInt(i) << 12n), size: 4096n }, undefined);
  }
  gc();
  const bytes = (process.memoryUsage().heapUsed - before) / count;
  if (table.count !== count) throw new Error(`the table holds ${table.count} maps, expected ${count}`);
  table.clear();
  return bytes;
}
