/**
 * The GPU-like device through the real server and a raw vfio-user client: its BAR layout
 * (sizing masks, 64-bit prefetchable VRAM of 1 GiB or more with one sparse mmap area and its
 * fd, trapped register and doorbell BARs), the MSI-X capability and table in BAR0, doorbells
 * that count and raise their vector, and FLR that clears the registers but keeps VRAM.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DOORBELL_BAR, GPU_ID, GpuReg, VRAM_BAR, createGpu } from '../../device/gpu.ts';
import { close, eventfdConsume, eventfdCreate } from '../../protocol/native/libc.ts';
import { type Harness, startServer, withClient, withFreshDevice } from './harness.ts';
import { CONFIG, Irq, RegionFlag, barSize, capabilities, functionLevelReset, read, regionInfo, wireVector, write } from './pci-access.ts';

const GiB = 1n << 30n;
/** The default VRAM: several GiB (a sparse memfd, so the test host spends nothing on it). */
const VRAM = 4n * GiB;

describe('the GPU-like device', () => {
  let h: Harness;
  before(() => {
    h = startServer(undefined, createGpu());
  });
  after(() => h.close());

  it('declares 1af4:10f0, a 3D controller, with MSI-X then PCI Express (FLR)', async () => {
    await withFreshDevice(h, async (c) => {
      assert.equal(await read(c, CONFIG, 0, 4), 0x10f01af4);
      assert.equal((await read(c, CONFIG, 0x08, 4)) >>> 8, 0x030200);
      const caps = await capabilities(c);
      assert.deepEqual([...caps.keys()], [0x11, 0x10]);
      const exp = caps.get(0x10)!;
      assert.equal((await read(c, CONFIG, exp + 4, 4)) & (1 << 28), 1 << 28, 'Device Capabilities: FLR');
    });
  });

  it('sizes BAR0 and BAR4 as small 32-bit BARs and BAR2 as 64-bit prefetchable VRAM', async () => {
    await withFreshDevice(h, async (c) => {
      assert.deepEqual(await barSize(c, 0), { size: 16384n, is64: false, prefetchable: false });
      assert.deepEqual(await barSize(c, VRAM_BAR), { size: VRAM, is64: true, prefetchable: true });
      assert.deepEqual(await barSize(c, DOORBELL_BAR), { size: 4096n, is64: false, prefetchable: false });
    });
  });

  it('advertises VRAM as one sparse mmap area with its fd, and traps BAR0 and the doorbells', async () => {
    await withClient(h, async (c) => {
      const vram = await regionInfo(c, VRAM_BAR);
      assert.equal(vram.size, VRAM);
      assert.equal(vram.flags, RegionFlag.READ | RegionFlag.WRITE | RegionFlag.MMAP | RegionFlag.CAPS);
      assert.deepEqual(vram.areas, [[0n, VRAM]]);
      assert.ok(vram.fd);
      assert.ok(vram.size >= GiB && (vram.size & (vram.size - 1n)) === 0n, 'a power of two of at least 1 GiB: 1 GiB aligned');
      for (const [index, size] of [[0, 16384n], [DOORBELL_BAR, 4096n]] as const) {
        assert.deepEqual(await regionInfo(c, index), { flags: RegionFlag.READ | RegionFlag.WRITE, size, areas: [], fd: false });
      }
      assert.equal((await regionInfo(c, 3)).size, 0n, 'slot 3 is the upper half of BAR2');
    });
  });

  it('reads its identity and VRAM size from BAR0', async () => {
    await withFreshDevice(h, async (c) => {
      assert.equal(await read(c, 0, GpuReg.ID, 4), GPU_ID);
      assert.equal(await read(c, 0, GpuReg.VRAM_SIZE, 8), VRAM);
      assert.equal(await read(c, 0, GpuReg.VRAM_SIZE + 4, 4), Number(VRAM >> 32n));
    });
  });

  it('keeps an MSI-X table in BAR0: 16 entries, masked at reset, written entries read back', async () => {
    await withFreshDevice(h, async (c) => {
      const msix = (await capabilities(c)).get(0x11)!;
      assert.equal((await read(c, CONFIG, msix + 2, 2)) & 0x7ff, 15, 'table size 16 (N-1)');
      assert.equal(await read(c, CONFIG, msix + 4, 4), GpuReg.MSIX_TABLE, 'table at BAR0+0x2000');
      assert.equal(await read(c, CONFIG, msix + 8, 4), GpuReg.MSIX_PBA, 'PBA at BAR0+0x3000');
      const entry = (v: number, field: number) => GpuReg.MSIX_TABLE + v * 16 + field;
      for (const v of [0, 15]) assert.equal(await read(c, 0, entry(v, 12), 4), 1, `vector ${v} masked`);
      await write(c, 0, entry(3, 0), 8, 0xfee0_1000n);
      await write(c, 0, entry(3, 8), 4, 0x4023);
      assert.equal(await read(c, 0, entry(3, 0), 8), 0xfee0_1000n);
      assert.equal(await read(c, 0, entry(3, 8), 4), 0x4023);
      assert.equal(await read(c, 0, GpuReg.SCRATCH, 4), 0, 'table writes do not reach the registers');
    });
  });

  it('counts doorbell rings and raises the doorbell\'s MSI-X vector only when enabled', async () => {
    await withFreshDevice(h, async (c) => {
      const five = eventfdCreate();
      const two = eventfdCreate();
      try {
        await wireVector(c, Irq.MSIX, 5, five);
        await wireVector(c, Irq.MSIX, 2, two);
        await write(c, DOORBELL_BAR, 5 * 4, 4, 0xaaaa);
        assert.equal(eventfdConsume(five), 0n, 'not enabled: no interrupt');
        await write(c, 0, GpuReg.DOORBELL_IRQ_ENABLE, 4, 1 << 5);
        await write(c, DOORBELL_BAR, 5 * 4, 4, 0xbbbb);
        assert.equal(eventfdConsume(five), 1n, 'doorbell 5 raised vector 5');
        assert.equal(eventfdConsume(two), 0n, 'and no other');
        assert.equal(await read(c, 0, GpuReg.DOORBELL_COUNT + 5 * 8, 4), 2);
        assert.equal(await read(c, 0, GpuReg.DOORBELL_LAST + 5 * 8, 4), 0xbbbb);
        await write(c, 0, GpuReg.IRQ_RAISE, 4, 2);
        assert.equal(eventfdConsume(two), 1n, 'IRQ_RAISE 2 raised vector 2');
      } finally {
        close(five);
        close(two);
      }
    });
  });

  it('clears its registers on FLR and keeps VRAM', async () => {
    await withFreshDevice(h, async (c) => {
      const far = VRAM - 4096n;
      await write(c, VRAM_BAR, far, 8, 0x0123_4567_89ab_cdefn);
      await write(c, 0, GpuReg.SCRATCH, 4, 0x55);
      await write(c, 0, GpuReg.DOORBELL_IRQ_ENABLE, 4, 0xff);
      await write(c, DOORBELL_BAR, 0, 4, 1);
      await functionLevelReset(c);
      assert.equal(await read(c, 0, GpuReg.SCRATCH, 4), 0);
      assert.equal(await read(c, 0, GpuReg.DOORBELL_IRQ_ENABLE, 4), 0);
      assert.equal(await read(c, 0, GpuReg.DOORBELL_COUNT, 4), 0);
      assert.equal(await read(c, VRAM_BAR, far, 8), 0x0123_4567_89ab_cdefn, 'VRAM kept, up to its last page');
    });
  });
});
