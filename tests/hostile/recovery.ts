/**
 * What every attack must leave behind: a live server that serves a fresh client (BAR0[0] reads
 * edu's identification 0x010000ed), with descriptors and resident memory back within a stated
 * bound of what it had before the attack.
 */
import assert from 'node:assert/strict';
import { TraceClient } from '../../trace/trace-client.ts';
import { EDU_ID, type Footprint, ServerProcess } from './server-process.ts';

/**
 * Allowed growth after an attack. Descriptors: a few for libuv and worker threads that come
 * and go. RSS: V8 keeps some freed heap and malloc arenas, measured at 10-30 MiB after the
 * heaviest attack here; an unbounded queue costs 1 GiB per 1,000 queued 1 MiB replies.
 */
export const BOUND = { fds: 6, rssMiB: 96 } as const;

export async function assertRecovered(server: ServerProcess, baseline: Footprint, attack: string): Promise<Footprint> {
  assert.ok(server.alive, `${attack}: the server died (code ${server.exitCode}, signal ${server.exitSignal})`);
  assert.equal(await server.probe(), EDU_ID, `${attack}: a fresh client must read edu's id from BAR0[0]`);
  // Releasing a client's resources takes a few event-loop turns (and memory a GC): wait a little.
  const deadline = Date.now() + 10_000;
  let now = server.footprint();
  while (Date.now() < deadline && !within(now, baseline)) {
    await new Promise((r) => setTimeout(r, 200));
    now = server.footprint();
  }
  assert.ok(now.fds <= baseline.fds + BOUND.fds, `${attack}: the server holds ${now.fds} fds, ${now.fds - baseline.fds} more than before (bound ${BOUND.fds})`);
  const growth = (now.rssKiB - baseline.rssKiB) / 1024;
  assert.ok(growth <= BOUND.rssMiB, `${attack}: the server's RSS grew by ${growth.toFixed(1)} MiB (bound ${BOUND.rssMiB} MiB)`);
  return now;
}

function within(now: Footprint, baseline: Footprint): boolean {
  return now.fds <= baseline.fds + BOUND.fds && now.rssKiB - baseline.rssKiB <= BOUND.rssMiB * 1024;
}

/**
 * The server's footprint once a first client has come and gone and the trace channel has run a
 * checksum (lazy allocations done, and the checksum worker threads started: each holds a few
 * fds of its own event loop, until it has idled for 30 s).
 */
export async function warmBaseline(server: ServerProcess): Promise<Footprint> {
  assert.equal(await server.probe(), EDU_ID);
  const trace = await TraceClient.connect(server.tracePath);
  try {
    await Promise.all([trace.checksumRegion(1, 0, 4096), trace.checksumRegion(1, 4096, 4096)]);
  } finally {
    trace.close();
  }
  await new Promise((r) => setTimeout(r, 300));
  return server.footprint();
}

/**
 * Runs one attack against a server of its own (so one attack's damage cannot be blamed on
 * another): start, warm baseline, the attack, then the recovery checks and a clean SIGTERM.
 */
export async function underAttack(name: string, attack: (server: ServerProcess, baseline: Footprint) => Promise<void>, args: readonly string[] = []): Promise<void> {
  const server = await ServerProcess.start(args);
  let failure: unknown = null;
  try {
    const baseline = await warmBaseline(server);
    await attack(server, baseline);
    await assertRecovered(server, baseline, name);
  } catch (err) {
    failure = err;
  }
  const code = await server.stop();
  if (failure) throw failure;
  if (code !== 0) {
    assert.fail(`${name}: the server did not exit cleanly on SIGTERM (code ${code}, signal ${server.exitSignal}); log:\n${server.log.split('\n').slice(-20).join('\n')}`);
  }
}
