/**
 * Warms the request path before the first client comes. V8 runs new code in its interpreter and
 * compiles it only after many calls, and it compiles for what it has seen: code compiled on one
 * kind of request is thrown away (deoptimised) at the first request of another kind. Without a
 * warm-up that looks like a guest's traffic, the guest's first few thousand trapped accesses
 * pay for the compiler twice: a tail of slow accesses right after boot, and CPU burnt on
 * compiler threads.
 *
 * A throw-away connection, built exactly as a client's is, sits on one end of a socketpair and is
 * driven synchronously (no event loop: it reads whatever was written, its session answers, we
 * read the reply). The traffic is what QEMU and a guest send, in cycles: every register of each
 * trapped BAR and every dword of config space read and written back unchanged, config space in
 * one large read, region and irq info, interrupt eventfds set and torn down, a DMA mapping made
 * and unmapped, the migration probe, a reset, and messages that arrive two in one read or split
 * across two; and each cycle streams a read of every planned register the way a guest's
 * accesses reach a server that waits for them (each sent as the connection sits down to wait, so
 * the wait finds it there). Every kind of request (with fds and without) and every device
 * branch they reach runs many times before the compiler looks at it: V8 records what code does
 * only after its first few calls, and compiled code that meets a kind of request it never
 * recorded is thrown away. Two sessions, so that what a session does once also runs after
 * compilation.
 *
 * Those accesses must not touch the device a client will see: the server rehearses them on a
 * stand-in, a second instance built by the same factory (server.ts). Its state, interrupts and
 * memory are its own and are dropped afterwards; V8 compiled the same code for the same object
 * shapes. When no stand-in can be built, the plan shrinks to config space reads of the real
 * device's vendor and device ids, which no device may give side effects to reading.
 */
import { encodeRegionAccess, encodeVersion } from './codec.ts';
import type { Connection } from './connection.ts';
import { encodeHeader } from './header.ts';
import { GUEST_RAM_SEALS, closeQuietly, eventfdCreate, memfdCreate, socketPair } from './native/libc.ts';
import { FdReceiver, FdSender } from './native/fd-messages.ts';
import type { DeviceModel } from './served-device.ts';
import {
  Command,
  DeviceFeature,
  DeviceInfo,
  DmaMap,
  DmaUnmap,
  Feature,
  FeatureFlags,
  HEADER_SIZE,
  IrqInfo,
  IrqInfoFlags,
  IrqSet,
  IrqSetFlags,
  MessageType,
  PAGE_SIZE,
  PciRegion,
  RegionAccess,
  RegionInfo,
} from './wire.ts';

/** Round trips a server runs before it listens (well under a second of start-up). */
export const WARM_UP_ROUNDS = 5_000;

/** Registers rehearsed per trapped BAR: its first 256 bytes, where a device keeps its hot ones. */
const REHEARSED_BYTES = 256;

/** Config space rehearsed on a stand-in: the standard header and the capabilities after it. */
const CONFIG_BYTES = 256;

/** argsz of a region info request with room for its caps. */
const REGION_INFO_ROOM = 1024;

/** Where the warm-up's DMA mapping goes in the stand-in's IOVA space (2 pages). */
const DMA_IOVA = 0x10_0000n;
const DMA_SIZE = BigInt(2 * PAGE_SIZE);

/**
 * The stand-in device the warm-up may touch as a whole (what it describes of itself), or null:
 * only the real device's config space ids are read.
 */
export type StandIn = Pick<DeviceModel, 'regions' | 'irqs' | 'numRegions' | 'numIrqs'> | null;

interface Access {
  readonly region: number;
  readonly offset: number;
  readonly count: number;
  /** Write the value this access reads back right after it. */
  readonly writeBack: boolean;
}

