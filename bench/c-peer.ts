/**
 * The C vfio-user peer (bench/c-peer.c with its DMA table c-peer-dma.c), the reference the guest-mmio suite holds edu-plus
 * against: built with the host gcc into this checkout's cache (never committed as a binary)
 * and run as a child process that serves one client after another until stopped.
 *
 *   const peer = await startCPeer(socketPath, { maxDmaMaps: dmaMapsForGuest(1024) });
 *   ... attach QEMU (or a host client) to socketPath ...
 *   await peer.stop();
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { checkoutCacheDir } from '../qemu-configs/cache.ts';
import { compileC, compilerVersion, startServer, stopServer } from './processes.ts';

const SOURCES = ['c-peer.c', 'c-peer-dma.c'].map((f) => join(import.meta.dirname, f));
/** Not compiled on its own, but part of what the binary is built from. */
const HEADER = join(import.meta.dirname, 'c-peer.h');

export interface CPeerBuild {
  readonly binary: string;
  /** e.g. "gcc 12.2.0 -O2". */
  readonly compiler: string;
}

/**
 * Compiles c-peer.c and c-peer-dma.c unless these sources and compiler were built before: the
 * binary's name carries a hash of all of them, under `<checkout cache>/bench/`.
 */
export function buildCPeer(): CPeerBuild {
  const version = compilerVersion();
  const digest = createHash('sha256').update(version);
  for (const file of [...SOURCES, HEADER]) digest.update(readFileSync(file));
  const hash = digest.digest('hex').slice(0, 12);
  const binary = join(checkoutCacheDir(), 'bench', `c-peer-${hash}`);
  const compiler = `gcc ${version} -O2`;
  if (existsSync(binary)) return { binary, compiler };
  mkdirSync(dirname(binary), { recursive: true });
  // Built under a temporary name and renamed: a concurrent run never executes half a binary.
  const partial = `${binary}.tmp-${process.pid}`;
  compileC(SOURCES, partial);
  renameSync(partial, binary);
  return { binary, compiler };
}

/** max_dma_maps for a guest of this much RAM mapped page by page through a vIOMMU. */
export function dmaMapsForGuest(memoryMiB: number): number {
  return memoryMiB * 256;
}

export interface CPeerOptions {
  /** Most DMA maps held at once (default 1,048,576: 4 GiB of 4 KiB pages). VERSION advertises at most 65,535. */
  readonly maxDmaMaps?: number;
  /** BAR1 size in MiB, a power of two (default 64, as edu-plus). */
  readonly bar1MiB?: number;
}

export interface RunningCPeer {
  readonly pid: number;
  /** Everything it wrote to stderr so far (errors only). */
  stderr(): string;
  /** SIGTERM, then waits for it to exit. */
  stop(): Promise<void>;
}

/** Builds (if needed) and starts the C peer on socketPath; resolves once it listens. */
export async function startCPeer(socketPath: string, opts: CPeerOptions = {}): Promise<RunningCPeer> {
  const { binary } = buildCPeer();
  const argv = [binary, socketPath];
  if (opts.maxDmaMaps !== undefined) argv.push('--max-dma-maps', String(opts.maxDmaMaps));
  if (opts.bar1MiB !== undefined) argv.push('--bar1-mib', String(opts.bar1MiB));
  const server = await startServer(argv, import.meta.dirname);
  return {
    pid: server.child.pid!,
    stderr: () => server.stderr(),
    stop: () => stopServer(server),
  };
}
