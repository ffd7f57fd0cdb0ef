/**
 * `npm run soak -- --seconds N`: one server process under a mix of real and hostile clients
 * for N seconds, reporting its descriptors, mappings and RSS over time.
 *
 * Each cycle boots a real QEMU with edu-plus attached (the guest runs edu_plus_basic from its
 * /init); every other boot is cut short with SIGTERM/SIGKILL a few seconds in, as a crashed VM
 * would be. Between boots one hostile attack from attacks.ts runs, in turn. After each cycle
 * the server must serve a fresh client; at the end, at rest, its fds and RSS must be within the
 * bounds of recovery.ts of what they were at the start. Exit 0 when all of that held.
 *
 *   --seconds N   how long (default 300); the cycle running at the deadline finishes
 *   --no-vm       hostile clients only (no QEMU), e.g. where QEMU cannot run
 */
import { parseFlags, UsageError } from '../../cli/flags.ts';
import { EDU_ID, type Footprint, ServerProcess } from './server-process.ts';
import { ATTACKS } from './attacks.ts';
import { BOUND, warmBaseline } from './recovery.ts';
import { TraceClient } from '../../trace/trace-client.ts';
import { bootGuestTests, provisionTestVm, type TestVm } from '../e2e/vm-harness.ts';

interface Sample extends Footprint {
  readonly cycle: number;
  readonly seconds: number;
  readonly what: string;
  readonly ok: boolean;
}