/** The register accesses of one cycle. */
function accessPlan(standIn: StandIn): Access[] {
  const configId: Access = { region: PciRegion.CONFIG, offset: 0, count: 4, writeBack: false };
  if (!standIn) return [configId];
  const plan: Access[] = [configId, { region: PciRegion.CONFIG, offset: 4, count: 2, writeBack: true }];
  // Config space as QEMU and a guest's driver use it: every dword of the header and the
  // capabilities, written back unchanged (BARs, command, MSI and the rest).
  for (let offset = 0; offset < CONFIG_BYTES; offset += 4) plan.push({ region: PciRegion.CONFIG, offset, count: 4, writeBack: true });
  // And all of it in one read, as QEMU reads it when it attaches (the path for larger accesses).
  plan.push({ region: PciRegion.CONFIG, offset: 0, count: CONFIG_BYTES, writeBack: false });
  for (const r of standIn.regions) {
    if (r.index === PciRegion.CONFIG || r.memory || !r.readable || r.size === 0n) continue;
    const end = Number(r.size < BigInt(REHEARSED_BYTES) ? r.size : BigInt(REHEARSED_BYTES));
    for (let offset = 0; offset + 4 <= end; offset += 4) {
      plan.push({ region: r.index, offset, count: 4, writeBack: r.writable });
      if (offset % 8 === 0 && offset + 8 <= end) plan.push({ region: r.index, offset, count: 8, writeBack: r.writable });
    }
  }
  return plan;
}

/** The synchronous client end of the warm-up: one request, its reply, and nothing after it. */
class Rehearsal {
  private readonly sender = new FdSender(4);
  private readonly receiver = new FdReceiver(16);
  /** Replies alternate between two buffers, as a server's reads do between its own and a shared one. */
  private readonly replies = [Buffer.alloc(64 * 1024), Buffer.alloc(64 * 1024)];
  private id = 0;
  /** Round trips so far. */
  trips = 0;
  /** The last reply. */
  reply: Buffer = this.replies[0]!;

  constructor(
    private readonly fd: number,
    private readonly connection: Connection,
  ) {}

  /** One round trip; the reply's errno (its bytes stay in `reply`). */
  ask(command: number, body: Uint8Array, fds: readonly number[] = []): number {
    const id = this.nextId();
    this.sender.sendAll(this.fd, [this.header(id, command, body), body], fds);
    if (!this.connection.pump()) throw new Error(`warm-up: the server did not read request ${id}`);
    const errno = this.takeReply(id);
    // And a read that finds nothing, as after every request of a real client: the empty path
    // must be compiled too.
    if (this.connection.pump()) throw new Error(`warm-up: a second message after request ${id}`);
    return errno;
  }

  /**
   * Two requests the way a stream can bring them: both in one read, then one split across two
   * reads (the framing's general path, which a busy client reaches).
   */
  askUnevenly(command: number, body: Uint8Array): void {
    const first = this.nextId();
    const second = this.nextId();
    const both = Buffer.concat([this.header(first, command, body), body, this.header(second, command, body), body]);
    this.sender.sendAll(this.fd, [both]);
    this.connection.pump();
    this.takeReply(second);
    const third = this.nextId();
    const split = Buffer.concat([this.header(third, command, body), body]);
    this.sender.sendAll(this.fd, [split.subarray(0, HEADER_SIZE / 2)]);
    this.connection.pump();
    this.sender.sendAll(this.fd, [split.subarray(HEADER_SIZE / 2)]);
    this.connection.pump();
    this.takeReply(third);
  }

  /**
   * Requests sent one after another the way a guest's accesses reach a server that waits for
   * them: each goes out as the server sits down to wait (the connection's rehearsal hook), so
   * the wait finds it there and takes the path it takes in service. With no ring to wait in,
   * the connection never calls the hook and each request is simply asked. Replies are read as
   * the requests go out and must answer them in order.
   */
  stream(command: number, bodies: readonly Uint8Array[]): void {
    const pending: number[] = [];
    let next = 0;
    const sendNext = () => {
      this.readReplies(pending);
      if (next >= bodies.length) return;
      const body = bodies[next++]!;
      const id = this.nextId();
      pending.push(id);
      this.sender.sendAll(this.fd, [this.header(id, command, body), body]);
    };
    this.connection.rehearseWith(sendNext);
    try {
      while (next < bodies.length) {
        sendNext();
        if (!this.connection.pump()) throw new Error('warm-up: the server did not read a streamed request');
      }
      this.readReplies(pending);
      if (pending.length) throw new Error(`warm-up: ${pending.length} streamed requests not answered`);
      this.trips += bodies.length;
    } finally {
      this.connection.rehearseWith(null);
    }
  }

