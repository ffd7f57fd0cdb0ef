/** Minimal flag parsing with errors that say what to do (no dependency needed for four flags). */

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
