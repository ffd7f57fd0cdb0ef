/** What every benchmark suite gets and gives back; bench/main.ts runs the registry. */

export interface BenchOptions {
  /** Measured round trips (or operations) per run. */
  readonly iterations: number;
  /** Unrecorded operations before each run's measurement starts. */
  readonly warmup: number;
  /** How many times each measurement is repeated (interleaved, so drift hits every row). */
  readonly repeats: number;
}

export interface SuiteContext extends BenchOptions {
  /** One progress line on stderr (stdout carries only results). */
  progress(line: string): void;
}

export interface SuiteResult {
  /** The human-readable table, printed on stdout. */
  readonly table: string;
  /** Everything measured, written to bench/results/<suite>-<timestamp>.json. */
  readonly json: unknown;
}

export interface Suite {
  /** What `npm run bench -- NAME` selects. */
  readonly name: string;
  /** One line for --help. */
  readonly summary: string;
  run(ctx: SuiteContext): Promise<SuiteResult>;
}
