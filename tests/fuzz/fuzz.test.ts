/**
 * Malformed frames against an in-process server (tests/fuzz/frames.ts): at least 10,000 frames
 * per `npm test`, with a fixed seed so a failure reproduces (FUZZ_SEED and FUZZ_MESSAGES
 * override; `npm run fuzz` runs longer). Every frame must be answered in order or the
 * connection cleanly closed, within 2 s, and a well-formed client must be served afterwards.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createEduPlus } from '../../device/edu-plus.ts';
import { silentLogger } from '../../protocol/log.ts';
import { VfioUserServer } from '../../protocol/server.ts';
import { healthCheck, runFuzz, violationText } from './frames.ts';

const MESSAGES = Number(process.env.FUZZ_MESSAGES ?? 10_000);
const SEED = Number(process.env.FUZZ_SEED ?? 20251121);

describe('fuzz: malformed frames', () => {
  let dir: string;
  let server: VfioUserServer;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'edu-plus-fuzz-'));
    server = VfioUserServer.listen({ socketPath: join(dir, 'fuzz.sock'), device: createEduPlus(), log: silentLogger });
  });
  after(() => {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it(`answers or cleanly closes on each of ${MESSAGES} generated frames and keeps serving (seed ${SEED})`, async () => {
    let stats;
    try {
      stats = await runFuzz({ server, socketPath: server.socketPath, messages: MESSAGES, seed: SEED });
    } catch (err) {
      assert.fail(`seed ${SEED}: ${violationText(err)}`);
    }
    assert.ok(stats.frames >= MESSAGES);
    assert.ok(stats.closesByServer > 0 && stats.errorReplies > 0 && stats.abruptDisconnects > 0, 'the generator reaches every outcome');
    await healthCheck({ server, socketPath: server.socketPath });
  });
});
