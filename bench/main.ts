/**
 * `npm run bench`: runs every benchmark suite (or the ones named) in a fixed order, prints each
 * suite's table on stdout, and writes ONE result file per run,
 * bench/results/bench-<timestamp>.json (every suite's json), with its chart
 * bench/results/bench-<timestamp>.svg; both are also copied to bench/latest.json and
 * bench/latest.svg (tracked, so the README shows the latest chart). Progress goes to stderr.
 * Benchmarks only report: nothing here asserts a speed.
 */
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { join, relative } from 'node:path';
import { UsageError, parseFlags } from '../cli/flags.ts';
import { buildChart } from './chart.ts';
import { dmaSuite } from './dma.ts';
import { guestBar1Suite } from './guest-bar1.ts';
import { guestMmioSuite } from './guest-mmio.ts';
import { hostSuite } from './host.ts';
import { scaleSuite } from './scale.ts';
import type { BenchOptions, Headline, Suite } from './suite.ts';
import { vmCycleSuite } from './vm-cycle.ts';

/** Suites in the order `npm run bench` runs them. */
const SUITES: readonly Suite[] = [
  hostSuite,
  guestMmioSuite,
  guestBar1Suite,
  dmaSuite,
  vmCycleSuite,
  scaleSuite,
];

/** Used for whatever a suite does not set in its own `defaults`. */
const DEFAULTS: BenchOptions = { iterations: 100_000, warmup: 5_000, repeats: 3 };

const optionsOf = (s: Suite): BenchOptions => ({ ...DEFAULTS, ...s.defaults });

const HELP = `Usage: npm run bench -- [SUITE...] [options]

Runs the named suites (all of them, in the order below, when none is named) and prints one
table per suite. Each run writes one JSON file with every suite's results and an SVG chart of
the headline figures against their goals: bench/results/bench-<timestamp>.{json,svg}, copied
to bench/latest.json and bench/latest.svg when every suite ran.

Suites (defaults: iterations / warm-up / repeats):
${SUITES.map((s) => {
  const o = optionsOf(s);
  return `  ${s.name.padEnd(10)}  ${s.summary}\n  ${''.padEnd(10)}  (${o.iterations} / ${o.warmup} / ${o.repeats})`;
}).join('\n')}

Options (override every selected suite's own default):
  --iterations N   measured operations per run
  --warmup N       unrecorded operations before each run
  --repeats R      runs per row, interleaved across rows so drift hits all
  -h, --help       show this help

How to read each table: bench/README.md.`;

function count(name: string, value: string | undefined, min: number): number | undefined {
  if (value === undefined) return undefined;
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
  const overrides: Partial<BenchOptions> = Object.fromEntries(
    Object.entries({
      iterations: count('iterations', flags.iterations, 1),
      warmup: count('warmup', flags.warmup, 0),
      repeats: count('repeats', flags.repeats, 1),
    }).filter(([, v]) => v !== undefined),
  );
  const unknown = flags._.filter((name) => !SUITES.some((s) => s.name === name));
  if (unknown.length) throw new UsageError(`unknown suite ${unknown.join(', ')}; suites: ${SUITES.map((s) => s.name).join(', ')}`);
  const selected = flags._.length ? SUITES.filter((s) => flags._.includes(s.name)) : SUITES;

  const benchDir = import.meta.dirname;
  const resultsDir = join(benchDir, 'results');
  const started = new Date();
  const stamp = started.toISOString().replace(/[:.]/g, '-');
  const suites: Record<string, unknown> = {};
  const failures: string[] = [];
  const groups: { suite: string; headline: readonly Headline[] }[] = [];
  for (const suite of selected) {
    const options = { ...optionsOf(suite), ...overrides };
    const progress = (line: string) => process.stderr.write(line + '\n');
    progress(`bench: ${suite.name} (iterations ${options.iterations}, warm-up ${options.warmup}, repeats ${options.repeats})`);
    try {
      const result = await suite.run({ ...options, progress });
      const headline = result.headline ?? [];
      suites[suite.name] = { options, headline, result: result.json };
      groups.push({ suite: suite.name, headline });
      console.log(result.table);
      console.log('');
    } catch (err) {
      // One broken suite (e.g. no QEMU for a guest suite) must not lose the others' results.
      const message = err instanceof Error ? err.message : String(err);
      failures.push(suite.name);
      suites[suite.name] = { options, error: message };
      console.log(`${suite.name}: FAILED: ${message}\n`);
    }
  }

  mkdirSync(resultsDir, { recursive: true });
  const json = join(resultsDir, `bench-${stamp}.json`);
  const svg = join(resultsDir, `bench-${stamp}.svg`);
  const machine = { cpu: cpus()[0]?.model ?? null, vcpus: cpus().length, kernel: release(), node: process.version };
  writeFileSync(json, JSON.stringify({ date: started.toISOString(), argv, machine, suites }, null, 2) + '\n');
  writeFileSync(
    svg,
    buildChart(groups, {
      title: 'edu-plus benchmarks: headline ratios against their goals',
      subtitle: `${started.toISOString()} · ${machine.vcpus} vCPU ${machine.cpu ?? ''} · Linux ${machine.kernel} · node ${machine.node}${failures.length ? ` · FAILED: ${failures.join(', ')}` : ''}`,
    }),
  );
  console.log(`results: ${relative(process.cwd(), json)}\nchart:   ${relative(process.cwd(), svg)}`);
  // Only a run of every suite replaces the chart the README shows.
  if (selected.length === SUITES.length) {
    copyFileSync(json, join(benchDir, 'latest.json'));
    copyFileSync(svg, join(benchDir, 'latest.svg'));
    console.log(`(copied to ${relative(process.cwd(), join(benchDir, 'latest.json'))} and latest.svg)`);
  }
  return failures.length ? 1 : 0;
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
