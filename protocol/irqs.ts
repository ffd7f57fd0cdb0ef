/**
 * Interrupt wiring set by DEVICE_SET_IRQS (linux/vfio.h `vfio_irq_set` semantics): per irq
 * index, per vector, the client's trigger eventfd, a mask bit, and (INTx) a resample eventfd.
 *
 * Edge interrupts (MSI) signal the eventfd on every trigger. Level interrupts (INTx) follow
 * vfio-pci: an index advertised AUTOMASKED masks itself when it fires; the client unmasks it
 * after the guest's EOI (SET_IRQS UNMASK, or a write to the resample eventfd under KVM), and if
 * the device still holds the line asserted it fires again. An eventfd cannot carry a
 * de-assert, so lowering the line only stops the re-firing.
 *
 * QEMU quirks accepted on purpose (seen from its vfio-user client): INTx MASK/UNMASK
 * arrive even when MASKABLE is not advertised, and for KVM INTx an UNMASK with DATA_EVENTFD
 * (the resample fd) is followed by an UNMASK with DATA_NONE.
 */
import type { IrqDescription, InterruptLines } from './served-device.ts';
import { invalid } from './errors.ts';
import type { Logger } from './log.ts';
import { type FdWatch, closeQuietly, eventfdConsume, eventfdSignal, isEventfd, watchFd } from './native/libc.ts';
import type { TraceBus } from './trace-bus.ts';
import { IRQ_SET_ACTION_MASK, IRQ_SET_DATA_MASK, IrqInfoFlags, IrqSet, IrqSetFlags } from './wire.ts';

interface Vector {
  trigger: number | null;
  resample: number | null;
  resampleWatch: FdWatch | null;
  masked: boolean;
  /** Level of a level-triggered line as the device drives it. */
  level: boolean;
  /** An edge was lost to a full eventfd and logged; quiet until one is delivered again. */
  lossLogged: boolean;
}

function onlyOneBit(v: number): boolean {
  return v !== 0 && (v & (v - 1)) === 0;
}

export class IrqTable implements InterruptLines {
  private readonly vectors = new Map<number, Vector[]>();
  private readonly automasked = new Set<number>();
  /** Signals actually delivered, per index (for logs and tests). */
  readonly delivered = new Map<number, number>();

  constructor(
    irqs: readonly IrqDescription[],
    private readonly trace?: TraceBus,
    private readonly log?: Logger,
  ) {
    for (const irq of irqs) {
      this.vectors.set(
        irq.index,
        Array.from({ length: irq.count }, () => ({ trigger: null, resample: null, resampleWatch: null, masked: false, level: false, lossLogged: false })),
      );
      if (irq.flags & IrqInfoFlags.AUTOMASKED) this.automasked.add(irq.index);
    }
  }

  isEnabled(index: number, vector = 0): boolean {
    const v = this.vectors.get(index)?.[vector];
    return !!v && v.trigger !== null && !v.masked;
  }

  /** An edge (MSI): signals the eventfd unless nothing is attached or the vector is masked. */
  trigger(index: number, vector = 0): boolean {
    const v = this.vectors.get(index)?.[vector];
    return !!v && this.fire(index, vector, v);
  }

  /** Drives a level-triggered line (INTx); a rising edge fires, and unmasking re-fires while high. */
  setLevel(index: number, level: boolean, vector = 0): void {
    const v = this.vectors.get(index)?.[vector];
    if (!v) return;
    const rising = level && !v.level;
    v.level = level;
    if (rising) this.fire(index, vector, v);
  }

  private fire(index: number, vector: number, v: Vector): boolean {
    const why = v.trigger === null ? 'no eventfd attached' : v.masked ? 'masked' : this.signal(index, vector, v);
    if (why) {
      this.trace?.emit({ type: 'interrupt', index, vector, delivered: false, reason: why });
      return false;
    }
    if (this.automasked.has(index)) v.masked = true;
    this.delivered.set(index, (this.delivered.get(index) ?? 0) + 1);
    this.trace?.emit({ type: 'interrupt', index, vector, delivered: true });
    return true;
  }

  /**
   * Signals the vector's trigger eventfd; undefined when delivered, else why not. Never blocks
   * and never throws: the device raises interrupts from register writes and DMA completions,
   * which must not fail because of a client's fd. A full counter (the client does not read
   * it) loses the edge, as a full irqfd does in the kernel; logged once until one gets through.
   */
  private signal(index: number, vector: number, v: Vector): string | undefined {
    let why: string | undefined;
    try {
      if (!eventfdSignal(v.trigger!)) why = 'eventfd full';
    } catch (err) {
      why = (err as Error).message;
    }
    if (!why) v.lossLogged = false;
    else if (!v.lossLogged) {
      v.lossLogged = true;
      const what = why === 'eventfd full' ? 'the eventfd is full (the client does not read it)' : why;
      this.log?.warn(`interrupt ${index}/${vector} dropped: ${what}; logged once until one is delivered`);
    }
    return why;
  }

  /** The client unmasked (SET_IRQS UNMASK or the resample eventfd): re-fire a held level. */
  private unmask(index: number, vector: number, v: Vector): void {
    v.masked = false;
    if (v.level) this.fire(index, vector, v);
  }

