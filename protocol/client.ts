/**
 * A vfio-user client: connects to any vfio-user server socket, sends requests with fds and
 * matches replies by id. Every reply is checked: wrong id or command, error flag (turned into
 * a VfioUserError with the server's errno), unexpected fds (closed).
 */
import {
  type MultiWrite,
  type VersionBody,
  decodeDmaTransfer,
  decodeRegionAccess,
  decodeVersion,
  encodeDmaTransfer,
  encodeRegionAccess,
  encodeVersion,
  encodeWriteMulti,
} from './codec.ts';
import { Errno, VfioUserError } from './errors.ts';
import { MessageChannel } from './channel.ts';
import type { Frame } from './framing.ts';
import { type Header, isError, isReply } from './header.ts';
import { closeQuietly, connectUnix, dup, setReceiveTimeout, waitFd } from './native/libc.ts';
import {
  Command,
  DeviceFeature,
  DeviceInfo,
  DmaMap,
  DmaUnmap,
  FLAG_ERROR,
  Feature,
  FeatureFlags,
  FeatureMigState,
  FeatureMigration,
  HEADER_SIZE,
  IrqInfo,
  IrqSet,
  MessageType,
  MigData,
  RegionAccess,
  RegionInfo,
  RegionIoFds,
  WriteMultiHead,
  commandName,
} from './wire.ts';

export interface Reply {
  readonly header: Header;
  /** A copy: safe to keep. */
  readonly body: Uint8Array;
  /** Fds that came with the reply; the caller owns them. */
  readonly fds: number[];
}

interface Pending {
  readonly command: number;
  resolve(reply: Reply): void;
  reject(err: Error): void;
}

/** Largest message a client accepts from a server. */
const CLIENT_LIMIT = { maxMessageSize: () => 64 << 20 };
/** No data (a read request, an empty reply): one instance, not one per message. */
const EMPTY = new Uint8Array(0);

export class VfioUserClient {
  private readonly channel: MessageChannel;
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private closedReason: string | null = null;
  /** Replies collected for requestSync, by id. */
  private readonly syncReplies = new Map<number, Reply>();
  private syncWaiting = -1;
  private receiveTimeoutMs = 0;
  /** Memory mapped for DMA without an fd: the server reaches it with DMA_READ/WRITE. */
  private readonly dmaMemory: { address: bigint; bytes: Uint8Array }[] = [];
  /** Server-issued DMA requests answered, for tests. */
  readonly dmaServed = { reads: 0, writes: 0 };

  private constructor(readonly fd: number) {
    this.channel = new MessageChannel(
      fd,
      {
        onFrame: (f) => this.dispatch(f),
        onBadHeader: (err) => this.shutdown(`bad header from server: ${err.message}`),
        onEnd: () => this.shutdown('server closed the connection'),
        onFailure: (reason) => this.shutdown(reason),
      },
      { limit: CLIENT_LIMIT, maxFds: 16 },
    );
  }

  /** Joins the event loop (asynchronous requests, server-issued DMA requests). */
  private ensureWatch(): void {
    if (!this.closedReason) this.channel.start();
  }

  /**
   * Answers the server's DMA_READ/WRITE from memory registered with dmaMap() while the caller
   * is otherwise idle (asynchronous requests start this by themselves).
   */
  listen(): void {
    this.ensureWatch();
  }

  static connect(socketPath: string): VfioUserClient {
    return new VfioUserClient(connectUnix(socketPath));
  }

  /** Wraps an already connected socket (e.g. one end of a socketpair). */
  static fromFd(fd: number): VfioUserClient {
    return new VfioUserClient(fd);
  }

  get isClosed(): boolean {
    return this.closedReason !== null;
  }

  /** Sends raw bytes (tests use this for malformed messages); fds are sent as copies. */
  sendRaw(bytes: Uint8Array, fds: readonly number[] = []): void {
    this.ensureWatch();
    this.channel.sendBytesNow(bytes, fds);
  }

  /** Allocates the id of the next request (wraps at 16 bits). */
  allocateId(): number {
    const id = this.nextId;
    this.nextId = (this.nextId + 1) & 0xffff;
    return id;
  }

  /** Waits for the reply with `id` (for requests sent with sendRaw). */
  waitReply(id: number, command: number): Promise<Reply> {
    if (this.closedReason) return Promise.reject(new Error(`connection closed: ${this.closedReason}`));
    this.ensureWatch();
    return new Promise((resolve, reject) => this.pending.set(id, { command, resolve, reject }));
  }

