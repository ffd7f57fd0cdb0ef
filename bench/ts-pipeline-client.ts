/**
 * The TS pipelined client for bench/host.ts: 4-byte REGION_READs of BAR0 offset 0 with DEPTH
 * in flight through the client's asynchronous path (regionRead promises on the event loop):
 * DEPTH sent back to back, then one more for each reply, WARMUP unrecorded then N timed. Writes
 * one little-endian double to OUT, the N timed replies' total time in nanoseconds (the format
 * of `c-echo pipeline`).
 *
 *   tsx bench/ts-pipeline-client.ts SOCKET DEPTH WARMUP N OUT [--version]
 */
import { writeFileSync } from 'node:fs';
import { VfioUserClient } from '../protocol/client.ts';
import { PciRegion } from '../protocol/wire.ts';

const [socketPath, depthArg, warmupArg, countArg, out, flag] = process.argv.slice(2);
const depth = Number(depthArg);
const warmup = Number(warmupArg);
const count = Number(countArg);
if (!socketPath || !out || !Number.isSafeInteger(depth) || depth < 1 || !Number.isSafeInteger(warmup) || !Number.isSafeInteger(count) || count < 1 || (flag !== undefined && flag !== '--version')) {
  console.error('usage: tsx bench/ts-pipeline-client.ts SOCKET DEPTH WARMUP N OUT [--version]');
  process.exit(2);
}

/** n requests, at most `depth` in flight; resolves when every reply has come back. */
function phase(client: VfioUserClient, n: number): Promise<void> {
  if (n === 0) return Promise.resolve();
  let sent = 0;
  let got = 0;
  return new Promise((resolve, reject) => {
    const issue = () => {
      while (sent < n && sent - got < depth) {
        sent++;
        client.regionRead(PciRegion.BAR0, 0n, 4).then((data) => {
          if (data[0] !== 0xed || data[3] !== 0x01) return reject(new Error(`REGION_READ returned ${Buffer.from(data).toString('hex')}`));
          if (++got === n) resolve();
          else issue();
        }, reject);
      }
    };
    issue();
  });
}

const client = VfioUserClient.connect(socketPath);
if (flag === '--version') await client.version();
await phase(client, warmup);
const t0 = performance.now();
await phase(client, count);
const totalNs = (performance.now() - t0) * 1e6;
client.close();
writeFileSync(out, new Uint8Array(Float64Array.of(totalNs).buffer));
