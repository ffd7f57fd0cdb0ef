/**
 * Summaries of per-round-trip times. Samples are nanoseconds (what both the C and the TS
 * clients record); summaries are microseconds, the unit the tables print.
 */

export interface Summary {
  readonly count: number;
  readonly medianUs: number;
  readonly p99Us: number;
  readonly meanUs: number;
  readonly minUs: number;
  readonly maxUs: number;
  /** count ÷ total measured time: what a client doing nothing else would sustain. */
  readonly roundTripsPerSecond: number;
}

/**
 * Nearest-rank percentile of ascending `sorted` (0 < p ≤ 100): the smallest sample with at
 * least p % of the samples at or below it, so the answer is always a time actually observed.
 */
export function percentile(sorted: Float64Array | readonly number[], p: number): number {
  if (sorted.length === 0) throw new RangeError('percentile of no samples');
  if (!(p > 0 && p <= 100)) throw new RangeError(`percentile ${p} is outside (0, 100]`);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(rank, sorted.length) - 1]!;
}

/** Median of ascending `sorted`: the middle sample, or the mean of the middle two. */
export function median(sorted: Float64Array | readonly number[]): number {
  const n = sorted.length;
  if (n === 0) throw new RangeError('median of no samples');
  const mid = n >> 1;
  return n % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Median of unsorted values (e.g. one figure per repeat). */
export function medianOf(values: readonly number[]): number {
  return median([...values].sort((a, b) => a - b));
}

/** Summarizes samples in nanoseconds; the input is left as it was (a sorted copy is made). */
export function summarize(samplesNs: Float64Array): Summary {
  const sorted = Float64Array.from(samplesNs).sort();
  let total = 0;
  for (const s of sorted) total += s;
  const n = sorted.length;
  if (n === 0) throw new RangeError('summary of no samples');
  return {
    count: n,
    medianUs: median(sorted) / 1000,
    p99Us: percentile(sorted, 99) / 1000,
    meanUs: total / n / 1000,
    minUs: sorted[0]! / 1000,
    maxUs: sorted[n - 1]! / 1000,
    roundTripsPerSecond: total > 0 ? n / (total / 1e9) : Infinity,
  };
}
