/**
 * The hostile-client attacks, one per class the server must survive (issue 11's numbered
 * items, and the ones found next). Each runs against a live server process and asserts what
 * must hold *during* the attack; recovery.ts checks what must hold after it (alive, a fresh
 * client served, fds and RSS back within bound). The test files run each against a server of
 * its own; the soak (soak.ts) runs them in turn against one server between QEMU boots.
 */
import assert from 'node:assert/strict';
import { DEFAULT_CLIENT_LIMITS } from '../../protocol/client-limits.ts';
import { GUEST_RAM_SEALS, close, connectUnix, eventfdCreate, eventfdSignal, memfdCreate, setNonBlocking } from '../../protocol/native/libc.ts';
import { connect as connectNet } from 'node:net';
import { TraceClient } from '../../trace/trace-client.ts';
import { encodeFrame } from '../../trace/wire.ts';
import { BAR0, BAR1, Cmd, IrqFlags, RawAttacker, Reg, body, startSizeFlipper } from './attacker.ts';
import { BOUND } from './recovery.ts';
import { type Footprint, type ServerProcess, withTimeout } from './server-process.ts';

export interface Attack {
  /** Which test file runs it. */
  readonly group: 'dma-irq' | 'clients';
  readonly title: string;
  /** Short name for messages and the soak's report. */
  readonly name: string;
  /** Server flags the attack needs (the soak starts its server with all of them). */
  readonly args?: readonly string[];
  run(server: ServerProcess, baseline: Footprint): Promise<void>;
}

