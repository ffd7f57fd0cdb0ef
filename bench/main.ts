/**
 * `npm run bench`: runs every benchmark suite (or the ones named), prints each suite's table on
 * stdout and writes its results to bench/results/<suite>-<timestamp>.json. Progress goes to
 * stderr. Benchmarks only report: nothing here asserts a speed.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { UsageError, parseFlags } from '../cli/flags.ts';
import { hostSuite } from './host.ts';
import type { Suite } from './suite.ts';

/** Suites in the order `npm run bench` runs them. */
const SUITES: readonly Suite[] = [hostSuite];

const DEFAULTS = { iterations: 100_000, warmup: 5_000, repeats: 3 };

const HELP = `Usage: npm run bench -- [SUITE...] [options]

Runs the named suites (all of them when none is named) and prints one table per suite.
Results are also written as JSON to bench/results/<suite>-<timestamp>.json.

Suites:
${SUITES.map((s) => `  ${s.name.padEnd(8)}  ${s.summary}`).join('\n')}

Options:
  --iterations N   measured round trips per run (default ${DEFAULTS.iterations})
  --warmup N       unrecorded round trips before each run (default ${DEFAULTS.warmup})
  --repeats R      runs per row, interleaved across rows so drift hits all (default ${DEFAULTS.repeats})
  -h, --help       show this help

Reading the host table:
  Each row is one client/server pairing, each end its own process pinned with taskset:
  same-cpu puts both on one CPU, split-cpu gives the server a CPU of its own.
  "C client → C echo" is the floor: blocking C doing the same 32-byte request, 36-byte reply.
  median/p99 are per-round-trip times (µs), the median across repeats of each run's figure;
  "÷ C" divides by the floor of the same placement. "TS client → C echo" isolates our client's
  cost, "C client → TS spin N" our server's (N µs of busy-polling after each request).
  split-cpu is dominated by vCPU wake-ups (~25 µs each on a VM), not by code: a blocking C
  echo wakes both vCPUs per round trip, a spinning server only one (so it can beat "C").
  The lines under the table give the headline ratio (TS ↔ TS at the default spin of 20 µs)
  and split its extra time into client and server parts.`;

function count(name: string, value: string | undefined, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min) throw new UsageError(`--${name} must be a whole number ≥ ${min} (got "${value}")`);
  return n;
}

async function main(argv: string[]): Promise<number> {
  const flags = parseFlags(argv, { iterations: 'string', warmup: 'string', repeats: 'string', help: 'boolean' });
  if (flags.help) {
    console.log(HELP);
    return 0;
  }
  const options = {
    iterations: count('iterations', flags.iterations, DEFAULTS.iterations, 1),
    warmup: count('warmup', flags.warmup, DEFAULTS.warmup, 0),
    repeats: count('repeats', flags.repeats, DEFAULTS.repeats, 1),
  };
  const unknown = flags._.filter((name) => !SUITES.some((s) => s.name === name));
  if (unknown.length) throw new UsageError(`unknown suite ${unknown.join(', ')}; suites: ${SUITES.map((s) => s.name).join(', ')}`);
  const selected = flags._.length ? SUITES.filter((s) => flags._.includes(s.name)) : SUITES;

  const resultsDir = join(import.meta.dirname, 'results');
  for (const suite of selected) {
    const started = new Date();
    const result = await suite.run({ ...options, progress: (line) => process.stderr.write(line + '\n') });
    mkdirSync(resultsDir, { recursive: true });
    const file = join(resultsDir, `${suite.name}-${started.toISOString().replace(/[:.]/g, '-')}.json`);
    writeFileSync(file, JSON.stringify(result.json, null, 2) + '\n');
    console.log(result.table);
    console.log(`\nresults: ${relative(process.cwd(), file)}\n`);
  }
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof UsageError) {
      console.error(`bench: ${err.message}`);
      process.exit(2);
    }
    console.error(`bench: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
