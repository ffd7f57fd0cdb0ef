/**
 * edu-plus configuration (BAR1 size up to 16 GiB on a sparse memfd, dma_mask, huge pages) and
 * heavy work kept off the message loop (a BAR1 checksum in a piscina worker).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createEduPlus, type EduPlus } from '../device/edu-plus.ts';
import { VfioUserClient } from '../protocol/client.ts';
import { silentLogger } from '../protocol/log.ts';
import { checksumMemory, closeOffload } from '../trace/offload.ts';
import { VfioUserServer } from '../protocol/server.ts';
import { PciRegion } from '../protocol/wire.ts';

const dir = mkdtempSync(join(tmpdir(), 'edu-plus-config-'));
let n = 0;
const listen = (opts: Parameters<typeof createEduPlus>[0]) =>
  VfioUserServer.listen({ socketPath: join(dir, `c${n++}.sock`), device: createEduPlus(opts), log: silentLogger });
const u32 = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, 4).getUint32(0, true);
const le32 = (v: number) => Buffer.from(Uint32Array.of(v).buffer);

after(async () => {
  await closeOffload();
  rmSync(dir, { recursive: true, force: true });
});

describe('BAR1 size', () => {
  it('serves a 16 GiB BAR1 from a sparse memfd, usable at its last page', async () => {
    const server = listen({ bar1Size: 16n << 30n });
    const client = VfioUserClient.connect(server.socketPath);
    try {
      await client.version();
      const { info, fd } = await client.regionInfo(PciRegion.BAR1);
      assert.equal(info.size, 16n << 30n);
      assert.ok(fd !== undefined);
      const last = (16n << 30n) - 4096n;
      await client.regionWrite(PciRegion.BAR1, last, le32(0x5a5a1234));
      assert.equal(u32((server.device as EduPlus).bar1.bytes(Number(last), 4)), 0x5a5a1234);
      assert.equal(u32(await client.regionRead(PciRegion.BAR1, last, 4)), 0x5a5a1234);
      // Sparse: 16 GiB of BAR1 costs this process next to nothing until pages are touched.
      assert.ok(process.memoryUsage().rss < 2 ** 31, `RSS ${process.memoryUsage().rss} bytes`);
    } finally {
      client.close();
      server.close();
    }
  });

  it('refuses sizes that are not a power of two from 1 MiB, with a message that says so', () => {
    for (const size of [3n << 20n, 1n << 19n, 1n << 41n]) {
      assert.throws(() => listen({ bar1Size: size }), /must be a power of two from 1 MiB to 1 TiB/);
    }
  });
});

describe('dma_mask', () => {
  it('refuses a transfer beyond the mask and allows it under a wider one', async () => {
    for (const [mask, ok] of [[(1n << 28n) - 1n, false], [(1n << 40n) - 1n, true]] as const) {
      const server = listen({ dmaMask: mask });
      const client = VfioUserClient.connect(server.socketPath);
      try {
        await client.version();
        const guest = new Uint8Array(4096).fill(0x77);
        await client.dmaMap({ address: 1n << 32n, size: 4096n, memory: guest });
        // Bus master enable, then RAM → device from 4 GiB (beyond 28 bits).
        await client.regionWrite(PciRegion.CONFIG, 4n, Uint8Array.of(0x06, 0x00));
        await client.regionWrite(PciRegion.BAR0, 0x80n, Buffer.from(BigUint64Array.of(1n << 32n).buffer));
        await client.regionWrite(PciRegion.BAR0, 0x88n, Buffer.from(BigUint64Array.of(0x40000n).buffer));
        await client.regionWrite(PciRegion.BAR0, 0x90n, Buffer.from(BigUint64Array.of(16n).buffer));
        const refused = new Promise<boolean>((resolve) => {
          const stop = server.trace.subscribe((e) => {
            if (e.type !== 'dma') return;
            stop();
            resolve(!e.ok && /exceeds dma_mask/.test(e.error ?? ''));
          });
        });
        await client.regionWrite(PciRegion.BAR0, 0x98n, le32(1));
        assert.equal(await refused, !ok);
        assert.deepEqual([...(server.device as EduPlus).dmaEngine.buffer.subarray(0, 4)], ok ? [0x77, 0x77, 0x77, 0x77] : [0, 0, 0, 0]);
      } finally {
        client.close();
        server.close();
      }
    }
  });

  it('refuses a mask that is not 2^n - 1', () => {
    assert.throws(() => listen({ dmaMask: 0x1234n }), /must be 2\^n - 1/);
  });
});

describe('huge pages', () => {
  it('backs BAR1 with 2 MiB pages when the host has them, and says how to reserve them when not', () => {
    const info = readFileSync('/proc/meminfo', 'utf8');
    const free = Number(/HugePages_Free:\s+(\d+)/.exec(info)?.[1] ?? 0);
    const pageKiB = Number(/Hugepagesize:\s+(\d+)/.exec(info)?.[1] ?? 0);
    const enough = pageKiB === 2048 && free >= 2;
    if (enough) {
      const server = listen({ bar1Size: 4n << 20n, hugePages: true });
      server.close();
    } else {
      assert.throws(() => listen({ bar1Size: 4n << 20n, hugePages: true }), /needs 2 free 2 MiB huge pages.*echo 2 > \/proc\/sys\/vm\/nr_hugepages/);
    }
  });
});

describe('serve flags', () => {
  const cli = (args: string[]) =>
    spawnSync(process.execPath, [join(import.meta.dirname, '../node_modules/tsx/dist/cli.mjs'), join(import.meta.dirname, '../cli/main.ts'), 'serve', ...args], { encoding: 'utf8' });
  it('explains a bad --bar1-size, --dma-mask or --dma-delay-ms and exits 2', () => {
    for (const [args, message] of [
      [['--bar1-size', '3M'], /--bar1-size 3M: BAR1 size 3145728 must be a power of two/],
      [['--bar1-size', 'big'], /--bar1-size takes a size like 64M, 1G or 16G/],
      [['--dma-mask', '0x1234'], /--dma-mask: dma_mask 0x1234 must be 2\^n - 1/],
      [['--dma-delay-ms', '-5'], /--dma-delay-ms must be a whole number/],
    ] as const) {
      const r = cli([...args]);
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, message);
    }
  });
});

describe('work off the message loop', () => {
  it('checksums 1 GiB of BAR1 in a worker while BAR0 reads keep being answered', async () => {
    const server = listen({ bar1Size: 1n << 30n });
    const client = VfioUserClient.connect(server.socketPath);
    try {
      await client.version();
      const bar1 = (server.device as EduPlus).bar1;
      bar1.bytes(12345, 5).set([1, 2, 3, 4, 5]);
      let done = false;
      const job = checksumMemory(bar1, 0, 1 << 30).then((digest) => {
        done = true;
        return digest;
      });
      let readsDuringJob = 0;
      while (!done) {
        assert.equal(u32(await client.regionRead(PciRegion.BAR0, 0n, 4)), 0x010000ed);
        if (!done) readsDuringJob++;
      }
      // Computed here the same way (on this thread: only the worker result is under test).
      const expected = createHash('sha256');
      for (let at = 0; at < 1 << 30; at += 64 << 20) expected.update(bar1.bytes(at, 64 << 20));
      assert.equal(await job, expected.digest('hex'));
      // Had the hash run on the loop, no read could have been answered before it finished.
      assert.ok(readsDuringJob >= 20, `only ${readsDuringJob} register reads were answered during the checksum`);
    } finally {
      client.close();
      server.close();
    }
  });
});