const MiB = 1 << 20;
/** An eventfd counter one below its maximum: any further signal would overflow it. */
const FULL = 0xffff_ffff_ffff_fffen;
const MSI = 1;
const INTX = 0;
const RAM = 0x10_0000n;
const FEATURE = { SET: 1 << 17, GET: 1 << 16, MIG_DEVICE_STATE: 2 };
const MIG = { STOP: 1, RUNNING: 2, RESUMING: 4 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** The server's stderr reaches us through a pipe: give it a moment. */
const logSettles = () => sleep(300);

function fullEventfd(): number {
  const fd = eventfdCreate();
  assert.ok(eventfdSignal(fd, FULL));
  return fd;
}

/** The trace channel answers (bounded wait): the server's loop is not starved by the attack. */
async function traceAnswers(server: ServerProcess): Promise<void> {
  const t = await withTimeout(TraceClient.connect(server.tracePath), 5000, 'trace connection');
  try {
    await withTimeout(t.stats(), 5000, 'trace stats reply');
  } finally {
    t.close();
  }
}

function setMigState(a: RawAttacker, state: number): void {
  const data = Buffer.alloc(8);
  data.writeUInt32LE(state, 0);
  data.writeInt32LE(-1, 4);
  a.call(Cmd.DEVICE_FEATURE, body.feature(16, FEATURE.SET | FEATURE.MIG_DEVICE_STATE, data));
}

/** A negotiated client, retrying while the server still releases the previous one (EBUSY). */
async function nextClient(server: ServerProcess): Promise<RawAttacker> {
  for (let tries = 0; ; tries++) {
    const a = RawAttacker.connect(server.socketPath);
    try {
      a.version();
      return a;
    } catch (err) {
      a.close();
      if (tries > 50) throw err;
      await sleep(100);
    }
  }
}

export const ATTACKS: readonly Attack[] = [
  {
    group: 'dma-irq',
    title: '1: DMA through a memfd another process keeps truncating (no SIGBUS)',
    name: 'DMA under truncation',
    async run(server) {
      const a = await nextClient(server);
      a.enableBusMaster();
      const ram = memfdCreate('hostile-ram', BigInt(MiB));
      a.call(Cmd.DMA_MAP, body.dmaMap({ address: RAM, size: BigInt(MiB) }), [ram]);
      const flipper = startSizeFlipper(ram, MiB, 4);
      let transfers = 0;
      const end = Date.now() + 2500;
      try {
        while (Date.now() < end) {
          a.dma(RAM + BigInt((transfers % 200) * 4096), 4096, { toRam: transfers % 2 === 1 });
          transfers++;
        }
      } catch (err) {
        assert.fail(`DMA ${transfers} failed: ${(err as Error).message}`);
      } finally {
        await flipper.stop();
        a.close();
        close(ram);
      }
      assert.ok(transfers > 10, `only ${transfers} transfers ran`);
    },
  },
  {
    group: 'dma-irq',
    title: '2: a blocking, full MSI eventfd (made blocking again after SET_IRQS) never blocks the server',
    name: 'blocking full eventfd',
    async run(server) {
      server.clearLog();
      const a = await nextClient(server);
      const efd = fullEventfd();
      setNonBlocking(efd, false);
      a.call(Cmd.DEVICE_SET_IRQS, body.setIrqs({ flags: IrqFlags.DATA_EVENTFD | IrqFlags.TRIGGER, index: MSI, count: 1 }), [efd]);
      // The server may make the shared description non-blocking: a hostile client undoes it.
      setNonBlocking(efd, false);
      for (let i = 0; i < 50; i++) a.writeReg(Reg.IRQ_RAISE, 1n, 4);
      assert.equal(a.readReg(0, 4), 0x010000edn, 'the server still answers this client');
      a.close();
      close(efd);
      await logSettles();
      const lines = server.log.split('\n').filter((l) => /eventfd.*full/i.test(l));
      assert.ok(lines.length >= 1 && lines.length <= 2, `a full eventfd is logged once, not per edge (got ${lines.length} lines)`);
    },
  },
  {
    group: 'dma-irq',
    title: '3: INTx with a full trigger and a resample eventfd: no exception loop, no spinning',
    name: 'resample into a full trigger',
    async run(server) {
      const a = await nextClient(server);
      const trigger = fullEventfd();
      const resample = eventfdCreate();
      a.call(Cmd.DEVICE_SET_IRQS, body.setIrqs({ flags: IrqFlags.DATA_EVENTFD | IrqFlags.TRIGGER, index: INTX, count: 1 }), [trigger]);
      a.call(Cmd.DEVICE_SET_IRQS, body.setIrqs({ flags: IrqFlags.DATA_EVENTFD | IrqFlags.UNMASK, index: INTX, count: 1 }), [resample]);
      try {
        a.writeReg(Reg.IRQ_RAISE, 1n, 4);
      } catch (err) {
        assert.fail(`raising INTx into a full eventfd failed the guest's register write: ${(err as Error).message}`);
      }
      for (let i = 0; i < 20; i++) eventfdSignal(resample, 1n);
      const cpu0 = server.footprint().cpuSeconds;
      await sleep(2000);
      const used = server.footprint().cpuSeconds - cpu0;
      // An idle server uses next to nothing; a livelocked one a whole CPU (2 s in 2 s).
      assert.ok(used < 1, `the server used ${used.toFixed(2)} s of CPU in 2 s while idle`);
      // The device keeps INTx asserted: acknowledge, so the next client starts clean.
      a.writeReg(0x64, 0xffff_ffffn, 4);
      a.close();
      close(trigger);
      close(resample);
    },
  },
  {
    group: 'dma-irq',
    title: '4: the DMA completion interrupt into a full MSI eventfd does not kill the server',
    name: 'DMA completion into a full eventfd',
    async run(server) {
      const a = await nextClient(server);
      a.enableBusMaster();
      const msi = fullEventfd();
      a.call(Cmd.DEVICE_SET_IRQS, body.setIrqs({ flags: IrqFlags.DATA_EVENTFD | IrqFlags.TRIGGER, index: MSI, count: 1 }), [msi]);
      const ram = memfdCreate('hostile-ram', BigInt(MiB), { seals: GUEST_RAM_SEALS });
      a.call(Cmd.DMA_MAP, body.dmaMap({ address: RAM, size: BigInt(MiB) }), [ram]);
      for (let i = 0; i < 5; i++) a.dma(RAM, 64, { irq: true });
      a.writeReg(0x64, 0xffff_ffffn, 4);
      a.close();
      close(ram);
      close(msi);
    },
  },
  {
    group: 'dma-irq',
    title: '11: floods of guest mistakes and refused DMAs are logged a bounded number of times',
    name: 'guest-error flood',
    async run(server) {
      server.clearLog();
      const a = await nextClient(server);
      a.enableBusMaster();
      for (let i = 0; i < 2000; i++) {
        // A 2-byte BAR0 read (edu takes 4 or 8) and a DMA outside any mapping: guest errors.
        a.call(Cmd.REGION_READ, body.regionAccess(0n, BAR0, 2));
        if (i % 4 === 0) a.dma(0x200_0000n, 8);
      }
      a.close();
      await logSettles();
      const lines = server.log.split('\n').filter((l) => l.includes('guest error'));
      assert.ok(lines.length <= 40, `2,500 guest errors logged ${lines.length} lines (rate-limited: a few per kind per interval)`);
      assert.ok(lines.some((l) => /suppress/.test(l)), 'the log says that repeats are being suppressed');
    },
  },
  {
    group: 'clients',
    title: '5: thousands of 1 MiB BAR1 reads whose replies are never read stay bounded',
    name: 'unread 1 MiB replies',
    async run(server, baseline) {
      const a = await nextClient(server);
      const sent = a.flood(Cmd.REGION_READ, body.regionAccess(0n, BAR1, MiB), 4000);
      await sleep(1500);
      const during = server.footprint();
      const growth = (during.rssKiB - baseline.rssKiB) / 1024;
      const cap = BOUND.rssMiB + DEFAULT_CLIENT_LIMITS.maxQueuedBytes / MiB;
      assert.ok(growth <= cap, `${sent} requests sent; while the client holds its replies the server grew ${growth.toFixed(0)} MiB (bound ${cap})`);
      await traceAnswers(server);
      a.close();
    },
  },
  {
    group: 'clients',
    title: '6: 30,000 GET_REGION_INFO for BAR1 without reading: fds held stay bounded, no EMFILE',
    name: 'unread region-info replies',
    async run(server, baseline) {
      server.clearLog();
      const a = await nextClient(server);
      const sent = a.flood(Cmd.DEVICE_GET_REGION_INFO, body.regionInfo(256, BAR1), 30_000);
      await sleep(1500);
      const during = server.footprint();
      const cap = BOUND.fds + DEFAULT_CLIENT_LIMITS.maxQueuedFds + 16;
      assert.ok(during.fds - baseline.fds <= cap, `${sent} requests sent; the server holds ${during.fds - baseline.fds} more fds (bound ${cap})`);
      await traceAnswers(server);
      a.close();
      await logSettles();
      assert.doesNotMatch(server.log, /EMFILE/);
      assert.ok(server.logBytes < 20_000, `the attack made the server log ${server.logBytes} bytes`);
    },
  },
  {
    group: 'clients',
    title: '8: migration data without end is refused past a bound and dropped with the session',
    name: 'migration flood',
    async run(server) {
      const a = await nextClient(server);
      setMigState(a, MIG.STOP);
      setMigState(a, MIG.RESUMING);
      const chunk = Buffer.alloc(MiB, 0x5a);
      let accepted = 0;
      let refused = 0;
      for (let i = 0; i < 6; i++) {
        try {
          a.call(Cmd.MIG_DATA_WRITE, body.migData(8 + chunk.length, chunk.length, chunk));
          accepted++;
        } catch {
          refused++;
        }
      }
      assert.ok(refused > 0, `all ${accepted} MiB of migration data were accepted`);
      assert.ok(accepted * MiB <= DEFAULT_CLIENT_LIMITS.maxMigrationBytes, `${accepted} MiB accepted`);
      a.close();
      const next = await nextClient(server);
      try {
        const reply = next.call(Cmd.DEVICE_FEATURE, body.feature(16, FEATURE.GET | FEATURE.MIG_DEVICE_STATE));
        assert.equal(reply.readUInt32LE(8), MIG.RUNNING, 'the next client finds the device RUNNING');
      } finally {
        next.close();
      }
    },
  },
  {
    group: 'clients',
    title: '9: a first client that never sends VERSION is closed after the idle timeout',
    name: 'silent client',
    args: ['--idle-timeout-ms', '1000'],
    async run(server) {
      const silent = RawAttacker.connect(server.socketPath);
      const t0 = Date.now();
      // next() waits at most 5 s for data and reports the server's close as null with closed set.
      let closed = false;
      for (let i = 0; i < 4 && !closed; i++) closed = silent.next() === null && silent.closed;
      silent.close();
      assert.ok(closed, `the silent client was still connected after ${Date.now() - t0} ms`);
    },
  },
  {
    group: 'clients',
    title: '10: replies queued when the client half-closes are delivered, then the connection closes',
    name: 'half-close',
    async run(server) {
      const a = await nextClient(server);
      const request = body.regionAccess(0n, BAR1, MiB);
      for (let i = 0; i < 20; i++) a.send(Cmd.REGION_READ, request);
      a.halfClose();
      let delivered = 0;
      for (let r = a.next(); r; r = a.next()) if (r.error === 0 && r.body.length === 16 + MiB) delivered++;
      assert.equal(delivered, 20, 'every reply owed before the half-close arrives');
      assert.ok(a.closed, 'then the server closes the connection');
      a.close();
    },
  },
  {
    group: 'clients',
    title: 'a flood of connections while the device is in use holds a bounded number of fds',
    name: 'connection flood',
    async run(server, baseline) {
      const owner = await nextClient(server);
      const fds: number[] = [];
      for (let i = 0; i < 300; i++) fds.push(connectUnix(server.socketPath));
      await sleep(1000);
      const during = server.footprint();
      const cap = BOUND.fds + DEFAULT_CLIENT_LIMITS.maxRefusing + 4;
      assert.ok(during.fds - baseline.fds <= cap, `300 waiting connections made the server hold ${during.fds - baseline.fds} more fds (bound ${cap})`);
      for (const fd of fds) close(fd);
      owner.close();
    },
  },
  {
    group: 'clients',
    title: 'a trace client that queues checksums of all of BAR1 and 16 MiB reads without reading starves nobody',
    name: 'trace flood',
    async run(server, baseline) {
      const socket = connectNet(server.tracePath);
      await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
      socket.pause(); // never read a reply
      socket.on('error', () => {});
      for (let id = 0; id < 300; id++) {
        const op = id % 2 ? { op: 'read-region', region: BAR1, offset: 0, length: 16 * MiB } : { op: 'checksum-region', region: BAR1, offset: 0, length: 64 * MiB };
        socket.write(encodeFrame({ id, ...op }));
      }
      await sleep(2000);
      await traceAnswers(server);
      const device = await nextClient(server);
      assert.equal(device.readReg(0, 4), 0x010000edn, 'the device is served during the flood');
      device.close();
      const growth = (server.footprint().rssKiB - baseline.rssKiB) / 1024;
      // The backlog bound (8 MiB) plus one 16 MiB reply in the making, and the workers' buffers.
      assert.ok(growth <= BOUND.rssMiB + 64, `the server grew ${growth.toFixed(0)} MiB while a trace client held its replies`);
      socket.destroy();
    },
  },
];
