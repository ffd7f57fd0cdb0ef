import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { median, medianOf, percentile, summarize } from './stats.ts';

const oneToHundred = Float64Array.from({ length: 100 }, (_, i) => i + 1);

describe('bench stats', () => {
  it('takes nearest-rank percentiles: always an observed sample', () => {
    assert.equal(percentile(oneToHundred, 50), 50);
    assert.equal(percentile(oneToHundred, 99), 99);
    assert.equal(percentile(oneToHundred, 100), 100);
    assert.equal(percentile(oneToHundred, 0.5), 1);
    // 10 samples: p99 needs rank ceil(9.9) = 10, the largest.
    assert.equal(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 99), 10);
    assert.equal(percentile([7], 99), 7);
  });

  it('refuses an empty sample set or a percentile outside (0, 100]', () => {
    assert.throws(() => percentile([], 50), RangeError);
    assert.throws(() => percentile([1], 0), RangeError);
    assert.throws(() => percentile([1], 101), RangeError);
    assert.throws(() => median([]), RangeError);
  });

  it('takes the middle sample, or the mean of the middle two', () => {
    assert.equal(median([1, 2, 3]), 2);
    assert.equal(median([1, 2, 3, 10]), 2.5);
    assert.equal(medianOf([30, 10, 20]), 20);
  });

  it('summarizes nanoseconds into microseconds without reordering the input', () => {
    // 1..100 µs, shuffled, in nanoseconds.
    const samples = Float64Array.from({ length: 100 }, (_, i) => ((i * 37) % 100 + 1) * 1000);
    const before = Float64Array.from(samples);
    const s = summarize(samples);
    assert.deepEqual(samples, before);
    assert.equal(s.count, 100);
    assert.equal(s.medianUs, 50.5);
    assert.equal(s.p99Us, 99);
    assert.equal(s.minUs, 1);
    assert.equal(s.maxUs, 100);
    assert.equal(s.meanUs, 50.5);
    // 100 round trips in 5050 µs.
    assert.ok(Math.abs(s.roundTripsPerSecond - 100 / 5050e-6) < 1e-6);
  });
});
