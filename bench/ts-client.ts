/**
 * The TS client for bench/host.ts, in its own process so it can be pinned like the C client:
 * WARMUP unrecorded 4-byte REGION_READs of BAR0 offset 0, then N timed ones through the
 * blocking path (poll + recvmsg via koffi, no promise per message). Writes the N round-trip
 * times (nanoseconds) to OUT as little-endian doubles, the format bench/c-echo.c writes.
 *
 *   tsx bench/ts-client.ts SOCKET WARMUP N OUT [--version]
 *
 * --version negotiates VERSION first (our server requires it; the C echo server does not).
 */
import { writeFileSync } from 'node:fs';
import { VfioUserClient } from '../protocol/client.ts';
import { Command, PciRegion } from '../protocol/wire.ts';

const [socketPath, warmupArg, countArg, out, flag] = process.argv.slice(2);
const warmup = Number(warmupArg);
const count = Number(countArg);
if (!socketPath || !out || !Number.isSafeInteger(warmup) || !Number.isSafeInteger(count) || count < 1 || (flag !== undefined && flag !== '--version')) {
  console.error('usage: tsx bench/ts-client.ts SOCKET WARMUP N OUT [--version]');
  process.exit(2);
}

const client = VfioUserClient.connect(socketPath);
// major u16 0, minor u16 0, then the JSON "{}" with its NUL (the smallest valid VERSION body).
if (flag === '--version') client.requestSync(Command.VERSION, Uint8Array.from([0, 0, 0, 0, 0x7b, 0x7d, 0]));

const samples = new Float64Array(count);
for (let i = -warmup; i < count; i++) {
  const t0 = performance.now();
  const data = client.regionReadSync(PciRegion.BAR0, 0n, 4);
  const t1 = performance.now();
  // edu's identification register, 0x010000ed little-endian.
  if (data[0] !== 0xed || data[1] !== 0 || data[2] !== 0 || data[3] !== 0x01) {
    throw new Error(`REGION_READ returned ${Buffer.from(data).toString('hex')}, expected ed000001`);
  }
  if (i >= 0) samples[i] = (t1 - t0) * 1e6;
}
client.close();
writeFileSync(out, new Uint8Array(samples.buffer));
