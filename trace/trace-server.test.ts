/**
 * The trace channel against a real VfioUserServer serving edu-plus, driven by our vfio-user
 * client: events, shared-memory access, registers, counters, bad requests and bad frames, a
 * subscriber too slow to keep up, and the socket's life cycle.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { type Socket, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createEduPlus, type EduPlus } from '../device/edu-plus.ts';
import { VfioUserClient } from '../protocol/client.ts';
import { silentLogger } from '../protocol/log.ts';
import { close as closeFd, listenUnix } from '../protocol/native/libc.ts';
import { VfioUserServer } from '../protocol/server.ts';
import type { TracedEvent } from '../protocol/trace-bus.ts';
import { PciRegion } from '../protocol/wire.ts';
import { TraceClient, TraceRequestError } from './trace-client.ts';
import { type TraceServer, startTraceServer } from './trace-server.ts';
import { FrameDecoder } from './wire.ts';

const BAR1_SIZE = 64n << 20n;

function le32(v: number): Uint8Array {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  return b;
}

/** A region access's value as a number, whichever form the event carries it in. */
function accessValue(value: bigint | Uint8Array): bigint {
  if (typeof value === 'bigint') return value;
  let v = 0n;
  for (let i = value.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(value[i]!);
  return v;
}

/** A frame around hand-written msgpack bytes (independent of the encoder under test). */
function frame(body: number[]): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32LE(body.length);
  return Buffer.concat([length, Buffer.from(body)]);
}
const str = (s: string) => [0xa0 | s.length, ...Buffer.from(s)];
const request = (id: number, op: string) => frame([0x82, ...str('id'), id, ...str('op'), ...str(op)]);

/** A trace connection spoken by hand: raw frames out, decoded messages in. */
class RawPeer {
  readonly messages: Record<string, unknown>[] = [];
  readonly closed: Promise<void>;
  private readonly decoder = new FrameDecoder();
  private waiters: (() => void)[] = [];

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.decoder.push(chunk);
      for (let m = this.decoder.next(); m; m = this.decoder.next()) this.messages.push(m.value as Record<string, unknown>);
      for (const w of this.waiters.splice(0)) w();
    });
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('error', () => {});
  }

  static open(path: string): Promise<RawPeer> {
    return new Promise((resolve, reject) => {
      const s = connect(path);
      s.once('connect', () => resolve(new RawPeer(s)));
      s.once('error', reject);
    });
  }

  /** The first message (after `from`) matching `match`. */
  async next(match: (m: Record<string, unknown>) => boolean, from = 0, timeoutMs = 5000): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.messages.slice(from).find(match);
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`no matching message in ${timeoutMs} ms; got ${this.messages.length}`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
  }
}

