/**
 * The TS server for bench/host.ts, in its own process (the benchmark's client blocks its
 * thread, so an in-process server would starve): one edu-plus device on SOCKET, sleeping in
 * recvmsg up to WAIT_US for the next request after each reply (the serve command's --wait-us).
 * Prints "ready" once listening; SIGTERM closes it. WARM_UP_ROUNDS=N in the environment sets the
 * server's warm-up (0: none, to see a cold start).
 *
 *   tsx bench/serve-child.ts SOCKET WAIT_US
 */
import { createEduPlus } from '../device/edu-plus.ts';
import { silentLogger } from '../protocol/log.ts';
import { VfioUserServer } from '../protocol/server.ts';

const [socketPath, waitArg] = process.argv.slice(2);
const waitMicros = Number(waitArg);
if (!socketPath || !Number.isFinite(waitMicros) || waitMicros < 0) {
  console.error('usage: tsx bench/serve-child.ts SOCKET WAIT_US');
  process.exit(2);
}

const server = VfioUserServer.listen({ socketPath, device: createEduPlus(), log: silentLogger, waitMicros, warmUpRounds: process.env.WARM_UP_ROUNDS === undefined ? undefined : Number(process.env.WARM_UP_ROUNDS) });
process.once('SIGTERM', () => {
  server.close();
  process.exit(0);
});
process.stdout.write('ready\n');
