/**
 * One client's conversation with a device: version negotiation state and one handler per
 * command. Handlers return a reply body (and fds to send) or throw VfioUserError; `handle`
 * is the single place that turns either into a reply message, honours NO_REPLY, and closes
 * every received fd that no handler took over.
 */
import {
  decodeDeviceInfo,
  decodeDmaMap,
  decodeDmaUnmap,
  decodeIrqInfo,
  decodeIrqSet,
  decodeRegionAccess,
  decodeRegionInfo,
  decodeVersion,
  encodeDeviceInfo,
  encodeDmaUnmap,
  encodeIrqInfo,
  encodeRegionAccess,
  encodeRegionInfo,
  encodeSparseMmapCap,
  encodeVersion,
} from './codec.ts';
import type { DeviceModel, RegionDescription, SharedMemory } from './device-model.ts';
import type { DmaMapTable } from './dma.ts';
import { Errno, VfioUserError, invalid } from './errors.ts';
import type { Frame } from './framing.ts';
import type { Header } from './header.ts';
import type { IrqTable } from './irqs.ts';
import type { Logger } from './log.ts';
import { closeQuietly } from './native/libc.ts';
import { negotiate, type Negotiated, type ServerLimits } from './version.ts';
import {
  Command,
  DEVICE_INFO_SIZE,
  DMA_MAP_SIZE,
  DMA_UNMAP_SIZE,
  DeviceFlags,
  FLAG_ERROR,
  FLAG_NO_REPLY,
  HEADER_SIZE,
  IRQ_INFO_SIZE,
  IRQ_SET_SIZE,
  MessageType,
  REGION_ACCESS_SIZE,
  REGION_INFO_SIZE,
  RegionFlags,
  TYPE_MASK,
  commandName,
} from './wire.ts';

/** A message ready to send: header fields, body, and fds to pass with it. */
export interface Outgoing {
  readonly header: Header;
  readonly body: Uint8Array;
  readonly fds: readonly number[];
}

interface HandlerResult {
  readonly body: Uint8Array;
  readonly fds?: readonly number[];
}

type Handler = (frame: Frame) => HandlerResult;

/** Per-connection counters; the e2e test uses them to prove BAR1 accesses never trapped. */
export class SessionStats {
  readonly commands = new Map<number, number>();
  readonly regionReads = new Map<number, number>();
  readonly regionWrites = new Map<number, number>();
  errors = 0;

  count(map: Map<number, number>, key: number): void {
    map.set(key, (map.get(key) ?? 0) + 1);
  }
}

export interface SessionResources {
  readonly device: DeviceModel;
  readonly irqs: IrqTable;
  readonly dma: DmaMapTable;
  readonly limits: ServerLimits;
  /** The fd that backs a shared-memory region, to pass in region info. */
  readonly memoryFd: (memory: SharedMemory) => number;
  readonly log: Logger;
}

const EMPTY = new Uint8Array(0);

export class Session {
  readonly stats = new SessionStats();
  private negotiated: Negotiated | null = null;
  private readonly handlers = new Map<number, Handler>([
    [Command.VERSION, (f) => this.version(f)],
    [Command.DEVICE_GET_INFO, (f) => this.deviceInfo(f)],
    [Command.DEVICE_GET_REGION_INFO, (f) => this.regionInfo(f)],
    [Command.DEVICE_GET_IRQ_INFO, (f) => this.irqInfo(f)],
    [Command.DEVICE_SET_IRQS, (f) => this.setIrqs(f)],
    [Command.REGION_READ, (f) => this.regionRead(f)],
    [Command.REGION_WRITE, (f) => this.regionWrite(f)],
    [Command.DMA_MAP, (f) => this.dmaMap(f)],
    [Command.DMA_UNMAP, (f) => this.dmaUnmap(f)],
    [Command.DEVICE_RESET, (f) => this.reset(f)],
  ]);

  constructor(private readonly res: SessionResources) {}

  /** Largest message we accept: a full data transfer plus the biggest fixed part. */
  maxMessageSize(): number {
    return HEADER_SIZE + REGION_ACCESS_SIZE + this.res.limits.maxDataXferSize;
  }

  /**
   * Handles one request and returns the reply to send (null with NO_REPLY, or for a message
   * that is not a request). Never throws for a bad message.
   */
  handle(frame: Frame): Outgoing | null {
    const h = frame.header;
    this.stats.count(this.stats.commands, h.command);
    if ((h.flags & TYPE_MASK) !== MessageType.COMMAND) {
      // We never send requests before DMA is needed, so any reply here is unsolicited.
      this.res.log.warn(`dropped a message of type ${h.flags & TYPE_MASK} (id ${h.id}, ${commandName(h.command)}): only requests are expected`);
      closeQuietly(frame.fds);
      return null;
    }
    let result: HandlerResult;
    try {
      result = this.dispatch(frame);
    } catch (err) {
      closeQuietly(frame.fds);
      return this.errorReply(h, err);
    }
    closeQuietly(frame.fds);
    if (h.flags & FLAG_NO_REPLY) {
      closeQuietly(result.fds ?? []);
      return null;
    }
    return {
      header: { id: h.id, command: h.command, size: HEADER_SIZE + result.body.byteLength, flags: MessageType.REPLY, error: 0 },
      body: result.body,
      fds: result.fds ?? [],
    };
  }

