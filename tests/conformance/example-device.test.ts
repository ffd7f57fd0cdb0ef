/**
 * The README's example device (examples/scratch-device.ts) through the real server and a
 * client speaking raw vfio-user: what a device author gets from the PCI layer for ~80 lines —
 * identity and BAR sizing from the declaration, a trapped register BAR, a RAM BAR advertised as
 * one mmap area with its fd, MSI delivery, FLR that resets registers and keeps RAM. If the
 * device-authoring interface drifts, this file stops compiling or passing.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import createScratchDevice, { SCRATCH_ID, type ScratchDevice } from '../../examples/scratch-device.ts';
import { close, eventfdConsume, eventfdCreate } from '../../protocol/native/libc.ts';
import { Cmd, type Harness, body, expectErrno, rd, startServer, withClient, withFreshDevice } from './harness.ts';
import { CONFIG, Irq, RegionFlag, wireVector, barSize, capabilities, functionLevelReset, read, regionInfo, write } from './pci-access.ts';

const MiB = 1n << 20n;

describe('the example device (examples/scratch-device.ts)', () => {
  let h: Harness;
  before(() => {
    h = startServer(undefined, createScratchDevice);
  });
  after(() => h.close());

  it('has the declared identity, BARs whose sizing masks match the regions, MSI then PCI Express', async () => {
    await withFreshDevice(h, async (c) => {
      assert.equal(await read(c, CONFIG, 0, 4), 0x5c7a1234);
      assert.equal((await read(c, CONFIG, 0x08, 4)) >>> 8, 0xff0000, 'class code');
      assert.deepEqual(await barSize(c, 0), { size: 4096n, is64: false, prefetchable: false });
      assert.deepEqual(await barSize(c, 2), { size: MiB, is64: true, prefetchable: true });
      assert.deepEqual([...(await capabilities(c)).keys()], [0x05, 0x10]);
      const info = await expectErrno(c, Cmd.DEVICE_GET_INFO, body.u32s(16, 0, 0, 0), 0);
      assert.equal(rd.u32(info, 4) & 0x3, 0x3, 'device flags: RESET | PCI');
    });
  });

  it('traps BAR0 and shares BAR2: one mmap area over the whole BAR, with its fd', async () => {
    await withClient(h, async (c) => {
      const bar0 = await regionInfo(c, 0);
      assert.deepEqual(bar0, { flags: RegionFlag.READ | RegionFlag.WRITE, size: 4096n, areas: [], fd: false });
      const bar2 = await regionInfo(c, 2);
      assert.equal(bar2.flags & RegionFlag.MMAP, RegionFlag.MMAP);
      assert.deepEqual(bar2.areas, [[0n, MiB]]);
      assert.ok(bar2.fd, 'the RAM BAR comes with its memfd');
      assert.equal((await regionInfo(c, 1)).size, 0n, 'slot 1 is not declared: empty');
    });
  });

  it('answers its registers: ID, SCRATCH, a DOORBELL that counts and raises MSI', async () => {
    await withFreshDevice(h, async (c) => {
      assert.equal(await read(c, 0, 0x00, 4), SCRATCH_ID);
      await write(c, 0, 0x04, 4, 0xcafe);
      assert.equal(await read(c, 0, 0x04, 4), 0xcafe);
      const efd = eventfdCreate();
      try {
        await wireVector(c, Irq.MSI, 0, efd);
        await write(c, 0, 0x08, 4, 1);
        await write(c, 0, 0x08, 4, 2);
        assert.equal(eventfdConsume(efd), 2n, 'two rings, two MSI edges');
        assert.equal(await read(c, 0, 0x08, 4), 2);
      } finally {
        close(efd);
      }
    });
  });

  it('resets its registers on FLR and keeps the RAM BAR', async () => {
    await withFreshDevice(h, async (c) => {
      await write(c, 0, 0x04, 4, 77);
      await write(c, 2, 0x100, 4, 0xfeed);
      await functionLevelReset(c);
      assert.equal(await read(c, 0, 0x04, 4), 0, 'SCRATCH back to 0');
      assert.equal((h.server.device as ScratchDevice).scratch, 0);
      assert.equal(await read(c, 2, 0x100, 4), 0xfeed, 'RAM kept');
    });
  });
});
