/** Minimal flag parsing with errors that say what to do (no dependency needed for four flags). */
import type { WaitMechanism } from '../protocol/channel.ts';
import { DEFAULT_WAIT_MICROS } from '../protocol/request-wait.ts';

export class UsageError extends Error {}

/**
 * 'list': a string option that may be repeated; every value is kept, in order.
 * 'optional': a string option whose value may be left out (`--name` alone gives ''); the next
 * argument is its value unless it starts with '-'.
 */
type FlagKinds = Record<string, 'string' | 'boolean' | 'list' | 'optional'>;
type Parsed<K extends FlagKinds> = {
  [F in keyof K]?: K[F] extends 'string' | 'optional' ? string : K[F] extends 'list' ? string[] : boolean;
} & { _: string[] };

/** Parses `--name value`, `--name=value`, boolean `--name`, and `-h` for help. */
export function parseFlags<K extends FlagKinds>(argv: string[], kinds: K): Parsed<K> {
  const out: Record<string, unknown> = { _: [] as string[] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '-h') {
      out.help = true;
      continue;
    }
    if (!arg.startsWith('--')) {
      (out._ as string[]).push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq === -1 ? undefined : eq);
    const kind = kinds[name];
    if (!kind) {
      const known = Object.keys(kinds).map((k) => `--${k}`).join(', ');
      throw new UsageError(`unknown option --${name}; known options: ${known} (see --help)`);
    }
    if (kind === 'boolean') {
      if (eq !== -1) throw new UsageError(`--${name} takes no value`);
      out[name] = true;
      continue;
    }
    if (kind === 'optional' && eq === -1) {
      const next = argv[i + 1];
      out[name] = next !== undefined && !next.startsWith('-') ? (i++, next) : '';
      continue;
    }
    const value = eq !== -1 ? arg.slice(eq + 1) : argv[++i];
    if (value === undefined || value === '') throw new UsageError(`--${name} needs a value, e.g. --${name} VALUE`);
    out[name] = kind === 'list' ? [...((out[name] as string[] | undefined) ?? []), value] : value;
  }
  return out as Parsed<K>;
}

/** "64M", "1G", "16GiB", "4096" → bytes. */
export function parseSize(text: string, flag: string): bigint {
  const m = /^(\d+)\s*([kmgt]?)(i?b)?$/i.exec(text.trim());
  if (!m) throw new UsageError(`${flag} takes a size like 64M, 1G or 16G (got "${text}")`);
  const shift = { '': 0n, k: 10n, m: 20n, g: 30n, t: 40n }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  return BigInt(m[1]!) << shift;
}

/** Decimal or 0x-hex. */
export function parseInteger(text: string, flag: string): bigint {
  if (!/^(0x[0-9a-f]+|\d+)$/i.test(text.trim())) throw new UsageError(`${flag} takes a number, decimal or 0x-hex (got "${text}")`);
  return BigInt(text.trim());
}

/** --log-level's value, checked. */
export function parseLogLevel(text: string | undefined): 'debug' | 'info' | 'warn' | 'error' {
  const level = text ?? 'info';
  if (level !== 'debug' && level !== 'info' && level !== 'warn' && level !== 'error') {
    throw new UsageError(`--log-level must be debug, info, warn or error (got "${level}")`);
  }
  return level;
}

/** --wait-with's value, checked. */
export function parseWaitWith(text: string | undefined): WaitMechanism {
  if (text === undefined) return 'io_uring';
  if (text !== 'io_uring' && text !== 'recvmsg') throw new UsageError(`--wait-with must be io_uring or recvmsg (got "${text}")`);
  return text;
}

/** --wait-us's value, checked. */
export function parseWaitMicros(text: string | undefined): number {
  if (text === undefined) return DEFAULT_WAIT_MICROS;
  const wait = Number(text);
  if (text.trim() === '' || !Number.isFinite(wait) || wait < 0 || wait > 10_000) {
    throw new UsageError(`--wait-us must be a number of microseconds from 0 to 10000 (got "${text}")`);
  }
  return wait;
}