  /**
   * Applies one SET_IRQS. Takes ownership of `fds` (closed here when not kept). Errors: EINVAL
   * for a malformed request (flags, index, range, argsz, fd count).
   */
  apply(req: IrqSet, fds: number[], numIrqs: number): void {
    let kept = false;
    try {
      kept = this.applyChecked(req, fds, numIrqs);
    } finally {
      if (!kept) closeQuietly(fds);
    }
  }

  private applyChecked(req: IrqSet, fds: number[], numIrqs: number): boolean {
    const data = req.flags & IRQ_SET_DATA_MASK;
    const action = req.flags & IRQ_SET_ACTION_MASK;
    if (req.flags & ~(IRQ_SET_DATA_MASK | IRQ_SET_ACTION_MASK)) invalid(`SET_IRQS unknown flags 0x${req.flags.toString(16)}`);
    if (!onlyOneBit(data) || !onlyOneBit(action)) invalid('SET_IRQS needs exactly one DATA_* and one ACTION_* flag');
    if (req.index >= numIrqs) invalid(`SET_IRQS index ${req.index} out of range (${numIrqs} indexes)`);
    const vectors = this.vectors.get(req.index) ?? [];
    // count 0 with DATA_NONE + TRIGGER disables the whole index.
    if (req.count === 0) {
      if (data === IrqSetFlags.DATA_NONE && action === IrqSetFlags.ACTION_TRIGGER) {
        if (fds.length) invalid('SET_IRQS disable carries fds');
        this.disable(req.index);
        return false;
      }
      invalid('SET_IRQS with count 0 is only valid as DATA_NONE|ACTION_TRIGGER (disable)');
    }
    if (req.start >= vectors.length || req.count > vectors.length - req.start) {
      invalid(`SET_IRQS vectors [${req.start}, +${req.count}) out of range for index ${req.index} (${vectors.length} vectors)`);
    }
    const boolBytes = data === IrqSetFlags.DATA_BOOL ? req.count : 0;
    if (req.argsz < IrqSet.size + boolBytes || req.data.byteLength < boolBytes) {
      invalid(`SET_IRQS argsz ${req.argsz} too small for ${req.count} vectors`);
    }
    if (data !== IrqSetFlags.DATA_EVENTFD && fds.length) invalid('SET_IRQS carries fds without DATA_EVENTFD');
    const targets = vectors.slice(req.start, req.start + req.count);
    const chosen = (i: number) => data !== IrqSetFlags.DATA_BOOL || req.data[i] !== 0;

    if (data === IrqSetFlags.DATA_EVENTFD) {
      // QEMU sends either one fd per vector, or none at all to detach those vectors.
      if (fds.length !== 0 && fds.length !== req.count) {
        invalid(`SET_IRQS has ${fds.length} fds for ${req.count} vectors`);
      }
      if (action === IrqSetFlags.ACTION_MASK) invalid('SET_IRQS MASK cannot take eventfds');
      // As the kernel's eventfd_ctx_fdget: anything but an eventfd is EINVAL.
      const notEventfd = fds.findIndex((fd) => !isEventfd(fd));
      if (notEventfd >= 0) invalid(`SET_IRQS fd #${notEventfd} is not an eventfd`);
      targets.forEach((v, i) => {
        const fd = fds.length ? fds[i]! : null;
        if (action === IrqSetFlags.ACTION_TRIGGER) {
          if (v.trigger !== null) closeQuietly([v.trigger]);
          v.trigger = fd;
          v.lossLogged = false;
        } else {
          this.setResample(req.index, req.start + i, v, fd);
        }
      });
      return fds.length > 0;
    }
    targets.forEach((v, i) => {
      if (!chosen(i)) return;
      const vector = req.start + i;
      if (action === IrqSetFlags.ACTION_MASK) v.masked = true;
      else if (action === IrqSetFlags.ACTION_UNMASK) this.unmask(req.index, vector, v);
      // A loopback trigger from the client: signal as if the device raised it.
      else if (v.trigger !== null) this.signal(req.index, vector, v);
    });
    return false;
  }

  /** The resample eventfd: the client writes it after the guest's EOI; we treat it as UNMASK. */
  private setResample(index: number, vector: number, v: Vector, fd: number | null): void {
    v.resampleWatch?.stop();
    v.resampleWatch = null;
    if (v.resample !== null) closeQuietly([v.resample]);
    v.resample = fd;
    if (fd === null) return;
    v.resampleWatch = watchFd(
      fd,
      () => {
        if (eventfdConsume(fd) > 0n) this.unmask(index, vector, v);
      },
      (err) => this.log?.warn(`resample eventfd of interrupt ${index}/${vector} no longer watched: ${err.message}`),
    );
  }

  private disable(index: number): void {
    (this.vectors.get(index) ?? []).forEach((v, vector) => {
      this.setResample(index, vector, v, null);
      if (v.trigger !== null) closeQuietly([v.trigger]);
      v.trigger = null;
      v.masked = false;
      v.lossLogged = false;
    });
  }

  /** Closes every eventfd (on disconnect: the next client wires its own). */
  clear(): void {
    for (const index of this.vectors.keys()) this.disable(index);
  }

  /** Open eventfds held (tests use it to prove nothing leaks). */
  get heldFds(): number {
    let n = 0;
    for (const list of this.vectors.values()) for (const v of list) n += Number(v.trigger !== null) + Number(v.resample !== null);
    return n;
  }
}
