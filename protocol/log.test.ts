import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createLogger } from './log.ts';

function capture(intervalMs = 60_000) {
  const lines: string[] = [];
  const log = createLogger({ write: (l) => lines.push(l), rateLimit: { burst: 3, intervalMs } });
  return { log, lines };
}

describe('log rate limit', () => {
  it('lets `burst` warnings of one shape through, whatever their numbers, and says it suppresses the rest', () => {
    const { log, lines } = capture();
    for (let i = 0; i < 100; i++) log.warn(`DMA at 0x${(i * 4096).toString(16)} refused (${i} bytes)`);
    assert.equal(lines.length, 3);
    assert.match(lines[2]!, /repeats suppressed for 60 s/);
  });

  it('counts kinds apart, and per component', () => {
    const { log, lines } = capture();
    for (let i = 0; i < 10; i++) {
      log.warn(`kind A ${i}`);
      log.error(`kind B ${i}`);
      log.child('other').warn(`kind A ${i}`);
    }
    assert.equal(lines.length, 9);
  });

  it('reports how many were suppressed when the kind recurs after the interval', async () => {
    const { log, lines } = capture(30);
    for (let i = 0; i < 10; i++) log.warn(`flood ${i}`);
    await new Promise((r) => setTimeout(r, 40));
    log.warn('flood 11');
    assert.match(lines[3]!, /\(7 more like the next line were suppressed/);
    assert.match(lines[4]!, /flood 11$/);
  });

  it('does not limit info and debug', () => {
    const lines: string[] = [];
    const log = createLogger({ level: 'debug', write: (l) => lines.push(l), rateLimit: { burst: 1, intervalMs: 60_000 } });
    for (let i = 0; i < 5; i++) {
      log.info('client connected');
      log.debug('mapped');
    }
    assert.equal(lines.length, 10);
  });
});

describe('log levels', () => {
  it('says whether debug lines are written, so a hot path builds them only then', () => {
    const lines: string[] = [];
    const quiet = createLogger({ write: (l) => lines.push(l) });
    const verbose = createLogger({ level: 'debug', write: (l) => lines.push(l) });
    assert.deepEqual([quiet.debugEnabled, quiet.child('x').debugEnabled, verbose.debugEnabled, verbose.child('x').debugEnabled], [false, false, true, true]);
    quiet.debug('dropped');
    verbose.child('x').debug('kept');
    assert.equal(lines.length, 1);
    assert.match(lines[0]!, /debug edu-plus\/x: kept/);
  });
});