  /** The caller's fds are sent as copies and stay the caller's. */
  private sendRequest(id: number, command: number, body: Uint8Array, fds: readonly number[], flags: number, sync: boolean): void {
    const header = { id, command, size: HEADER_SIZE + body.byteLength, flags: MessageType.COMMAND | flags, error: 0 };
    if (sync) this.channel.sendNow(header, body, fds);
    else this.channel.send(header, body, fds.map((fd) => dup(fd)));
  }

  private checked(command: number, r: Reply): Reply {
    if (isError(r.header)) {
      closeQuietly(r.fds);
      throw new VfioUserError(r.header.error, `${commandName(command)} failed: errno ${r.header.error}`);
    }
    return r;
  }

  /** Sends a request and resolves with its reply; an error reply rejects with VfioUserError. */
  async request(command: number, body: Uint8Array, fds: readonly number[] = [], flags = 0): Promise<Reply> {
    const id = this.allocateId();
    const reply = this.waitReply(id, command);
    this.sendRequest(id, command, body, fds, flags, false);
    return this.checked(command, await reply);
  }

  /**
   * The same, blocking this thread until the reply arrives (or timeoutMs, QEMU's 5 s by
   * default): no promise or event-loop turn per message, for benchmarks and simple tools.
   * Not to be mixed with outstanding asynchronous requests.
   */
  requestSync(command: number, body: Uint8Array, fds: readonly number[] = [], timeoutMs = 5000): Reply {
    if (this.pending.size > 0) throw new Error('requestSync while asynchronous requests are outstanding');
    if (this.closedReason) throw new Error(`connection closed: ${this.closedReason}`);
    if (!this.channel.isWatched && this.receiveTimeoutMs !== timeoutMs) {
      // The blocking receive below must give up when the timeout passes.
      setReceiveTimeout(this.fd, timeoutMs * 1000);
      this.receiveTimeoutMs = timeoutMs;
    }
    const id = this.allocateId();
    this.syncWaiting = id;
    this.sendRequest(id, command, body, fds, 0, true);
    const deadline = performance.now() + timeoutMs;
    try {
      for (;;) {
        const reply = this.syncReplies.get(id);
        if (reply) {
          this.syncReplies.delete(id);
          if (reply.header.command !== command) throw new Error(`reply to id ${id} is for ${commandName(reply.header.command)}`);
          return this.checked(command, reply);
        }
        if (this.closedReason) throw new Error(`connection closed: ${this.closedReason}`);
        // A blocking receive: one system call per reply, woken directly by the server's send
        // (if the socket joined the event loop it is non-blocking: then wait in ppoll).
        if (this.channel.readOnce(!this.channel.isWatched)) continue;
        if (this.closedReason) continue;
        const left = deadline - performance.now();
        if (left <= 0 || (this.channel.isWatched && !waitFd(this.fd, 'read', left))) {
          throw new VfioUserError(Errno.ETIMEDOUT, `${commandName(command)}: no reply within ${timeoutMs} ms`);
        }
      }
    } finally {
      this.syncWaiting = -1;
    }
  }

  private dispatch(f: Frame): void {
    if (!isReply(f.header)) {
      this.answerServerRequest(f);
      return;
    }
    if (f.header.id === this.syncWaiting) {
      this.syncReplies.set(f.header.id, { header: f.header, body: new Uint8Array(f.body), fds: f.fds });
      return;
    }
    const waiter = this.pending.get(f.header.id);
    if (!isReply(f.header) || !waiter || waiter.command !== f.header.command) {
      closeQuietly(f.fds);
      this.shutdown(`unexpected message from server: id ${f.header.id}, ${commandName(f.header.command)}, flags 0x${f.header.flags.toString(16)}`);
      return;
    }
    this.pending.delete(f.header.id);
    // new Uint8Array(view) copies (Buffer#slice would not): the receive buffer is reused.
    waiter.resolve({ header: f.header, body: new Uint8Array(f.body), fds: f.fds });
  }

