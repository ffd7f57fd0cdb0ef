/**
 * The TS server for bench/host.ts, in its own process (the benchmark's client blocks its
 * thread, so an in-process server would starve): one edu-plus device on SOCKET, busy-polling
 * SPIN_US after each burst. Prints "ready" once listening; SIGTERM closes it.
 *
 *   tsx bench/serve-child.ts SOCKET SPIN_US
 */
import { createEduPlus } from '../device/edu-plus.ts';
import { silentLogger } from '../protocol/log.ts';
import { VfioUserServer } from '../protocol/server.ts';

const [socketPath, spinArg] = process.argv.slice(2);
const spinMicros = Number(spinArg);
if (!socketPath || !Number.isFinite(spinMicros) || spinMicros < 0) {
  console.error('usage: tsx bench/serve-child.ts SOCKET SPIN_US');
  process.exit(2);
}

const server = VfioUserServer.listen({ socketPath, device: createEduPlus(), log: silentLogger, spinMicros });
process.once('SIGTERM', () => {
  server.close();
  process.exit(0);
});
process.stdout.write('ready\n');
