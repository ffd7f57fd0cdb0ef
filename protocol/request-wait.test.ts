/**
 * The wait policy on its own, with made-up clocks (nothing here measures time): when a channel
 * sleeps for the next request, how a wasted wait backs off, and how it leaves room for the rest
 * of the process.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RequestWait } from './request-wait.ts';

/** A channel identity (the policy only compares them). */
const channel = () => ({});

describe('RequestWait', () => {
  it('never waits with a window of 0', () => {
    const me = channel();
    const w = new RequestWait(0);
    RequestWait.noteRequest(me, 0);
    assert.equal(w.shouldWait(me, 0), false);
  });

  it('waits after a request while nobody else is busy', () => {
    const me = channel();
    const w = new RequestWait(200);
    RequestWait.noteRequest(me, 10);
    assert.equal(w.shouldWait(me, 10), true);
  });

  it('after a wasted wait skips 1, then 2, 4 … bursts, up to 64, and an answered wait resets that', () => {
    const me = channel();
    const w = new RequestWait(200, 1_000_000);
    const skipsAfterMiss = (): number => {
      w.wasted();
      let skipped = 0;
      while (!w.shouldWait(me, 0)) skipped++;
      return skipped;
    };
    RequestWait.noteRequest(me, 0);
    assert.deepEqual([1, 2, 3, 4, 5, 6, 7, 8].map(skipsAfterMiss), [1, 2, 4, 8, 16, 32, 64, 64]);
    w.answered();
    assert.equal(skipsAfterMiss(), 1);
    assert.equal(w.misses, 9);
    assert.equal(w.hits, 1);
  });

  it('does not wait while another channel had a request within the slice', () => {
    const me = channel();
    const other = channel();
    const w = new RequestWait(200, 1000);
    RequestWait.noteRequest(other, 5.0);
    assert.equal(w.shouldWait(me, 5.5), false, 'the other channel was busy 0.5 ms ago');
    assert.equal(w.shouldWait(me, 6.5), true, 'the other channel has been quiet for 1.5 ms');
  });

  it('returns to the event loop once per slice of back-to-back waiting', () => {
    const me = channel();
    const w = new RequestWait(200, 1000);
    RequestWait.noteRequest(me, 0);
    const answers: boolean[] = [];
    for (let i = 0; i <= 12; i++) answers.push(w.shouldWait(me, i / 10));
    // Waits from 0 to 0.9 ms, then the slice is used up: one return to the loop, then again.
    assert.deepEqual(answers.slice(0, 10), Array(10).fill(true));
    assert.equal(answers[10], false);
    assert.equal(answers[11], true);
  });
});
