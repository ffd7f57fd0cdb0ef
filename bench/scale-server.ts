/**
 * The pieces of the scale suite that touch processes: one real `serve --device edu-plus …`
 * process serving N devices, quiet clients connected to some of them from the bench process,
 * the C client (bench/c-echo.c) driving others, and what /proc says about the server's memory
 * (its CPU time comes from proc-cpu.ts).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { VfioUserClient } from '../protocol/client.ts';
import { PciRegion } from '../protocol/wire.ts';
import { type RunningServer, runClient, startServer, stopServer } from './processes.ts';

const root = join(import.meta.dirname, '..');

/** The serve command prints this line once every device listens (cli/serve-devices.ts). */
const SERVING_LINE = 'Stop with Ctrl-C.';

/** One process's memory, in KiB: VmRSS and its parts from status, private pages from smaps_rollup. */
export interface Memory {
  readonly vmRssKiB: number;
  readonly rssAnonKiB: number;
  readonly rssFileKiB: number;
  /** Shared memory resident in the process: the BAR1 memfds' touched pages. */
  readonly rssShmemKiB: number;
  /** Pages only this process maps (what it costs the machine beyond shared code). */
  readonly privateKiB: number;
}

export function memoryOf(pid: number): Memory {
  const field = (text: string, name: string, file: string) => {
    const m = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text);
    if (!m) throw new Error(`/proc/${pid}/${file} has no ${name}`);
    return Number(m[1]);
  };
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  return {
    vmRssKiB: field(status, 'VmRSS', 'status'),
    rssAnonKiB: field(status, 'RssAnon', 'status'),
    rssFileKiB: field(status, 'RssFile', 'status'),
    rssShmemKiB: field(status, 'RssShmem', 'status'),
    privateKiB: field(rollup, 'Private_Clean', 'smaps_rollup') + field(rollup, 'Private_Dirty', 'smaps_rollup'),
  };
}

/** A `serve` process with one edu-plus device per socket (trace channels on, as by default). */
export class DeviceServer {
  private readonly idle = new Map<number, VfioUserClient>();

  private constructor(
    private readonly server: RunningServer,
    readonly sockets: readonly string[],
    /** Seconds from spawn to the serving line. */
    readonly startSeconds: number,
  ) {}

  static async start(dir: string, devices: number, tag: string): Promise<DeviceServer> {
    const sockets = Array.from({ length: devices }, (_, i) => join(dir, `${tag}-d${i}.sock`));
    const argv = [process.execPath, '--import', 'tsx', join(root, 'cli/main.ts'), 'serve', '--log-level', 'warn', ...sockets.flatMap((s) => ['--device', `edu-plus,socket=${s}`])];
    const t0 = performance.now();
    const server = await startServer(argv, root, 180_000, SERVING_LINE);
    return new DeviceServer(server, sockets, (performance.now() - t0) / 1000);
  }

  get pid(): number {
    return this.server.child.pid!;
  }

  get devices(): number {
    return this.sockets.length;
  }

  /** Connects a client to each of these devices: VERSION, then 10 reads of edu's id register; then it stays quiet. */
  async connectIdle(indexes: Iterable<number>): Promise<void> {
    for (const i of indexes) {
      if (this.idle.has(i)) continue;
      const client = VfioUserClient.connect(this.sockets[i]!);
      this.idle.set(i, client);
      await client.version();
      for (let k = 0; k < 10; k++) checkId(await client.regionRead(PciRegion.BAR0, 0n, 4), i);
    }
  }

  /** Disconnects the quiet clients of these devices (the server takes one client per device). */
  async disconnectIdle(indexes: Iterable<number>): Promise<void> {
    for (const i of indexes) {
      this.idle.get(i)?.close();
      this.idle.delete(i);
    }
    // The server must have seen the hang-ups before another client connects.
    await new Promise((r) => setTimeout(r, 50));
  }

  async stop(): Promise<void> {
    for (const c of this.idle.values()) c.close();
    this.idle.clear();
    await stopServer(this.server);
  }
}

function checkId(data: Uint8Array, device: number): void {
  // edu's identification register, 0x010000ed little-endian.
  if (data[0] !== 0xed || data[1] !== 0 || data[2] !== 0 || data[3] !== 0x01) {
    throw new Error(`device ${device}: REGION_READ returned ${Buffer.from(data).toString('hex')}, expected ed000001`);
  }
}

/**
 * Runs the C client against one socket: VERSION, `warmup` unrecorded then `count` timed 4-byte
 * REGION_READs, one at a time. Returns the timed round trips in nanoseconds.
 */
export async function runCClient(cEcho: string, socket: string, warmup: number, count: number, out: string): Promise<Float64Array> {
  await runClient([cEcho, 'client', socket, String(warmup), String(count), out, '--version'], root, 600_000);
  const bytes = readFileSync(out);
  return new Float64Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}