  private dispatch(frame: Frame): HandlerResult {
    const cmd = frame.header.command;
    const handler = this.handlers.get(cmd);
    if (!handler) throw new VfioUserError(Errno.ENOSYS, `${commandName(cmd)} is not supported`);
    if (cmd !== Command.VERSION && !this.negotiated) invalid(`${commandName(cmd)} before VERSION`);
    if (frame.fds.length > 0 && cmd !== Command.DMA_MAP && cmd !== Command.DEVICE_SET_IRQS) {
      invalid(`${commandName(cmd)} does not take file descriptors (${frame.fds.length} attached)`);
    }
    return handler(frame);
  }

  /** The one place an error becomes a reply: request id echoed, positive errno. */
  errorReply(h: Header, err: unknown): Outgoing | null {
    this.stats.errors++;
    const errno = err instanceof VfioUserError ? err.errno : Errno.EINVAL;
    const what = err instanceof Error ? err.message : String(err);
    if (err instanceof VfioUserError) this.res.log.warn(`${commandName(h.command)} (id ${h.id}) refused: ${what}`);
    else this.res.log.error(`${commandName(h.command)} (id ${h.id}) failed unexpectedly: ${err instanceof Error ? err.stack : what}`);
    if (h.flags & FLAG_NO_REPLY) return null;
    return {
      header: { id: h.id, command: h.command, size: HEADER_SIZE, flags: MessageType.REPLY | FLAG_ERROR, error: errno },
      body: EMPTY,
      fds: [],
    };
  }

  // ---- handlers ------------------------------------------------------------------------------

  private version(frame: Frame): HandlerResult {
    if (this.negotiated) invalid('VERSION sent twice');
    const req = decodeVersion(frame.body);
    const { reply, negotiated } = negotiate(req, this.res.limits);
    this.negotiated = negotiated;
    this.res.log.info(
      `client speaks ${req.major}.${req.minor}; client limits: max_msg_fds ${negotiated.clientMaxMsgFds}, max_data_xfer_size ${negotiated.clientMaxDataXferSize}`,
    );
    return { body: encodeVersion(reply) };
  }

  private deviceInfo(frame: Frame): HandlerResult {
    const req = decodeDeviceInfo(frame.body);
    if (req.argsz < DEVICE_INFO_SIZE) invalid(`DEVICE_GET_INFO argsz ${req.argsz} < ${DEVICE_INFO_SIZE}`);
    const d = this.res.device;
    return {
      body: encodeDeviceInfo({
        argsz: DEVICE_INFO_SIZE,
        flags: DeviceFlags.PCI | (d.resettable ? DeviceFlags.RESET : 0),
        numRegions: d.numRegions,
        numIrqs: d.numIrqs,
      }),
    };
  }

  private region(index: number): RegionDescription | undefined {
    return this.res.device.regions.find((r) => r.index === index && r.size > 0n);
  }

  private regionInfo(frame: Frame): HandlerResult {
    const req = decodeRegionInfo(frame.body);
    if (req.argsz < REGION_INFO_SIZE) invalid(`GET_REGION_INFO argsz ${req.argsz} < ${REGION_INFO_SIZE}`);
    if (req.index >= this.res.device.numRegions) {
      invalid(`GET_REGION_INFO index ${req.index} out of range (${this.res.device.numRegions} regions)`);
    }
    const region = this.region(req.index);
    if (!region) {
      return { body: encodeRegionInfo({ argsz: REGION_INFO_SIZE, flags: 0, index: req.index, capOffset: 0, size: 0n, offset: 0n }) };
    }
    let flags = (region.readable ? RegionFlags.READ : 0) | (region.writable ? RegionFlags.WRITE : 0);
    if (!region.memory) {
      return { body: encodeRegionInfo({ argsz: REGION_INFO_SIZE, flags, index: req.index, capOffset: 0, size: region.size, offset: 0n }) };
    }
    // Shared memory: mmappable through one fd, with a sparse-mmap capability covering it all.
    flags |= RegionFlags.MMAP;
    const cap = encodeSparseMmapCap([{ offset: 0n, size: region.size }]);
    const needed = REGION_INFO_SIZE + cap.byteLength;
    if (req.argsz < needed) {
      // Too small for the capability: say how much is needed and send neither caps nor fd;
      // QEMU retries with that argsz. CAPS stays clear because QEMU's vfio-user client rejects
      // CAPS with a cap_offset below the struct size.
      return { body: encodeRegionInfo({ argsz: needed, flags, index: req.index, capOffset: 0, size: region.size, offset: 0n }) };
    }
    return {
      body: encodeRegionInfo({
        argsz: needed,
        flags: flags | RegionFlags.CAPS,
        index: req.index,
        capOffset: REGION_INFO_SIZE,
        size: region.size,
        offset: 0n,
        caps: cap,
      }),
      fds: [this.res.memoryFd(region.memory)],
    };
  }

