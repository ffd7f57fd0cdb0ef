/**
 * Shared pieces of the conformance suite: a server in a temp dir, clients that negotiate, an
 * independent little-endian body builder (never the production encoders, so an encoder bug
 * cannot pass its own test), a raw send that returns the errno or the reply, and the process
 * fd / mapping counters that prove the server closed what it was given. The server runs in
 * this process, so /proc/self/fd counts its descriptors too.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createEduPlus } from '../../device/edu-plus.ts';
import { type Reply, VfioUserClient } from '../../protocol/client.ts';
import { Errno } from '../../protocol/errors.ts';
import { silentLogger } from '../../protocol/log.ts';
import { close as closeFd, eventfdCreate } from '../../protocol/native/libc.ts';
import { VfioUserServer } from '../../protocol/server.ts';
import type { DeviceFactory } from '../../protocol/served-device.ts';
import type { ServerLimits } from '../../protocol/version.ts';

export { Errno };

/** Command numbers, written out here rather than imported, like the bodies. */
export const Cmd = {
  VERSION: 1,
  DMA_MAP: 2,
  DMA_UNMAP: 3,
  DEVICE_GET_INFO: 4,
  DEVICE_GET_REGION_INFO: 5,
  DEVICE_GET_REGION_IO_FDS: 6,
  DEVICE_GET_IRQ_INFO: 7,
  DEVICE_SET_IRQS: 8,
  REGION_READ: 9,
  REGION_WRITE: 10,
  DMA_READ: 11,
  DMA_WRITE: 12,
  DEVICE_RESET: 13,
  REGION_WRITE_MULTI: 15,
  DEVICE_FEATURE: 16,
  MIG_DATA_READ: 17,
  MIG_DATA_WRITE: 18,
} as const;

export const REPLY = 0x1;
export const NO_REPLY = 0x10;
export const ERROR = 0x20;
export const EDU_ID = 0x010000ed;
export const U64_MAX = (1n << 64n) - 1n;
/** How long a test waits for a reply or a close before calling it a hang. */
export const REPLY_TIMEOUT_MS = 2000;

// ---- an independent little-endian builder ----------------------------------------------------

export class LE {
  private readonly bytes: number[] = [];

  u8(v: number): this {
    this.bytes.push(v & 0xff);
    return this;
  }

  u16(v: number): this {
    return this.u8(v).u8(v >>> 8);
  }

  u32(v: number): this {
    const x = v >>> 0;
    return this.u8(x).u8(x >>> 8).u8(x >>> 16).u8(x >>> 24);
  }

  u64(v: bigint | number): this {
    let x = BigInt.asUintN(64, BigInt(v));
    for (let i = 0; i < 8; i++) {
      this.u8(Number(x & 0xffn));
      x >>= 8n;
    }
    return this;
  }

  raw(b: Uint8Array | readonly number[]): this {
    for (const x of b) this.u8(x);
    return this;
  }

  text(s: string): this {
    return this.raw(Buffer.from(s, 'utf8'));
  }

  zeros(n: number): this {
    for (let i = 0; i < n; i++) this.u8(0);
    return this;
  }

  get length(): number {
    return this.bytes.length;
  }

  build(): Buffer {
    return Buffer.from(this.bytes);
  }
}

export const le = () => new LE();

/** A 16-byte header, built by hand. */
export function header(h: { id: number; command: number; size: number; flags?: number; error?: number }): Buffer {
  return le().u16(h.id).u16(h.command).u32(h.size).u32(h.flags ?? 0).u32(h.error ?? 0).build();
}