describe('trace channel on a served edu-plus', () => {
  let dir: string;
  let server: VfioUserServer;
  let traceServer: TraceServer;
  let vfio: VfioUserClient;
  let tc: TraceClient;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'edu-plus-trace-'));
    server = VfioUserServer.listen({ socketPath: join(dir, 'dev.sock'), device: createEduPlus({ bar1Size: BAR1_SIZE }), log: silentLogger });
    traceServer = await startTraceServer({ socketPath: `${server.socketPath}.trace`, server, log: silentLogger });
    vfio = VfioUserClient.connect(server.socketPath);
    await vfio.version();
    tc = await TraceClient.connect(traceServer.socketPath);
  });

  after(async () => {
    tc.close();
    vfio.close();
    await traceServer.close();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('listens with mode 0600 and costs the bus nothing until someone subscribes', () => {
    assert.equal(statSync(traceServer.socketPath).mode & 0o777, 0o600);
    assert.equal(server.trace.active, false);
  });

  it('describes the device: regions (BAR1 shared, 64 MiB as a bigint) and irqs', async () => {
    const info = await tc.info();
    assert.equal(info.name, 'edu-plus');
    const bar1 = info.regions.find((r) => r.index === PciRegion.BAR1);
    assert.deepEqual(bar1, { index: 1, name: 'BAR1', size: BAR1_SIZE, readable: true, writable: true, shared: true });
    assert.equal(info.regions.find((r) => r.index === PciRegion.BAR0)?.shared, false);
    assert.deepEqual(info.irqs.map((q) => q.name), ['INTx', 'MSI']);
  });

  it('delivers a synthetic event with its bigints intact', async () => {
    assert.deepEqual(await tc.subscribe(), { types: ['client', 'region-read', 'region-write', 'interrupt', 'dma', 'reset', 'dma-map', 'dma-unmap', 'log'] });
    assert.equal(server.trace.active, true);
    server.trace.emit({ type: 'dma', direction: 'to-device', guestAddress: 0x1_2345_6000n, deviceAddress: 0x40000n, length: 4096, ok: true, path: 'direct' });
    const e = await tc.waitFor((x) => x.type === 'dma');
    assert.ok(e.type === 'dma');
    assert.equal(e.guestAddress, 0x1_2345_6000n);
    assert.equal(e.deviceAddress, 0x40000n);
    assert.equal(typeof e.timeNs, 'bigint');
    assert.equal(typeof e.seq, 'number');
  });

  it('hands events to an async iterator, in order', async () => {
    const seen: string[] = [];
    const reading = (async () => {
      for await (const e of tc.events()) {
        if (e.type !== 'log') continue;
        seen.push(e.message);
        if (e.message === 'third') break;
      }
    })();
    await new Promise((resolve) => setImmediate(resolve)); // the iterator has started listening
    for (const message of ['first', 'second', 'third']) server.trace.emit({ type: 'log', level: 'info', message });
    await reading;
    assert.deepEqual(seen, ['first', 'second', 'third']);
  });

  // Needs the lead's trace.emit in protocol/handlers/access.ts (region accesses).
  it('shows the vfio-user client writing 4 to BAR0+0x60 as a region-write event', async () => {
    await vfio.regionWrite(PciRegion.BAR0, 0x60n, le32(4));
    const e = await tc.waitFor((x) => x.type === 'region-write' && x.region === PciRegion.BAR0 && x.offset === 0x60);
    assert.ok(e.type === 'region-write');
    assert.equal(e.size, 4);
    assert.equal(accessValue(e.value), 4n);
  });

  it('filters by type, per client, and serves several clients at once', async () => {
    const logsOnly = await TraceClient.connect(traceServer.socketPath);
    try {
      await logsOnly.subscribe(['log']);
      server.trace.emit({ type: 'reset', source: 'device' });
      server.trace.emit({ type: 'log', level: 'info', message: 'marker 1' });
      const [a, b] = await Promise.all([
        logsOnly.waitFor((x) => x.type === 'log' && x.message === 'marker 1'),
        tc.waitFor((x) => x.type === 'log' && x.message === 'marker 1'),
      ]);
      assert.equal(a.seq, b.seq, 'both clients see the same event');
      assert.ok(tc.received.some((x) => x.type === 'reset' && x.seq === a.seq - 1));
      assert.equal(logsOnly.received.some((x) => x.type === 'reset'), false, 'the reset was filtered out');
      await assert.rejects(logsOnly.subscribe(['log', 'nonsense' as 'log']), /unknown event type "nonsense"; types: client, /);
    } finally {
      logsOnly.close();
    }
  });

  it('reads and writes BAR1 through shared memory, matching the device view', async () => {
    const bar1 = (server.device as EduPlus).bar1;
    const pattern = Uint8Array.from({ length: 4096 }, (_, i) => (i * 7 + 3) & 0xff);
    assert.equal(await tc.writeRegion(PciRegion.BAR1, 0x2000, pattern), 4096);
    assert.deepEqual(bar1.bytes(0x2000, 4096), pattern);
    bar1.bytes(Number(BAR1_SIZE) - 8, 8).set([1, 2, 3, 4, 5, 6, 7, 8]);
    assert.deepEqual([...(await tc.readRegion(PciRegion.BAR1, BAR1_SIZE - 8n, 8))], [1, 2, 3, 4, 5, 6, 7, 8]);
    const big = await tc.readRegion(PciRegion.BAR1, 0, 16 << 20);
    assert.equal(big.length, 16 << 20);
    assert.deepEqual(new Uint8Array(big.subarray(0x2000, 0x3000)), pattern);
  });

  it('refuses bad region requests with errors that say why', async () => {
    const cases: [Promise<unknown>, RegExp][] = [
      [tc.readRegion(PciRegion.BAR0, 0, 4), /region 0 \(BAR0\) traps every access .* shared-memory regions only: 1 \(BAR1\)/],
      [tc.readRegion(5, 0, 4), /region 5 \(BAR5\) does not exist on edu-plus/],
      [tc.readRegion(PciRegion.BAR1, BAR1_SIZE - 4n, 8), /outside region 1 \(BAR1\), which is 0x4000000 bytes \(64 MiB\)/],
      [tc.readRegion(PciRegion.BAR1, 0, (16 << 20) + 1), /exceeds the limit of 16777216 \(16 MiB\)/],
      [tc.readRegion(PciRegion.BAR1, -1, 4), /offset must be a non-negative integer/],
      [tc.writeRegion(PciRegion.BAR1, BAR1_SIZE, Uint8Array.of(1)), /outside region 1/],
      [tc.request('write-region', { region: 1, offset: 0, data: 'text' }), /data must be bytes/],
      [tc.request('frobnicate'), /unknown op "frobnicate"; ops: subscribe, unsubscribe, read-region/],
    ];
    for (const [p, message] of cases) await assert.rejects(p, (e: unknown) => e instanceof TraceRequestError && message.test(e.message));
    assert.equal((await tc.info()).name, 'edu-plus', 'the connection still works');
  });

  it('answers malformed requests with ok: false and keeps the connection', async () => {
    const peer = await RawPeer.open(traceServer.socketPath);
    peer.socket.write(frame([0x05]));
    assert.deepEqual(await peer.next(() => true), { id: null, ok: false, error: 'a request is a map { id, op, ... }, got number 5' });
    peer.socket.write(frame([0x81, ...str('op'), ...str('info')]));
    assert.match(String((await peer.next(() => true, 1)).error), /a request needs an id/);
    peer.socket.write(frame([0x81, ...str('id'), 0x09]));
    assert.match(String((await peer.next((m) => m.id === 9)).error), /a request needs an op/);
    peer.socket.write(request(10, 'info'));
    const reply = await peer.next((m) => m.id === 10);
    assert.equal(reply.ok, true);
    peer.socket.destroy();
  });

  it('closes only the trace client that sends a bad frame, telling it why', async () => {
    for (const bad of [Buffer.from([0xff, 0xff, 0xff, 0xff]), frame([0x92, 0x01])]) {
      const peer = await RawPeer.open(traceServer.socketPath);
      peer.socket.write(bad);
      const last = await peer.next((m) => 'closing' in m);
      assert.match(String(last.closing), /^bad frame: /);
      await peer.closed;
    }
    assert.equal((await tc.info()).name, 'edu-plus');
    await vfio.regionWrite(PciRegion.BAR0, 0x04n, le32(0x5a5a5a5a));
    assert.equal(Buffer.from(await vfio.regionRead(PciRegion.BAR0, 0x04n, 4)).readUInt32LE(0), ~0x5a5a5a5a >>> 0, 'the device is unaffected');
  });

  it('dumps the registers, or says clearly that the device has none', async () => {
    let regs: Record<string, unknown> | undefined;
    try {
      regs = await tc.registers();
    } catch (err) {
      assert.ok(err instanceof TraceRequestError);
      assert.match(err.message, /edu-plus offers no register dump \(its device model has no registerState\(\)\)/);
      return;
    }
    assert.ok('liveness' in regs, `registers: ${Object.keys(regs).join(', ')}`);
  });

  it('counts the session: commands by name, region accesses by index, connected', async () => {
    const before = await tc.stats();
    await vfio.regionRead(PciRegion.BAR0, 0n, 4);
    await vfio.regionRead(PciRegion.BAR0, 4n, 4);
    await vfio.regionWrite(PciRegion.BAR0, 0x20n, le32(0));
    await vfio.regionRead(PciRegion.CONFIG, 0n, 4);
    const s = await tc.stats();
    assert.equal(s.connected, true);
    assert.equal(s.sessions, 1);
    assert.equal(s.commands.VERSION, 1);
    assert.equal(s.regionReads['0']! - (before.regionReads['0'] ?? 0), 2);
    assert.equal(s.regionWrites['0']! - (before.regionWrites['0'] ?? 0), 1);
    assert.equal(s.regionReads['7']! - (before.regionReads['7'] ?? 0), 1);
    assert.equal(s.commands.REGION_READ! - (before.commands.REGION_READ ?? 0), 3);
    assert.equal(typeof s.errors, 'number');
  });

  it('keeps the last session\'s counters after the client leaves (run last: closes the client)', async () => {
    const live = await tc.stats();
    vfio.close();
    await server.clientGone();
    const s = await tc.stats();
    assert.equal(s.connected, false);
    assert.equal(s.sessions, 1);
    assert.deepEqual(s.regionReads, live.regionReads);
  });
});

