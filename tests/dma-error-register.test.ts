/**
 * edu-plus's DMA_ERROR register (BAR0 0xa8, an offset edu leaves unused): after a transfer it
 * reads why nothing moved — or 0 when the copy happened — so a driver can tell a refused DMA
 * from a finished one, which edu alone cannot (RUN clears either way). Driven over vfio-user
 * by our client, the way a guest driver would: program the DMA registers, poll RUN, read 0xa8.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createEduPlus } from '../device/edu-plus.ts';
import { VfioUserClient } from '../protocol/client.ts';
import { silentLogger } from '../protocol/log.ts';
import { VfioUserServer } from '../protocol/server.ts';
import { PciRegion } from '../protocol/wire.ts';

const dir = mkdtempSync(join(tmpdir(), 'edu-plus-dma-error-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const le64 = (v: bigint) => Buffer.from(BigUint64Array.of(v).buffer);
const RUN = 1n;
const TO_RAM = 2n;
const IRQ = 4n;

describe('DMA_ERROR (BAR0 0xa8)', () => {
  it('reads 0 after a transfer, the reason code after a refusal, and is cleared by the next start', async () => {
    const server = VfioUserServer.listen({ socketPath: join(dir, 'e.sock'), device: createEduPlus(), log: silentLogger });
    const client = VfioUserClient.connect(server.socketPath);
    try {
      await client.version();
      const guest = new Uint8Array(0x2000).fill(0x42);
      await client.dmaMap({ address: 0x10000n, size: 0x2000n, memory: guest });
      const reg = async (off: bigint, size = 8) => {
        const b = Buffer.from(await client.regionRead(PciRegion.BAR0, off, size));
        return size === 8 ? b.readBigUInt64LE(0) : BigInt(b.readUInt32LE(0));
      };
      /** Programs one transfer, waits for RUN to clear, returns DMA_ERROR. */
      const dma = async (src: bigint, dst: bigint, count: bigint, cmd: bigint) => {
        await client.regionWrite(PciRegion.BAR0, 0x80n, le64(src));
        await client.regionWrite(PciRegion.BAR0, 0x88n, le64(dst));
        await client.regionWrite(PciRegion.BAR0, 0x90n, le64(count));
        await client.regionWrite(PciRegion.BAR0, 0x98n, le64(cmd | RUN));
        while ((await reg(0x98n)) & RUN) await new Promise((r) => setImmediate(r));
        return reg(0xa8n, 4);
      };
      const setCommand = (bits: number) => client.regionWrite(PciRegion.CONFIG, 4n, Uint8Array.of(bits, 0));

      assert.equal(await reg(0xa8n, 4), 0n, 'power-on: no refusal');
      assert.equal(await dma(0x10000n, 0x40000n, 16n, 0n), 1n, 'bus mastering off');
      await setCommand(0x06); // memory + bus master
      assert.equal(await dma(0x10000n, 0x40ff0n, 32n, 0n), 2n, 'device range leaves the 4 KiB buffer');
      assert.equal(await dma(1n << 32n, 0x40000n, 16n, 0n), 3n, 'beyond the 28-bit dma_mask');
      assert.equal(await dma(0x20000n, 0x40000n, 16n, 0n), 4n, 'guest range not mapped');
      assert.equal(await dma(0x10000n, 0x40000n, 16n, 0n), 0n, 'RAM → buffer happened');
      assert.equal(await dma(0x40000n, 0x11000n, 16n, TO_RAM | IRQ), 0n, 'buffer → RAM happened');
      assert.deepEqual([...guest.subarray(0x1000, 0x1010)], new Array(16).fill(0x42));
      assert.equal(await reg(0x24n, 4), 0x100n, 'a finished transfer with the IRQ bit raises 0x100 as in edu');
      await client.regionWrite(PciRegion.BAR0, 0x64n, Buffer.from(Uint32Array.of(0x100).buffer));
      assert.equal(await dma(0x30000n, 0x40000n, 16n, IRQ), 4n);
      assert.equal(await reg(0x24n, 4), 0n, 'a refused transfer raises nothing');

      await client.regionWrite(PciRegion.BAR0, 0xa8n, le64(0n));
      assert.equal(await reg(0xa8n, 4), 4n, 'read-only: a write changes nothing');
      assert.equal(await reg(0xa0n, 4), 0xffffffffn, 'edu\'s unused offsets still read all-ones');
      await client.reset();
      assert.equal(await reg(0xa8n, 4), 0n, 'reset clears it');
    } finally {
      client.close();
      server.close();
    }
  });
});