  private irqInfo(frame: Frame): HandlerResult {
    const req = decodeIrqInfo(frame.body);
    if (req.argsz < IRQ_INFO_SIZE) invalid(`GET_IRQ_INFO argsz ${req.argsz} < ${IRQ_INFO_SIZE}`);
    if (req.index >= this.res.device.numIrqs) invalid(`GET_IRQ_INFO index ${req.index} out of range (${this.res.device.numIrqs} indexes)`);
    const irq = this.res.device.irqs.find((i) => i.index === req.index);
    return { body: encodeIrqInfo({ argsz: IRQ_INFO_SIZE, flags: irq?.flags ?? 0, index: req.index, count: irq?.count ?? 0 }) };
  }

  private setIrqs(frame: Frame): HandlerResult {
    const req = decodeIrqSet(frame.body);
    if (req.argsz < IRQ_SET_SIZE) invalid(`SET_IRQS argsz ${req.argsz} < ${IRQ_SET_SIZE}`);
    const fds = frame.fds.splice(0);
    this.res.irqs.apply(req, fds, this.res.device.numIrqs);
    return { body: EMPTY };
  }

  /** Checks index, access, count and range (without u64 overflow) for REGION_READ/WRITE. */
  private checkAccess(index: number, offset: bigint, count: number, write: boolean): RegionDescription {
    if (index >= this.res.device.numRegions) invalid(`region ${index} out of range`);
    const region = this.region(index);
    if (!region) invalid(`region ${index} has no size`);
    if (write ? !region.writable : !region.readable) invalid(`region ${index} is not ${write ? 'writable' : 'readable'}`);
    if (count === 0) invalid('access of zero bytes');
    if (count > this.res.limits.maxDataXferSize) invalid(`count ${count} exceeds max_data_xfer_size ${this.res.limits.maxDataXferSize}`);
    if (offset >= region.size || BigInt(count) > region.size - offset) {
      invalid(`[0x${offset.toString(16)}, +${count}) is outside region ${index} (0x${region.size.toString(16)} bytes)`);
    }
    return region;
  }

  private regionRead(frame: Frame): HandlerResult {
    const req = decodeRegionAccess(frame.body);
    if (req.data.byteLength !== 0) invalid('REGION_READ request carries data');
    const region = this.checkAccess(req.region, req.offset, req.count, false);
    this.stats.count(this.stats.regionReads, req.region);
    const offset = Number(req.offset);
    const data = region.memory ? region.memory.bytes(offset, req.count).slice() : new Uint8Array(req.count);
    if (!region.memory) this.res.device.read(req.region, offset, data);
    return { body: encodeRegionAccess({ offset: req.offset, region: req.region, count: req.count, data }) };
  }

  private regionWrite(frame: Frame): HandlerResult {
    const req = decodeRegionAccess(frame.body);
    if (req.data.byteLength !== req.count) invalid(`REGION_WRITE count ${req.count} but ${req.data.byteLength} data bytes`);
    const region = this.checkAccess(req.region, req.offset, req.count, true);
    this.stats.count(this.stats.regionWrites, req.region);
    const offset = Number(req.offset);
    if (region.memory) region.memory.bytes(offset, req.count).set(req.data);
    else this.res.device.write(req.region, offset, req.data);
    return { body: encodeRegionAccess({ offset: req.offset, region: req.region, count: req.count, data: EMPTY }) };
  }

  private dmaMap(frame: Frame): HandlerResult {
    const req = decodeDmaMap(frame.body);
    if (req.argsz < DMA_MAP_SIZE) invalid(`DMA_MAP argsz ${req.argsz} < ${DMA_MAP_SIZE}`);
    if (frame.fds.length > 1) invalid(`DMA_MAP carries ${frame.fds.length} fds (at most 1)`);
    const fd = frame.fds.splice(0)[0];
    this.res.dma.add(req, fd);
    this.res.log.debug(`DMA_MAP [0x${req.address.toString(16)}, +0x${req.size.toString(16)}) ${fd === undefined ? 'without fd' : 'fd-backed'}`);
    return { body: EMPTY };
  }

  private dmaUnmap(frame: Frame): HandlerResult {
    const req = decodeDmaUnmap(frame.body);
    if (req.argsz < DMA_UNMAP_SIZE) invalid(`DMA_UNMAP argsz ${req.argsz} < ${DMA_UNMAP_SIZE}`);
    const removed = this.res.dma.remove(req);
    this.res.log.debug(`DMA_UNMAP [0x${req.address.toString(16)}, +0x${req.size.toString(16)}): ${removed} mapping(s) removed`);
    return { body: encodeDmaUnmap({ ...req, argsz: DMA_UNMAP_SIZE }) };
  }

  private reset(frame: Frame): HandlerResult {
    if (frame.body.byteLength !== 0) invalid('DEVICE_RESET carries a payload');
    this.res.log.info('device reset requested by the client');
    this.res.device.reset();
    return { body: EMPTY };
  }
}