  /** Reads the replies there are (whole messages); each must answer the oldest pending id. */
  private readReplies(pending: number[]): void {
    const reply = this.replies[0]!;
    for (;;) {
      const got = this.receiver.recv(this.fd, reply, 0, reply.length);
      if (!got) return;
      closeQuietly(got.fds);
      for (let at = 0; at < got.bytes; ) {
        const size = at + HEADER_SIZE <= got.bytes ? reply.readUInt32LE(at + 4) : 0;
        if (size < HEADER_SIZE || at + size > got.bytes) throw new Error('warm-up: a streamed reply came in pieces');
        const id = reply.readUInt16LE(at);
        if (id !== pending.shift()) throw new Error(`warm-up: reply ${id} out of order`);
        at += size;
      }
    }
  }

  private nextId(): number {
    return (this.id = (this.id + 1) & 0xffff);
  }

  private header(id: number, command: number, body: Uint8Array): Buffer {
    return encodeHeader({ id, command, size: HEADER_SIZE + body.byteLength, flags: MessageType.COMMAND, error: 0 });
  }

  /** Reads what replies there are; the last must answer `id`. Its errno (bytes in `reply`). */
  private takeReply(id: number): number {
    const reply = (this.reply = this.replies[this.trips++ & 1]!);
    const got = this.receiver.recv(this.fd, reply, 0, reply.length);
    if (got) closeQuietly(got.fds);
    let last = 0;
    while (got && last + HEADER_SIZE <= got.bytes) {
      const size = reply.readUInt32LE(last + 4);
      if (size < HEADER_SIZE || last + size >= got.bytes) break;
      last += size;
    }
    if (!got || got.bytes < last + HEADER_SIZE || reply.readUInt16LE(last) !== id) throw new Error(`warm-up: no reply to request ${id}`);
    if (last) reply.copyWithin(0, last, got.bytes);
    return reply.readUInt32LE(12);
  }
}

/**
 * Sessions the rounds are shared among. What a session does once (VERSION, the first read of a
 * fresh connection) runs before the compiler looks in the first session, and after it in the
 * second: compiled code that never saw it would be thrown away by the first real client.
 */
const SESSIONS = 2;

/**
 * Runs about `rounds` request/reply round trips through connections made by `connect`. Returns
 * null when done, or why it stopped early: a device that refuses config reads is warmed no
 * further. A failure anywhere else throws, so a broken request path is found at start, not by
 * the first client.
 */
export function warmUp(connect: (fd: number) => Connection, standIn: StandIn, rounds = WARM_UP_ROUNDS): string | null {
  const plan = accessPlan(standIn).map((a) => ({ ...a, read: encodeRegionAccess({ offset: BigInt(a.offset), region: a.region, count: a.count, data: new Uint8Array(0) }) }));
  for (let session = 0; session < SESSIONS; session++) {
    const stopped = rehearse(connect, standIn, plan, Math.ceil(rounds / SESSIONS));
    if (stopped) return stopped;
  }
  return null;
}

/** One session of the warm-up: a connection that asks what QEMU asks, for `rounds` round trips. */
function rehearse(connect: (fd: number) => Connection, standIn: StandIn, plan: readonly (Access & { read: Uint8Array })[], rounds: number): string | null {
  const [ours, theirs] = socketPair();
  const owned: number[] = [theirs];
  const connection = connect(ours);
  const client = new Rehearsal(theirs, connection);
  try {
    const json = '{"capabilities":{"max_msg_fds":16,"max_data_xfer_size":1048576}}';
    const errno = client.ask(Command.VERSION, encodeVersion({ major: 0, minor: 0, json }));
    if (errno !== 0) throw new Error(`warm-up: VERSION failed with errno ${errno}`);
    const extras = standIn ? attachLike(client, standIn, owned) : () => {};
    const dataAt = HEADER_SIZE + RegionAccess.size;
    const reads = plan.map((a) => a.read);
    for (let i = 0; client.trips < rounds; i = (i + 1) % plan.length) {
      const a = plan[i]!;
      if (i === 0) {
        extras();
        client.askUnevenly(Command.REGION_READ, a.read);
        client.stream(Command.REGION_READ, reads);
      }
      const failed = client.ask(Command.REGION_READ, a.read);
      if (failed && a.region === PciRegion.CONFIG) return `the device refused a config space read (errno ${failed})`;
      if (failed || !a.writeBack) continue;
      const value = client.reply.subarray(dataAt, dataAt + a.count);
      client.ask(Command.REGION_WRITE, encodeRegionAccess({ offset: BigInt(a.offset), region: a.region, count: a.count, data: value }));
    }
    return null;
  } finally {
    connection.close('warm-up done');
    closeQuietly(owned);
  }
}

