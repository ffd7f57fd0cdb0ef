/**
 * INTx as vfio-pci drives it: level-triggered, automasked, re-fired on unmask while asserted,
 * the PCI status Interrupt bit following the line, the command Interrupt Disable bit holding it
 * down — and MSI instead once the client wires an MSI eventfd.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createEduPlus } from '../device/edu-plus.ts';
import { VfioUserClient } from '../protocol/client.ts';
import { silentLogger } from '../protocol/log.ts';
import { close, eventfdConsume, eventfdCreate } from '../protocol/native/libc.ts';
import { VfioUserServer } from '../protocol/server.ts';
import { IrqSetFlags, PciIrq, PciRegion } from '../protocol/wire.ts';

const le32 = (v: number) => Buffer.from(Uint32Array.of(v).buffer);
const le16 = (v: number) => Buffer.from(Uint16Array.of(v).buffer);
const { DATA_NONE, DATA_EVENTFD, ACTION_TRIGGER, ACTION_UNMASK } = IrqSetFlags;

describe('INTx and MSI', () => {
  const dir = mkdtempSync(join(tmpdir(), 'edu-plus-intx-'));
  let server: VfioUserServer;
  let client: VfioUserClient;
  let intx: number;

  const status = async () => Buffer.from(await client.regionRead(PciRegion.CONFIG, 6n, 2)).readUInt16LE(0);
  const raise = (bits: number) => client.regionWrite(PciRegion.BAR0, 0x60n, le32(bits));
  const ack = (bits: number) => client.regionWrite(PciRegion.BAR0, 0x64n, le32(bits));
  const unmask = () => client.setIrqs({ flags: DATA_NONE | ACTION_UNMASK, index: PciIrq.INTX, start: 0, count: 1 });
  const command = (v: number) => client.regionWrite(PciRegion.CONFIG, 4n, le16(v));

  before(async () => {
    server = VfioUserServer.listen({ socketPath: join(dir, 'i.sock'), device: createEduPlus(), log: silentLogger });
    client = VfioUserClient.connect(server.socketPath);
    await client.version();
    intx = eventfdCreate();
    await client.setIrqs({ flags: DATA_EVENTFD | ACTION_TRIGGER, index: PciIrq.INTX, start: 0, count: 1, fds: [intx] });
  });

  after(() => {
    close(intx);
    client.close();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('fires once per assertion, masks itself, and re-fires on unmask while still asserted', async () => {
    await raise(1);
    assert.equal(eventfdConsume(intx), 1n);
    assert.equal((await status()) & 0x8, 0x8, 'status Interrupt bit follows the pending INTx');
    await raise(2);
    assert.equal(eventfdConsume(intx), 0n, 'the line is already high: no new edge');
    await unmask();
    assert.equal(eventfdConsume(intx), 1n, 'unmasked while asserted: fires again');
    await ack(3);
    assert.equal((await status()) & 0x8, 0);
    await unmask();
    assert.equal(eventfdConsume(intx), 0n, 'released and unmasked: quiet');
  });

  it('holds the line down while the command register disables INTx, and raises it when re-enabled', async () => {
    await command(0x400);
    await raise(1);
    assert.equal(eventfdConsume(intx), 0n);
    assert.equal((await status()) & 0x8, 0x8, 'the status bit still shows the pending interrupt');
    await command(0);
    assert.equal(eventfdConsume(intx), 1n);
    await ack(1);
    await unmask();
  });

  it('uses MSI instead once the client wires an MSI eventfd', async () => {
    const msi = eventfdCreate();
    try {
      await client.setIrqs({ flags: DATA_EVENTFD | ACTION_TRIGGER, index: PciIrq.MSI, start: 0, count: 1, fds: [msi] });
      await raise(4);
      await raise(4);
      assert.equal(eventfdConsume(msi), 2n, 'MSI is an edge per raise');
      assert.equal(eventfdConsume(intx), 0n);
      await ack(4);
      await client.setIrqs({ flags: DATA_NONE | ACTION_TRIGGER, index: PciIrq.MSI, start: 0, count: 0 });
    } finally {
      close(msi);
    }
  });
});