describe('trace channel: limits and life cycle', () => {
  let dir: string;
  let server: VfioUserServer;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'edu-plus-trace-life-'));
    server = VfioUserServer.listen({ socketPath: join(dir, 'dev.sock'), device: createEduPlus({ bar1Size: 1n << 20n }), log: silentLogger });
  });

  after(() => {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('drops events for a subscriber that stops reading, then tells it how many', async () => {
    const ts = await startTraceServer({ socketPath: join(dir, 'slow.trace'), server, log: silentLogger });
    const peer = await RawPeer.open(ts.socketPath);
    try {
      peer.socket.write(request(1, 'subscribe'));
      await peer.next((m) => m.id === 1 && m.ok === true);
      peer.socket.pause();
      const total = 400; // 400 × 64 KiB = 25 MiB, well past the 8 MiB backlog
      const payload = new Uint8Array(64 << 10);
      for (let i = 0; i < total; i++) server.trace.emit({ type: 'region-read', region: 1, offset: i, size: payload.length, value: payload });
      const from = peer.messages.length;
      peer.socket.resume();
      const notice = await peer.next((m) => (m.event as TracedEvent | undefined)?.type === 'log', from, 10_000);
      const dropped = Number(/^(\d+) events dropped$/.exec(String((notice.event as { message: string }).message))?.[1]);
      const delivered = peer.messages.slice(from).filter((m) => (m.event as TracedEvent | undefined)?.type === 'region-read').length;
      assert.ok(dropped > 0, 'some events were dropped');
      assert.ok(delivered > 0 && delivered <= 8 * 16 + 16, `delivered ${delivered}: about 8 MiB of backlog`);
      assert.equal(delivered + dropped, total);
    } finally {
      peer.socket.destroy();
      await ts.close();
    }
  });

  it('replaces a stale socket file, refuses a live one and a non-socket', async () => {
    const path = join(dir, 'stale.trace');
    closeFd(listenUnix(path)); // A socket file nobody listens on, as a killed server leaves it.
    const ts = await startTraceServer({ socketPath: path, server, log: silentLogger });
    try {
      await assert.rejects(startTraceServer({ socketPath: path, server, log: silentLogger }), /another trace server is listening on .*stale\.trace.*EADDRINUSE/);
    } finally {
      await ts.close();
    }
    const file = join(dir, 'plain-file');
    writeFileSync(file, 'not a socket');
    await assert.rejects(startTraceServer({ socketPath: file, server, log: silentLogger }), /exists and is not a socket/);
  });

  it('says goodbye to its clients and removes the socket on close', async () => {
    const ts = await startTraceServer({ socketPath: join(dir, 'bye.trace'), server, log: silentLogger });
    const a = await TraceClient.connect(ts.socketPath);
    const b = await TraceClient.connect(ts.socketPath);
    await a.subscribe();
    const waiting = assert.rejects(a.waitFor(() => false, 10_000), /trace connection closed \(server shutting down\)/);
    await ts.close();
    assert.equal(await a.closed, 'server shutting down');
    assert.equal(await b.closed, 'server shutting down');
    await waiting;
    await assert.rejects(a.info(), /trace connection closed/);
    assert.equal(existsSync(ts.socketPath), false);
    assert.equal(server.trace.active, false, 'nobody listens to the bus any more');
  });
});