/**
 * What QEMU asks once when it attaches (device, region and irq info), then the requests that
 * carry fds, as a cycle of their own: every region's info (a RAM region's comes with its fd), an
 * eventfd attached to each irq index and detached, a DMA mapping made and unmapped, the migration
 * feature probed and a reset. The stand-in may refuse some (MSI before the guest enabled it); a
 * refusal is a path to compile too.
 */
function attachLike(client: Rehearsal, device: NonNullable<StandIn>, owned: number[]): () => void {
  client.ask(Command.DEVICE_GET_INFO, DeviceInfo.encode({ argsz: DeviceInfo.size, flags: 0, numRegions: 0, numIrqs: 0 }));
  const irqInfo = (index: number) => IrqInfo.encode({ argsz: IrqInfo.size, flags: 0, index, count: 0 });
  for (let index = 0; index < device.numIrqs; index++) client.ask(Command.DEVICE_GET_IRQ_INFO, irqInfo(index));
  // Each region asked twice, as QEMU asks: with the bare struct's size (a region with caps answers
  // how much room they need), then with room (a RAM region's answer brings its fd).
  const regionInfo = [RegionInfo.size, REGION_INFO_ROOM].flatMap((argsz) =>
    Array.from({ length: device.numRegions }, (_, index) => RegionInfo.encode({ argsz, flags: 0, index, capOffset: 0, size: 0n, offset: 0n })),
  );
  const eventfd = eventfdCreate();
  owned.push(eventfd);
  const ram = memfdCreate('edu-plus warm-up', DMA_SIZE, { seals: GUEST_RAM_SEALS });
  owned.push(ram);
  const irqSet = (index: number, flags: number, count: number) =>
    IrqSet.encode({ argsz: IrqSet.size + (count ? 4 : 0), flags: flags | IrqSetFlags.ACTION_TRIGGER, index, start: 0, count, data: new Uint8Array(count ? 4 : 0) });
  const irqs = device.irqs.filter((i) => i.count > 0 && i.flags & IrqInfoFlags.EVENTFD).map((i) => ({ attach: irqSet(i.index, IrqSetFlags.DATA_EVENTFD, 1), detach: irqSet(i.index, IrqSetFlags.DATA_NONE, 0) }));
  const map = DmaMap.encode({ argsz: DmaMap.size, flags: 3, offset: 0n, address: DMA_IOVA, size: DMA_SIZE });
  const unmap = DmaUnmap.encode({ argsz: DmaUnmap.size, flags: 0, address: DMA_IOVA, size: DMA_SIZE });
  const migrationProbe = DeviceFeature.encode({ argsz: DeviceFeature.size, flags: FeatureFlags.PROBE | FeatureFlags.GET | Feature.MIGRATION, data: new Uint8Array(0) });
  return () => {
    client.ask(Command.DEVICE_FEATURE, migrationProbe);
    client.ask(Command.DEVICE_RESET, new Uint8Array(0));
    for (const body of regionInfo) client.ask(Command.DEVICE_GET_REGION_INFO, body);
    for (const irq of irqs) {
      client.ask(Command.DEVICE_SET_IRQS, irq.attach, [eventfd]);
      client.ask(Command.DEVICE_SET_IRQS, irq.detach);
    }
    client.ask(Command.DMA_MAP, map, [ram]);
    client.ask(Command.DMA_UNMAP, unmap);
  };
}
