/**
 * `npm run fuzz -- [--messages N] [--seed S] [--skip-known] [--timeout-ms T]`: sends N malformed
 * frames (default 1,000,000) to an in-process server, printing progress every 10,000 frames and
 * a one-line summary. Exit status 1 on the first violation, which is printed with its frame.
 * --skip-known filters frames that hit server issues already reported, to look past them.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createEduPlus } from '../../device/edu-plus.ts';
import { silentLogger } from '../../protocol/log.ts';
import { VfioUserServer } from '../../protocol/server.ts';
import { type FuzzStats, runFuzz, violationText } from './frames.ts';

const { values } = parseArgs({
  options: {
    messages: { type: 'string', default: '1000000' },
    seed: { type: 'string' },
    'skip-known': { type: 'boolean', default: false },
    'timeout-ms': { type: 'string', default: '2000' },
  },
});
const messages = Number(values.messages);
if (!Number.isSafeInteger(messages) || messages <= 0) {
  console.error(`--messages must be a positive integer, got ${values.messages}`);
  process.exit(2);
}

const dir = mkdtempSync(join(tmpdir(), 'edu-plus-fuzz-'));
const server = VfioUserServer.listen({ socketPath: join(dir, 'fuzz.sock'), device: createEduPlus(), log: silentLogger });
const line = (s: FuzzStats) => {
  const errnos = [...s.errnos].sort((a, b) => b[1] - a[1]).map(([e, n]) => `${e}:${n}`).join(' ');
  return `${s.frames} frames in ${s.episodes} connections, ${(s.ms / 1000).toFixed(1)} s (${Math.round(s.frames / (s.ms / 1000))}/s); replies ${s.replies} (errors ${s.errorReplies}: ${errnos}); server closes ${s.closesByServer}; abrupt disconnects ${s.abruptDisconnects}; health checks ${s.healthChecks} ok; seed ${s.seed}`;
};
let code = 0;
try {
  const stats = await runFuzz({
    server,
    socketPath: server.socketPath,
    messages,
    seed: values.seed === undefined ? undefined : Number(values.seed),
    skipKnown: values['skip-known'],
    timeoutMs: Number(values['timeout-ms']),
    onProgress: (s) => console.log(`  … ${line(s)}`),
  });
  console.log(`fuzz passed: ${line(stats)}`);
} catch (err) {
  console.error(`fuzz FAILED: ${violationText(err)}`);
  code = 1;
} finally {
  server.close();
  rmSync(dir, { recursive: true, force: true });
}
process.exit(code);
