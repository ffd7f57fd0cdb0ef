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

/**
 * One headline figure of a suite, drawn as a bar in the chart against its goal (if any).
 * goalKind 'max': the value should stay at or below the goal; 'min': at or above it.
 */
export interface Headline {
  readonly label: string;
  readonly value: number;
  readonly unit: 'ratio' | 's' | 'MiB';
  readonly goal?: number;
  readonly goalKind: 'max' | 'min';
}

export interface SuiteResult {
  /** The human-readable table, printed on stdout. */
  readonly table: string;
  /** Everything measured; bench/main.ts writes every suite's json into one result file. */
  readonly json: unknown;
  /** The figures the chart shows (also copied into the json as `headline`). */
  readonly headline?: readonly Headline[];
}

export interface Suite {
  /** What `npm run bench -- NAME` selects. */
  readonly name: string;
  /** One line for --help. */
  readonly summary: string;
  /** This suite's own defaults (a guest suite cannot afford the host suite's 100,000 round trips); --iterations/--warmup/--repeats override them. */
  readonly defaults?: Partial<BenchOptions>;
  run(ctx: SuiteContext): Promise<SuiteResult>;
}
