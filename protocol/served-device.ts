/**
 * What a device implements to be served over vfio-user, and what the server gives it in
 * return. This is the seam between protocol/ (sockets, fds, native memory) and device/ (pure
 * device logic): devices import only these types, never koffi or sockets.
 */
import type { Logger } from './log.ts';
import type { TraceBus } from './trace-bus.ts';

/** Memory shared with the client (a memfd the server maps and hands over for mmap). */
export interface SharedMemory {
  readonly size: bigint;
  /** A zero-copy view of [offset, offset+length): writes are seen by the client's mapping. */
  bytes(offset: number, length: number): Uint8Array;
}

export interface RegionDescription {
  /** vfio-pci region index (0–5 BARs, 6 ROM, 7 config space). */
  readonly index: number;
  readonly size: bigint;
  readonly readable: boolean;
  readonly writable: boolean;
  /**
   * RAM-like region: backed by shared memory that the client maps directly, so guest accesses
   * never reach the server. Absent: every access traps (REGION_READ/WRITE).
   */
  readonly memory?: SharedMemory;
  /**
   * With `memory`: the parts the client may mmap (page-aligned, sorted, inside the region),
   * advertised as sparse mmap areas. Accesses outside them trap to the device, which is how a
   * doorbell page sits inside a RAM-like BAR. Absent: the whole region is mappable.
   */
  readonly mmapAreas?: readonly { readonly offset: bigint; readonly size: bigint }[];
}

export interface IrqDescription {
  /** vfio-pci irq index (0 INTx, 1 MSI, 2 MSI-X, 3 ERR, 4 REQ). */
  readonly index: number;
  readonly count: number;
  /** VFIO_IRQ_INFO_* flags. */
  readonly flags: number;
}

/** How a device raises interrupts; the server routes them to the client's eventfds. */
export interface InterruptLines {
  /** True when the client attached an eventfd to (index, vector) and has not masked it. */
  isEnabled(index: number, vector?: number): boolean;
  /** An edge (MSI): signals (index, vector). False when nothing is attached or it is masked. */
  trigger(index: number, vector?: number): boolean;
  /**
   * A level-triggered line (INTx): fires when it rises, and again when the client unmasks it
   * while still high (vfio's automasked INTx).
   */
  setLevel(index: number, level: boolean, vector?: number): void;
}

/**
 * Guest memory as the device sees it (addresses are the client's DMA addresses). Both calls
 * reject with a DmaFault naming the address when the range is not mapped or not permitted.
 */
export interface DmaAccess {
  read(address: bigint, length: number): Promise<Uint8Array>;
  /** read() into the caller's buffer (a device reading into its own memory: no allocation). */
  readInto(address: bigint, into: Uint8Array): Promise<void>;
  write(address: bigint, data: Uint8Array): Promise<void>;
  /** How a transfer at `address` would travel (for traces), or undefined if unmapped. */
  pathOf?(address: bigint): 'direct' | 'messages' | undefined;
}

export class DmaFault extends Error {
  constructor(
    readonly address: bigint,
    readonly length: number,
    readonly reason: string,
  ) {
    super(`DMA [0x${address.toString(16)}, +0x${length.toString(16)}): ${reason}`);
  }
}

export interface DeviceHost {
  readonly log: Logger;
  /** Events for the trace channel (DMA transfers, refusals, resets). */
  readonly trace: TraceBus;
  readonly interrupts: InterruptLines;
  readonly dma: DmaAccess;
  /**
   * Allocates client-shareable memory (zero-filled, sparse) for a RAM-like region, optionally
   * from 2 MiB huge pages. Throws an Error saying what to do when the host cannot provide it.
   */
  allocateSharedMemory(name: string, size: bigint, opts?: { hugePages?: boolean }): SharedMemory;
}

export interface DeviceModel {
  /** Short name for logs. */
  readonly name: string;
  /** DEVICE_GET_INFO: a PCI device has 9 regions and 5 irq indexes in vfio-pci numbering. */
  readonly numRegions: number;
  readonly numIrqs: number;
  readonly resettable: boolean;
  /** Regions with a size; indexes not listed report size 0. */
  readonly regions: readonly RegionDescription[];
  readonly irqs: readonly IrqDescription[];
  /**
   * A trapped access. The server has already checked the region exists and that
   * [offset, offset+length) lies inside it. A device never throws on guest mistakes: it logs
   * them and reads all-ones / ignores the write, like hardware. `into` and `data` are views the
   * server reuses: valid during the call only (copy what must be kept).
   */
  read(region: number, offset: number, into: Uint8Array): void;
  write(region: number, offset: number, data: Uint8Array): void;
  /** DEVICE_RESET: back to power-on register state. */
  reset(): void;
  /**
   * Migration (optional): the device's whole state as plain data (numbers, strings, arrays,
   * byte arrays, objects), and the inverse, which throws on data it cannot accept.
   */
  saveState?(): unknown;
  loadState?(state: unknown): void;
  /** Register values by name, for humans and host-side tests (the trace channel's `registers`). */
  registerState?(): Record<string, number | bigint | boolean | string>;
  /**
   * The server is done with this instance (optional): stop timers and let go of what the device
   * holds beyond its memory. Called for the warm-up's stand-in (a factory builds more than one
   * instance: see warm-up.ts) right after the warm-up, and for the served device when the
   * server closes. Its shared memory is released after this returns.
   */
  close?(): void;
}

export type DeviceFactory = (host: DeviceHost) => DeviceModel;

const PAGE = 4096n;

/** A device describes its regions inconsistently; the message names the field. */
export class DeviceDescriptionError extends Error {
  override name = 'DeviceDescriptionError';
}

/**
 * What the server checks of a device's description when it starts, whoever built the device:
 * mmap areas must be whole pages, in order, inside their region, and only on shared memory —
 * a client maps them page by page from the region's fd. Throws DeviceDescriptionError.
 */
export function checkRegionDescriptions(device: Pick<DeviceModel, 'name' | 'regions'>): void {
  for (const r of device.regions) {
    if (!r.mmapAreas) continue;
    const field = `${device.name}: region ${r.index} mmapAreas`;
    if (!r.memory) throw new DeviceDescriptionError(`${field}: only a region with shared memory can be mapped`);
    let end = 0n;
    r.mmapAreas.forEach((a, i) => {
      if (a.size <= 0n || a.offset % PAGE !== 0n || a.size % PAGE !== 0n) throw new DeviceDescriptionError(`${field}[${i}]: offset and size must be non-empty multiples of ${PAGE}`);
      if (a.offset < end) throw new DeviceDescriptionError(`${field}[${i}]: areas must be in order and must not overlap`);
      end = a.offset + a.size;
      if (end > r.size) throw new DeviceDescriptionError(`${field}[${i}]: ends at 0x${end.toString(16)}, past the region's 0x${r.size.toString(16)} bytes`);
    });
  }
}
