/**
 * The warm-up before listening: it rehearses a guest's traffic on a stand-in built by the same
 * factory, leaves the served device exactly as it was built, frees the stand-in's memory, and
 * falls back to config reads of the device itself when no second instance can be built.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createEduPlus } from '../device/edu-plus.ts';
import { silentLogger } from '../protocol/log.ts';
import { VfioUserServer } from '../protocol/server.ts';
import type { DeviceFactory, DeviceModel, SharedMemory } from '../protocol/served-device.ts';
import { PciRegion } from '../protocol/wire.ts';

/** What each device instance a factory built went through. */
interface Built {
  readonly device: DeviceModel;
  readonly memory: SharedMemory[];
  reads: number;
  writes: number;
  barWrites: number;
}

/** Wraps edu-plus so that every instance counts its accesses; `fail` refuses instances after the first. */
function counting(fail = false, viewMemory = false): { factory: DeviceFactory; built: Built[] } {
  const built: Built[] = [];
  const inner = createEduPlus();
  const factory: DeviceFactory = (host) => {
    if (fail && built.length > 0) throw new Error('only one instance of this device');
    const memory: SharedMemory[] = [];
    const allocateSharedMemory: typeof host.allocateSharedMemory = (name, size, opts) => {
      const m = host.allocateSharedMemory(name, size, opts);
      if (viewMemory) m.bytes(0, 1);
      memory.push(m);
      return m;
    };
    const device = inner({ ...host, allocateSharedMemory });
    const entry: Built = { device, memory, reads: 0, writes: 0, barWrites: 0 };
    built.push(entry);
    const read = device.read.bind(device);
    const write = device.write.bind(device);
    device.read = (region, offset, into) => {
      entry.reads++;
      read(region, offset, into);
    };
    device.write = (region, offset, data) => {
      entry.writes++;
      if (region !== PciRegion.CONFIG) entry.barWrites++;
      write(region, offset, data);
    };
    return device;
  };
  return { factory, built };
}

describe('request path warm-up', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'edu-plus-warm-up-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('rehearses reads and writes on a stand-in and leaves the served device untouched', () => {
    const { factory, built } = counting();
    const reference = VfioUserServer.listen({ socketPath: join(dir, 'ref.sock'), device: createEduPlus(), log: silentLogger, warmUpRounds: 0 });
    const asBuilt = { registers: reference.device.registerState!(), config: configOf(reference.device) };
    reference.close();
    const server = VfioUserServer.listen({ socketPath: join(dir, 'a.sock'), device: factory, log: silentLogger, warmUpRounds: 2000 });
    try {
      assert.equal(built.length, 2, 'the factory builds the served device and one stand-in');
      const [served, standIn] = built as [Built, Built];
      assert.equal(served.device, server.device);
      assert.deepEqual({ reads: served.reads, writes: served.writes }, { reads: 0, writes: 0 }, 'the served device saw no access');
      assert.deepEqual({ registers: served.device.registerState!(), config: configOf(served.device) }, asBuilt, 'its registers and config space are as built');
      assert.ok(standIn.reads + standIn.writes >= 1000, `the stand-in took the rehearsal (${standIn.reads} reads, ${standIn.writes} writes)`);
      assert.ok(standIn.barWrites > 0, 'BAR registers were written back on the stand-in');
      for (const m of standIn.memory) assert.throws(() => m.bytes(0, 1), /used after close/, 'the stand-in memory is released');
    } finally {
      server.close();
    }
  });

  it('keeps a stand-in memory its device viewed mapped for a while (work the rehearsal started may still use it)', () => {
    const { factory, built } = counting(false, true);
    const server = VfioUserServer.listen({ socketPath: join(dir, 'v.sock'), device: factory, log: silentLogger, warmUpRounds: 200 });
    try {
      assert.equal(built.length, 2);
      for (const m of built[1]!.memory) assert.equal(m.bytes(0, 1).length, 1);
    } finally {
      server.close();
    }
  });

  it('warms up with config reads of the device itself when a second instance cannot be built', () => {
    const { factory, built } = counting(true);
    const server = VfioUserServer.listen({ socketPath: join(dir, 'b.sock'), device: factory, log: silentLogger, warmUpRounds: 500 });
    try {
      assert.equal(built.length, 1);
      const [served] = built as [Built];
      assert.ok(served.reads >= 500, `config reads ran on the device (${served.reads})`);
      assert.equal(served.writes, 0, 'and nothing was written');
    } finally {
      server.close();
    }
  });

  it('closes the stand-in right after the warm-up, and the served device when the server closes', () => {
    const closed: number[] = [];
    const inner = createEduPlus();
    let instances = 0;
    const factory: DeviceFactory = (host) => {
      const n = instances++;
      const device: DeviceModel = inner(host);
      device.close = () => closed.push(n);
      return device;
    };
    const server = VfioUserServer.listen({ socketPath: join(dir, 'd.sock'), device: factory, log: silentLogger, warmUpRounds: 100 });
    assert.deepEqual(closed, [1], 'the stand-in (the second instance) was closed');
    server.close();
    assert.deepEqual(closed, [1, 0]);
  });

  it('skips the warm-up entirely with 0 rounds', () => {
    const { factory, built } = counting();
    const server = VfioUserServer.listen({ socketPath: join(dir, 'c.sock'), device: factory, log: silentLogger, warmUpRounds: 0 });
    server.close();
    assert.equal(built.length, 1);
    assert.equal(built[0]!.reads, 0);
  });
});

/** Config space as the device holds it (these reads count as accesses: checked after the counts). */
function configOf(device: DeviceModel): number[] {
  const bytes = new Uint8Array(256);
  device.read(PciRegion.CONFIG, 0, bytes);
  return [...bytes];
}