/** Little-endian readers for reply bodies. */
export const rd = {
  u16: (b: Uint8Array, at: number) => b[at]! | (b[at + 1]! << 8),
  u32: (b: Uint8Array, at: number) => (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0,
  u64: (b: Uint8Array, at: number) => BigInt(rd.u32(b, at)) | (BigInt(rd.u32(b, at + 4)) << 32n),
};

// ---- bodies of the client's requests, built by hand -------------------------------------------

export const body = {
  version: (major: number, minor: number, json?: string, nul = true) => {
    const b = le().u16(major).u16(minor);
    if (json !== undefined) b.text(json);
    if (json !== undefined && nul) b.u8(0);
    return b.build();
  },
  /** argsz, flags, then u32 fields (DEVICE_GET_INFO, GET_IRQ_INFO, GET_REGION_IO_FDS). */
  u32s: (...v: number[]) => {
    const b = le();
    for (const x of v) b.u32(x);
    return b.build();
  },
  regionInfo: (argsz: number, index: number) => le().u32(argsz).u32(0).u32(index).u32(0).u64(0).u64(0).build(),
  dmaMap: (m: { argsz?: number; flags?: number; offset?: bigint; address: bigint; size: bigint }) =>
    le()
      .u32(m.argsz ?? 32)
      .u32(m.flags ?? 3)
      .u64(m.offset ?? 0n)
      .u64(m.address)
      .u64(m.size)
      .build(),
  dmaUnmap: (u: { argsz?: number; flags?: number; address: bigint; size: bigint }) =>
    le()
      .u32(u.argsz ?? 24)
      .u32(u.flags ?? 0)
      .u64(u.address)
      .u64(u.size)
      .build(),
  setIrqs: (s: { argsz?: number; flags: number; index: number; start?: number; count: number; data?: number[] }) => {
    const data = s.data ?? [];
    return le()
      .u32(s.argsz ?? 20 + data.length)
      .u32(s.flags)
      .u32(s.index)
      .u32(s.start ?? 0)
      .u32(s.count)
      .raw(data)
      .build();
  },
  regionAccess: (offset: bigint, region: number, count: number, data: Uint8Array | number[] = []) =>
    le().u64(offset).u32(region).u32(count).raw(data).build(),
  feature: (argsz: number, flags: number, data: Uint8Array | number[] = []) => le().u32(argsz).u32(flags).raw(data).build(),
  migData: (argsz: number, size: number, data: Uint8Array | number[] = []) => le().u32(argsz).u32(size).raw(data).build(),
};

/** Little-endian bytes of a u32 (register values). */
export const u32le = (v: number) => le().u32(v).build();

// ---- server and clients ----------------------------------------------------------------------

export interface Harness {
  readonly server: VfioUserServer;
  readonly socketPath: string;
  /** Waits until the server has released its client (every client it served so far). */
  settle(): Promise<void>;
  /** A connected client that has negotiated VERSION (after the previous one is released). */
  client(json?: string): Promise<VfioUserClient>;
  /** A connected client that has sent nothing yet; wait for the accept before dropping it. */
  rawClient(): VfioUserClient;
  /** A second client while one is being served: the server refuses it. */
  intruder(): VfioUserClient;
  /** Closes a client and waits until the server has released it. */
  drop(client: VfioUserClient): Promise<void>;
  close(): void;
}

let serial = 0;

/** A server in a temp dir; edu-plus unless `device` says otherwise. */
export function startServer(limits?: ServerLimits, device: DeviceFactory = createEduPlus()): Harness {
  const dir = mkdtempSync(join(tmpdir(), 'edu-plus-conf-'));
  const socketPath = join(dir, `conf${serial++}.sock`);
  const server = VfioUserServer.listen({ socketPath, device, log: silentLogger, limits });
  // Every served client is accepted before it is dropped (client() does a VERSION,
  // withRawClient waits for the accept), so "no client now" means every earlier one is gone.
  const settle = () => until(() => !server.hasClient, 'the server to release its client');
  const rawClient = () => VfioUserClient.connect(socketPath);
  return {
    server,
    socketPath,
    settle,
    rawClient,
    intruder: () => VfioUserClient.connect(socketPath),
    async client(json?: string) {
      await settle();
      const c = rawClient();
      const r = await send(c, Cmd.VERSION, body.version(0, 0, json ?? JSON.stringify({ capabilities: { max_msg_fds: 16, max_data_xfer_size: 1 << 20 } })));
      assert.equal(r.errno, 0, 'VERSION must succeed');
      return c;
    },
    async drop(client: VfioUserClient) {
      client.close();
      await settle();
    },
    close() {
      server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Polls `cond` every few milliseconds (the server needs event-loop turns) until it holds. */
export async function until(cond: () => boolean, what: string, timeoutMs = REPLY_TIMEOUT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** Lets pending socket events run (a few event-loop turns). */
export async function turns(n = 5): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((r) => setTimeout(r, 1));
}

// ---- sending ---------------------------------------------------------------------------------

export interface Outcome {
  /** 0 for success, else the positive errno of the error reply. */
  readonly errno: number;
  readonly header: Reply['header'];
  readonly body: Uint8Array;
  /** Fds that came with the reply; the caller closes them (or use closeReplyFds). */
  readonly fds: number[];
}

export interface SendOptions {
  readonly fds?: readonly number[];
  /** Header flags (type bits included: default 0, a command). */
  readonly flags?: number;
  /** Header size field; default the real message size. */
  readonly size?: number;
  readonly id?: number;
  /**
   * Send the message in writes of at most this many bytes, letting the server read between
   * them (fds go with the first). Our client's sendmsg does not wait for room in the socket
   * buffer, and the server runs on this very thread, so a large message must be sent this way.
   */
  readonly pieceSize?: number;
}

/** Sends one hand-built message and waits (bounded) for its reply. */
export async function send(client: VfioUserClient, command: number, payload: Uint8Array, opts: SendOptions = {}): Promise<Outcome> {
  const id = opts.id ?? client.allocateId();
  const reply = client.waitReply(id, command);
  const size = opts.size ?? 16 + payload.byteLength;
  const message = Buffer.concat([header({ id, command, size, flags: opts.flags ?? 0 }), payload]);
  if (opts.pieceSize) await sendInPieces(client, message, opts.pieceSize, opts.fds ?? []);
  else client.sendRaw(message, opts.fds ?? []);
  const r = await withTimeout(reply, `reply to ${commandLabel(command)} (id ${id})`);
  assert.equal(r.header.id, id, 'reply echoes the request id');
  assert.equal(r.header.command, command, 'reply echoes the command');
  assert.equal(r.header.flags & 0xf, REPLY, 'reply has the REPLY type');
  const failed = (r.header.flags & ERROR) !== 0;
  if (failed) {
    assert.notEqual(r.header.error, 0, 'an error reply carries a non-zero errno');
    assert.equal(r.body.byteLength, 0, 'an error reply has no payload');
    assert.equal(r.fds.length, 0, 'an error reply carries no fds');
  }
  assert.equal(r.header.size, 16 + r.body.byteLength, 'reply size covers header and payload');
  return { errno: failed ? r.header.error : 0, header: r.header, body: r.body, fds: r.fds };
}

/** Writes `bytes` in pieces, yielding to the event loop (and so the server) between them. */
export async function sendInPieces(client: VfioUserClient, bytes: Uint8Array, pieceSize: number, fds: readonly number[] = []): Promise<void> {
  for (let at = 0; at < bytes.byteLength; at += pieceSize) {
    client.sendRaw(bytes.subarray(at, Math.min(at + pieceSize, bytes.byteLength)), at === 0 ? fds : []);
    await turns(1);
  }
}

/** send(), asserting the errno (0 = success); closes any fds of the reply. Returns the body. */
export async function expectErrno(client: VfioUserClient, command: number, payload: Uint8Array, errno: number, opts: SendOptions = {}): Promise<Uint8Array> {
  const r = await send(client, command, payload, opts);
  closeFds(r.fds);
  assert.equal(r.errno, errno, `${commandLabel(command)}: expected ${errnoName(errno)}, got ${errnoName(r.errno)}`);
  return r.body;
}

export function withTimeout<T>(p: Promise<T>, what: string, ms = REPLY_TIMEOUT_MS): Promise<T> {
  let timer: NodeJS.Timeout;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms (server hung?)`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** Waits until the server has closed the client's connection. */
export async function expectClosed(client: VfioUserClient): Promise<void> {
  await until(() => client.isClosed, 'the server to close the connection');
}

const errnoNames = new Map<number, string>(Object.entries(Errno).map(([k, v]) => [v, k]));
export const errnoName = (e: number) => (e === 0 ? 'success' : (errnoNames.get(e) ?? `errno ${e}`));
const commandNames = new Map<number, string>(Object.entries(Cmd).map(([k, v]) => [v, k]));
export const commandLabel = (c: number) => commandNames.get(c) ?? `command ${c}`;

// ---- descriptors and mappings ----------------------------------------------------------------

/** Open descriptors of this process (client, server and Node's own). */
export function openFdCount(): number {
  return readdirSync('/proc/self/fd').length;
}

/** Lines of /proc/self/maps (V8 and malloc add and drop anonymous ones at will). */
export function mappingCount(): number {
  return readFileSync('/proc/self/maps', 'utf8').split('\n').filter(Boolean).length;
}

/**
 * Lines of /proc/self/maps that map a memfd: the server's DMA mappings of client memfds (and
 * BAR1). Unlike the total, this does not move with the JavaScript heap.
 */
export function memfdMappingCount(): number {
  return readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .filter((l) => l.includes('/memfd:')).length;
}

export function closeFds(fds: Iterable<number>): void {
  for (const fd of fds) closeFd(fd);
}

/**
 * Creates `n` eventfds, runs `fn` with them, and asserts that afterwards this process holds
 * exactly as many descriptors as before `fn` (i.e. the server closed its copies), then closes
 * our own copies.
 */
export async function assertServerClosesFds(n: number, fn: (fds: number[]) => Promise<void>): Promise<void> {
  const fds = Array.from({ length: n }, () => eventfdCreate());
  try {
    const before = openFdCount();
    await fn(fds);
    await turns(2);
    assert.equal(openFdCount(), before, `the server kept ${openFdCount() - before} of the ${n} fd(s) it was sent`);
  } finally {
    closeFds(fds);
  }
}

/**
 * The fds-attached-where-none-belong case for one command: EINVAL, and the server closed its
 * copy of the eventfd.
 */
export async function expectFdsRefused(client: VfioUserClient, command: number, payload: Uint8Array): Promise<void> {
  await assertServerClosesFds(1, async (fds) => {
    await expectErrno(client, command, payload, Errno.EINVAL, { fds });
  });
}

/** Runs `fn` with a fresh negotiated client and always releases it. */
export async function withClient(h: Harness, fn: (c: VfioUserClient) => Promise<void>, json?: string): Promise<void> {
  const c = await h.client(json);
  try {
    await fn(c);
  } finally {
    await h.drop(c);
  }
}

/** A client on a device back in RUNNING (migration state outlives clients; a failed test must not leak it). */
export async function withFreshDevice(h: Harness, fn: (c: VfioUserClient) => Promise<void>, json?: string): Promise<void> {
  await withClient(
    h,
    async (c) => {
      await expectErrno(c, Cmd.DEVICE_RESET, Buffer.alloc(0), 0);
      await fn(c);
    },
    json,
  );
}

/** Runs `fn` with a fresh client that has sent nothing yet, and always releases it. */
export async function withRawClient(h: Harness, fn: (c: VfioUserClient) => Promise<void>): Promise<void> {
  await h.settle();
  const c = h.rawClient();
  try {
    // Wait for the accept, so that the server's socket is not counted as a leak later.
    await until(() => h.server.hasClient, 'the server to accept the client');
    await fn(c);
  } finally {
    await h.drop(c);
  }
}

/** REGION_READ of BAR0 offset 0 through raw bytes: the edu identification register. */
export async function readId(c: VfioUserClient): Promise<number> {
  const b = await expectErrno(c, Cmd.REGION_READ, body.regionAccess(0n, 0, 4), 0);
  return rd.u32(b, 16);
}