  /** DMA_READ/DMA_WRITE from the server, served from memory registered with dmaMap(). */
  private answerServerRequest(f: Frame): void {
    closeQuietly(f.fds);
    const h = f.header;
    const reply = (body: Uint8Array, error = 0) =>
      this.channel.send({ id: h.id, command: h.command, size: HEADER_SIZE + body.byteLength, flags: MessageType.REPLY | (error ? FLAG_ERROR : 0), error }, body, []);
    try {
      if (h.command !== Command.DMA_READ && h.command !== Command.DMA_WRITE) return reply(new Uint8Array(0), Errno.ENOSYS);
      const write = h.command === Command.DMA_WRITE;
      const t = decodeDmaTransfer(f.body, write);
      const mem = this.dmaMemory.find((m) => t.address >= m.address && t.address + BigInt(t.count) <= m.address + BigInt(m.bytes.byteLength));
      if (!mem) return reply(new Uint8Array(0), Errno.EFAULT);
      const at = Number(t.address - mem.address);
      if (write) {
        mem.bytes.set(t.data, at);
        this.dmaServed.writes++;
        return reply(new Uint8Array(0));
      }
      this.dmaServed.reads++;
      reply(encodeDmaTransfer({ address: t.address, count: t.count, data: mem.bytes.subarray(at, at + t.count) }));
    } catch (err) {
      reply(new Uint8Array(0), err instanceof VfioUserError ? err.errno : Errno.EINVAL);
    }
  }

  private shutdown(reason: string): void {
    if (this.closedReason) return;
    this.closedReason = reason;
    this.channel.close();
    for (const p of this.pending.values()) p.reject(new Error(`connection closed: ${reason}`));
    this.pending.clear();
  }

  close(): void {
    this.shutdown('closed by client');
  }

  // ---- typed calls -------------------------------------------------------------------------

  async version(json = JSON.stringify({ capabilities: { max_msg_fds: 16, max_data_xfer_size: 1 << 20 } })): Promise<VersionBody> {
    const r = await this.request(Command.VERSION, encodeVersion({ major: 0, minor: 0, json }));
    return decodeVersion(r.body);
  }

  async deviceInfo(): Promise<DeviceInfo> {
    const body = DeviceInfo.encode({ argsz: DeviceInfo.size, flags: 0, numRegions: 0, numIrqs: 0 });
    return DeviceInfo.decode((await this.request(Command.DEVICE_GET_INFO, body)).body);
  }

  /** Region info, retrying with the argsz the server asks for (as QEMU does). */
  async regionInfo(index: number): Promise<{ info: RegionInfo; fd?: number }> {
    let argsz = RegionInfo.size;
    for (let attempt = 0; attempt < 3; attempt++) {
      const body = RegionInfo.encode({ argsz, flags: 0, index, capOffset: 0, size: 0n, offset: 0n });
      const r = await this.request(Command.DEVICE_GET_REGION_INFO, body);
      const info = RegionInfo.decode(r.body);
      if (info.argsz > argsz) {
        closeQuietly(r.fds);
        argsz = info.argsz;
        continue;
      }
      if (r.fds.length > 1) {
        closeQuietly(r.fds);
        throw new Error(`region ${index} info came with ${r.fds.length} fds (at most 1)`);
      }
      return { info, fd: r.fds[0] };
    }
    throw new Error(`region ${index} info: server kept asking for a larger argsz`);
  }

  async irqInfo(index: number): Promise<IrqInfo> {
    const body = IrqInfo.encode({ argsz: IrqInfo.size, flags: 0, index, count: 0 });
    return IrqInfo.decode((await this.request(Command.DEVICE_GET_IRQ_INFO, body)).body);
  }

  async regionRead(region: number, offset: bigint, count: number): Promise<Uint8Array> {
    const r = await this.request(Command.REGION_READ, encodeRegionAccess({ offset, region, count, data: new Uint8Array(0) }));
    const reply = decodeRegionAccess(r.body);
    if (reply.count !== count || reply.data.byteLength !== count) {
      throw new Error(`REGION_READ reply has ${reply.data.byteLength} bytes (count ${reply.count}), asked ${count}`);
    }
    return reply.data;
  }

  /** regionRead, blocking (see requestSync). */
  regionReadSync(region: number, offset: bigint, count: number): Uint8Array {
    const r = this.requestSync(Command.REGION_READ, encodeRegionAccess({ offset, region, count, data: EMPTY }));
    // The data follows the echoed fixed part; its count is the one asked for (checked by length).
    if (r.body.byteLength !== RegionAccess.size + count) throw new Error(`REGION_READ reply has ${r.body.byteLength - RegionAccess.size} bytes, asked ${count}`);
    return r.body.subarray(RegionAccess.size);
  }

