// Where provisioned artefacts live, and the one progress logger every provisioning step uses.
//
// Everything this folder fetches or builds (the private apt state, QEMU's prefix, the guest
// kernel, busybox, initramfs images) goes below cacheDir(); nothing is installed on the host.

import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';

/** `$EDU_PLUS_CACHE`, else `${XDG_CACHE_HOME:-$HOME/.cache}/edu-plus`. */
export function cacheDir(): string {
  const explicit = process.env.EDU_PLUS_CACHE;
  if (explicit !== undefined && explicit !== '') return explicit;
  const xdg = process.env.XDG_CACHE_HOME;
  const base = xdg !== undefined && xdg !== '' ? xdg : join(homedir(), '.cache');
  return join(base, 'edu-plus');
}

/** This checkout's root (the folder holding package.json). */
const CHECKOUT_ROOT = join(import.meta.dirname, '..');

/**
 * Where this checkout keeps what it builds from its own sources (guest test binaries, initramfs
 * images): `<cache>/checkouts/<hash of the checkout's path>`. Downloads stay shared, but two
 * clones running tests at once must not overwrite each other's binaries and images.
 */
export function checkoutCacheDir(rootDir: string = CHECKOUT_ROOT): string {
  return join(cacheDir(), 'checkouts', createHash('sha256').update(rootDir).digest('hex').slice(0, 12));
}

export interface Progress {
  /** One line of progress for this step. */
  info(msg: string): void;
  /** Marks the step finished; prints the elapsed time. */
  done(msg?: string): void;
}

/** Set EDU_PLUS_QUIET=1 to silence progress output (errors are still thrown). */
function quiet(): boolean {
  return process.env.EDU_PLUS_QUIET === '1';
}

/**
 * A logger for one provisioning step: `[edu-plus] <step>: <msg>` lines on stderr, so a command
 * whose stdout is parsed (paths, JSON) stays clean.
 */
export function progress(step: string): Progress {
  const started = performance.now();
  const emit = (msg: string): void => {
    if (!quiet()) process.stderr.write(`[edu-plus] ${step}: ${msg}\n`);
  };
  return {
    info: emit,
    done(msg?: string): void {
      const seconds = ((performance.now() - started) / 1000).toFixed(2);
      emit(`${msg ?? 'done'} (${seconds} s)`);
    },
  };
}

/**
 * Reads a JSON marker written by writeMarker(), or undefined when it is missing or unreadable.
 * Markers are written last, after an artefact is complete, so their presence means "reusable".
 */
export async function readMarker<T>(path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

/** Writes a marker atomically (temp file + rename), so a crash never leaves half a marker. */
export async function writeMarker(path: string, value: unknown): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, `${JSON.stringify(value, null, 2)}\n`);
  await rename(tmp, path);
}