async function main(argv: string[]): Promise<number> {
  const flags = parseFlags(argv, { seconds: 'string', 'no-vm': 'boolean', help: 'boolean' });
  if (flags.help) {
    console.log('Usage: npm run soak -- [--seconds N] [--no-vm]\n\nQEMU restart cycles and hostile clients against one server; prints fds, mappings and RSS per cycle.');
    return 0;
  }
  const seconds = Number(flags.seconds ?? '300');
  if (!Number.isFinite(seconds) || seconds < 1) throw new UsageError(`--seconds must be a positive number (got "${flags.seconds}")`);
  let vm: TestVm | null = null;
  if (!flags['no-vm']) {
    console.log('soak: provisioning QEMU, the guest kernel and edu_plus_basic (cached after the first run)...');
    vm = await provisionTestVm({ tests: ['edu_plus_basic'], name: 'soak' });
  }
  // The flags every attack needs (the silent client's short idle timeout).
  const server = await ServerProcess.start(ATTACKS.flatMap((a) => a.args ?? []));
  const t0 = Date.now();
  const samples: Sample[] = [];
  const record = (cycle: number, what: string, ok: boolean) => {
    const s = { cycle, seconds: (Date.now() - t0) / 1000, what, ok, ...server.footprint() };
    samples.push(s);
    console.log(
      `${String(cycle).padStart(5)} ${s.seconds.toFixed(0).padStart(6)} s  fds ${String(s.fds).padStart(4)}  maps ${String(s.maps).padStart(5)}  ` +
        `RSS ${(s.rssKiB / 1024).toFixed(1).padStart(6)} MiB (shared ${(s.shmemKiB / 1024).toFixed(1).padStart(5)})  ${ok ? 'ok  ' : 'FAIL'} ${what}`,
    );
  };
  console.log(`soak: server pid ${server.pid} on ${server.socketPath} for ${seconds} s${vm ? '' : ' (no VM)'}`);
  console.log('cycle   time   descriptors  mappings  resident memory (of it shared: BAR1 pages touched)   step');
  // The state the server settles in under use: checksum workers started (their event loops
  // hold fds) and every BAR1 page touched (reading a memfd hole allocates the page).
  await warmBaseline(server);
  const trace = await TraceClient.connect(server.tracePath);
  await trace.checksumRegion(1, 0, 64 << 20);
  trace.close();
  record(0, 'start (warm: workers up, BAR1 touched)', (await server.probe()) === EDU_ID);
  let cycle = 0;
  let failures = 0;
  let boots = 0;
  let attacks = 0;
  while (Date.now() - t0 < seconds * 1000 && server.alive) {
    cycle++;
    if (vm) {
      // QEMU is refused (EBUSY) while the last attacker or probe is still being released.
      await untilNoClient(server);
      const cut = cycle % 2 === 0;
      const run = await bootGuestTests(vm, { socketPath: server.socketPath, timeoutMs: cut ? 4000 : 120_000 });
      boots++;
      const passed = run.ktap.results.length > 0 && run.ktap.results.every((r) => r.ok);
      const ok = cut ? true : passed;
      if (!ok) {
        failures++;
        const failed = run.ktapLines.filter((l) => /not ok|^\s*# /.test(l)).slice(-12);
        console.log(`      guest: ${failed.join('\n      guest: ') || '(no KTAP)'}\n      console tail: ${run.vm.lines.slice(-6).join(' | ')}`);
      }
      record(cycle, cut ? 'QEMU killed 4 s into boot' : `QEMU boot, edu_plus_basic ${passed ? 'passed' : 'FAILED'}`, ok);
    }
    const attack = ATTACKS[(cycle - 1) % ATTACKS.length]!;
    const before = server.footprint();
    let ok = true;
    try {
      await attack.run(server, before);
      ok = (await server.probe()) === EDU_ID;
    } catch (err) {
      ok = false;
      console.log(`      ${attack.name}: ${(err as Error).message.split('\n')[0]}`);
    }
    attacks++;
    if (!ok) failures++;
    record(cycle, `attack: ${attack.name}`, ok);
  }
  // Idle checksum workers (started by the trace attack) exit after 30 s, and a GC returns
  // memory: the end figure is the server at rest, so give it up to 40 s to get there.
  const start = samples[0]!;
  for (let waited = 0; waited < 40 && server.alive; waited++) {
    const now = server.footprint();
    if (now.fds <= start.fds + BOUND.fds && now.rssKiB - start.rssKiB <= BOUND.rssMiB * 1024) break;
    await new Promise((r) => setTimeout(r, 1000));
  }
  if (server.alive) record(cycle, 'at rest', (await server.probe()) === EDU_ID);
  const first = samples.find((s) => s.cycle === 1) ?? samples[0]!;
  const last = samples[samples.length - 1]!;
  const max = (k: 'fds' | 'maps' | 'rssKiB') => Math.max(...samples.map((s) => s[k]));
  const fdGrowth = last.fds - start.fds;
  const rssGrowth = (last.rssKiB - start.rssKiB) / 1024;
  console.log('');
  console.log(`soak: ${((Date.now() - t0) / 1000).toFixed(0)} s, ${cycle} cycles (${boots} QEMU boots, ${attacks} attacks), ${failures} failure(s); server ${server.alive ? 'alive' : 'DEAD'}`);
  console.log(`  fds  start ${samples[0]!.fds}, after cycle 1 ${first.fds}, end ${last.fds}, max ${max('fds')}`);
  console.log(`  maps start ${samples[0]!.maps}, after cycle 1 ${first.maps}, end ${last.maps}, max ${max('maps')}`);
  console.log(`  RSS  start ${(samples[0]!.rssKiB / 1024).toFixed(1)} MiB, after cycle 1 ${(first.rssKiB / 1024).toFixed(1)} MiB, end ${(last.rssKiB / 1024).toFixed(1)} MiB, max ${(max('rssKiB') / 1024).toFixed(1)} MiB`);
  console.log(`  shared (BAR1) start ${(samples[0]!.shmemKiB / 1024).toFixed(1)} MiB, end ${(last.shmemKiB / 1024).toFixed(1)} MiB`);
  const bounded = fdGrowth <= BOUND.fds && rssGrowth <= BOUND.rssMiB;
  console.log(`  growth since the start: ${fdGrowth} fds (bound ${BOUND.fds}), ${rssGrowth.toFixed(1)} MiB RSS (bound ${BOUND.rssMiB} MiB): ${bounded ? 'within' : 'BEYOND'} bounds`);
  const code = await server.stop();
  return failures === 0 && bounded && code === 0 ? 0 : 1;
}

/** Waits (up to 10 s) until the server reports no connected client on its trace channel. */
async function untilNoClient(server: ServerProcess): Promise<void> {
  const trace = await TraceClient.connect(server.tracePath);
  try {
    for (let i = 0; i < 100 && (await trace.stats()).connected; i++) await new Promise((r) => setTimeout(r, 100));
  } finally {
    trace.close();
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(`soak: ${err instanceof UsageError ? '' : 'failed: '}${(err as Error).message}`);
    process.exit(err instanceof UsageError ? 2 : 1);
  },
);