  async regionWrite(region: number, offset: bigint, data: Uint8Array): Promise<void> {
    await this.request(Command.REGION_WRITE, encodeRegionAccess({ offset, region, count: data.byteLength, data }));
  }

  async reset(): Promise<void> {
    await this.request(Command.DEVICE_RESET, new Uint8Array(0));
  }

  /**
   * DMA_MAP. With `fd` the server maps that file; without, pass `memory` (the bytes behind the
   * range) and this client answers the server's DMA_READ/WRITE from it.
   */
  async dmaMap(m: { address: bigint; size: bigint; flags?: number; offset?: bigint; fd?: number; memory?: Uint8Array }): Promise<void> {
    const body = DmaMap.encode({ argsz: DmaMap.size, flags: m.flags ?? 3, offset: m.offset ?? 0n, address: m.address, size: m.size });
    await this.request(Command.DMA_MAP, body, m.fd === undefined ? [] : [m.fd]);
    if (m.fd === undefined && m.memory) this.dmaMemory.push({ address: m.address, bytes: m.memory });
  }

  async dmaUnmap(address: bigint, size: bigint, flags = 0): Promise<void> {
    await this.request(Command.DMA_UNMAP, DmaUnmap.encode({ argsz: DmaUnmap.size, flags, address, size }));
    for (let i = this.dmaMemory.length - 1; i >= 0; i--) {
      const m = this.dmaMemory[i]!;
      if (flags & 2 || (m.address >= address && m.address < address + size)) this.dmaMemory.splice(i, 1);
    }
  }

  async regionIoFds(index: number): Promise<{ info: RegionIoFds; fds: number[] }> {
    const r = await this.request(Command.DEVICE_GET_REGION_IO_FDS, RegionIoFds.encode({ argsz: RegionIoFds.size, flags: 0, index, count: 0 }));
    return { info: RegionIoFds.decode(r.body), fds: r.fds };
  }

  /** SET_IRQS; `data` carries DATA_BOOL bytes, `fds` the eventfds for DATA_EVENTFD. */
  async setIrqs(s: Omit<IrqSet, 'argsz' | 'data'> & { data?: Uint8Array; fds?: number[] }): Promise<void> {
    const data = s.data ?? new Uint8Array(0);
    await this.request(Command.DEVICE_SET_IRQS, IrqSet.encode({ ...s, argsz: IrqSet.size + data.byteLength, data }), s.fds ?? []);
  }

  /** REGION_WRITE_MULTI; returns the number of writes the server completed. */
  async regionWriteMulti(writes: MultiWrite[]): Promise<bigint> {
    const r = await this.request(Command.REGION_WRITE_MULTI, encodeWriteMulti(writes));
    return WriteMultiHead.decode(r.body).wrCnt;
  }

  async deviceFeature(flags: number, data: Uint8Array = new Uint8Array(0), argsz = DeviceFeature.size + data.byteLength): Promise<DeviceFeature> {
    const r = await this.request(Command.DEVICE_FEATURE, DeviceFeature.encode({ argsz, flags, data }));
    return DeviceFeature.decode(r.body);
  }

  /** VFIO_DEVICE_FEATURE_MIGRATION: the VFIO_MIGRATION_* flags. */
  async migrationFlags(): Promise<bigint> {
    const f = await this.deviceFeature(Feature.MIGRATION | FeatureFlags.GET, new Uint8Array(0), DeviceFeature.size + FeatureMigration.size);
    return FeatureMigration.decode(f.data).flags;
  }

  async migrationState(): Promise<number> {
    const f = await this.deviceFeature(Feature.MIG_DEVICE_STATE | FeatureFlags.GET, new Uint8Array(0), DeviceFeature.size + FeatureMigState.size);
    return FeatureMigState.decode(f.data).deviceState;
  }

  async setMigrationState(state: number): Promise<void> {
    await this.deviceFeature(Feature.MIG_DEVICE_STATE | FeatureFlags.SET, FeatureMigState.encode({ deviceState: state, dataFd: -1 }));
  }

  async migDataRead(size: number): Promise<Uint8Array> {
    const r = await this.request(Command.MIG_DATA_READ, MigData.encode({ argsz: MigData.size + size, size }));
    return MigData.decode(r.body).data;
  }

  async migDataWrite(data: Uint8Array): Promise<void> {
    await this.request(Command.MIG_DATA_WRITE, MigData.encode({ argsz: MigData.size, size: data.byteLength, data }));
  }
}
