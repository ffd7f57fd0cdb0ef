/**
 * edu's DMA engine with the bounds checks QEMU's edu lacks. The device side is a 4 KiB buffer
 * at device address 0x40000; the guest side is a DMA address ANDed with dma_mask. A transfer
 * that leaves the buffer, exceeds dma_mask, or touches memory the client did not map (or did
 * not permit) is refused: nothing is copied, the refusal is logged and traced with the guest
 * address, and the device stays usable.
 *
 * The transfer runs after the DMA_CMD write has been answered (QEMU's edu uses a 100 ms
 * timer): DMA_READ/WRITE messages to QEMU must never wait inside the reply to a trapped access.
 */
import { DmaFault, type DeviceHost } from '../protocol/served-device.ts';
import { DmaError, type DmaErrorCode } from './edu-registers.ts';

export const DMA_BUFFER_ADDRESS = 0x40000n;
export const DMA_BUFFER_SIZE = 4096;
/** edu's dma_mask property default: 28 address bits. */
export const DEFAULT_DMA_MASK = (1n << 28n) - 1n;

export interface DmaRequest {
  readonly src: bigint;
  readonly dst: bigint;
  readonly count: bigint;
  /** true: device buffer → guest RAM. */
  readonly toRam: boolean;
}

const hex = (v: bigint) => `0x${v.toString(16)}`;

export class EduDmaEngine {
  readonly buffer = new Uint8Array(DMA_BUFFER_SIZE);
  /** Bumped by reset: a transfer started before it completes into nothing. */
  private generation = 0;
  private running = false;

  constructor(
    private readonly host: DeviceHost,
    private readonly dmaMask: bigint,
    /** Delay before a transfer starts, in ms (0: as soon as the reply has gone out). */
    private readonly delayMs: number,
    /** The command register's Bus Master Enable: without it a PCI function may not DMA. */
    private readonly busMaster: () => boolean,
  ) {}

  get busy(): boolean {
    return this.running;
  }

  /** Starts `req`; `done(error)` runs when it completes (NONE) or is refused (not after reset). */
  start(req: DmaRequest, done: (error: DmaErrorCode) => void): void {
    const generation = this.generation;
    this.running = true;
    const run = () => {
      this.transfer(req).then(
        (error) => {
          if (generation !== this.generation) return;
          this.running = false;
          done(error);
        },
        (err: unknown) => {
          // transfer() reports its own failures; anything else is a bug worth a loud log.
          this.host.log.error(`DMA engine failed unexpectedly: ${(err as Error).stack ?? String(err)}`);
          if (generation !== this.generation) return;
          this.running = false;
          done(DmaError.INTERNAL);
        },
      );
    };
    if (this.delayMs > 0) setTimeout(run, this.delayMs);
    else setImmediate(run);
  }

  /** Reset: forget the buffer and any transfer in flight. */
  reset(): void {
    this.generation++;
    this.running = false;
    this.buffer.fill(0);
  }

  /** Checks and performs one transfer; NONE if it happened, else why it was refused. */
  private async transfer(req: DmaRequest): Promise<DmaErrorCode> {
    const deviceAddress = req.toRam ? req.src : req.dst;
    const guestAddress = req.toRam ? req.dst : req.src;
    const direction = req.toRam ? 'from-device' : 'to-device';
    const refuse = (code: DmaErrorCode, why: string) => {
      this.host.log.warn(`guest error: DMA ${direction} guest ${hex(guestAddress)} device ${hex(deviceAddress)} count ${req.count} refused: ${why}`);
      this.host.trace.emit({ type: 'dma', direction, guestAddress, deviceAddress, length: Number(req.count & 0xffff_ffffn), ok: false, error: why });
      return code;
    };
    if (!this.busMaster()) return refuse(DmaError.BUS_MASTER_OFF, 'bus mastering is disabled in the PCI command register');
    if (req.count === 0n) return DmaError.NONE;
    const end = deviceAddress + req.count;
    if (deviceAddress < DMA_BUFFER_ADDRESS || end > DMA_BUFFER_ADDRESS + BigInt(DMA_BUFFER_SIZE)) {
      return refuse(DmaError.DEVICE_RANGE, `device range [${hex(deviceAddress)}, ${hex(end)}) is outside the buffer [0x40000, 0x41000)`);
    }
    if ((guestAddress & this.dmaMask) !== guestAddress || ((guestAddress + req.count - 1n) & this.dmaMask) !== guestAddress + req.count - 1n) {
      return refuse(DmaError.DMA_MASK, `guest range [${hex(guestAddress)}, ${hex(guestAddress + req.count)}) exceeds dma_mask ${hex(this.dmaMask)}`);
    }
    const at = Number(deviceAddress - DMA_BUFFER_ADDRESS);
    const length = Number(req.count);
    const dma = this.host.dma;
    const path = dma.pathOf?.(guestAddress);
    try {
      if (req.toRam) await dma.write(guestAddress, this.buffer.subarray(at, at + length));
      else await dma.readInto(guestAddress, this.buffer.subarray(at, at + length));
    } catch (err) {
      if (err instanceof DmaFault) return refuse(DmaError.NOT_MAPPED, err.reason);
      throw err;
    }
    this.host.trace.emit({ type: 'dma', direction, guestAddress, deviceAddress, length, ok: true, path });
    return DmaError.NONE;
  }
}
