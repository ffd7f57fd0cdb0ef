/**
 * One PCI function served over vfio-user, built from its declaration: what libvfio-user's
 * pci.c or QEMU's PCI core give a device author. It owns config space (identity, BAR sizing,
 * command/status, capabilities), the region and irq descriptions, shared memory for RAM-like
 * BARs, INTx/MSI/MSI-X delivery with Interrupt Disable and the Interrupt Status bit, and the reset
 * paths (DEVICE_RESET, FLR, PM D3hot→D0). A device subclasses it and implements its BARs'
 * registers and its own reset; it never touches config bytes or interrupt lines directly.
 */
import type { DeviceHost, DeviceModel, IrqDescription, RegionDescription, SharedMemory } from '../../protocol/served-device.ts';
import { IrqInfoFlags, PCI_NUM_IRQS, PCI_NUM_REGIONS, PciIrq, PciRegion } from '../../protocol/wire.ts';
import { Exp, Pm } from './capabilities.ts';
import { PciConfigSpace } from './config-space.ts';
import { type BarDeclaration, type BarRange, Cfg, Command, type PciFunctionDeclaration, Status } from './declaration.ts';
import { MsixTable } from './msix-table.ts';
import { validateDeclaration } from './validate.ts';

/** Why the function went back to power-on state (shown in logs and traces). */
export type ResetCause = 'device' | 'flr' | 'pm';

const RESET_WHY: Record<ResetCause, string> = {
  device: 'DEVICE_RESET from the client',
  flr: 'Function Level Reset (Initiate FLR in Device Control)',
  pm: 'PM soft reset (D3hot to D0 with No_Soft_Reset clear)',
};

/** The sparse mmap areas of a BAR: its whole size minus the trapped holes. */
export function mmapAreas(bar: BarDeclaration): BarRange[] {
  const holes = [...(bar.trappedRanges ?? [])].sort((a, b) => (a.offset < b.offset ? -1 : 1));
  const areas: BarRange[] = [];
  let at = 0n;
  for (const h of holes) {
    if (h.offset > at) areas.push({ offset: at, size: h.offset - at });
    at = h.offset + h.size;
  }
  if (at < bar.size) areas.push({ offset: at, size: bar.size - at });
  return areas;
}

export abstract class PciFunction implements DeviceModel {
  readonly numRegions = PCI_NUM_REGIONS;
  readonly numIrqs = PCI_NUM_IRQS;
  readonly resettable = true;
  readonly regions: readonly RegionDescription[];
  readonly irqs: readonly IrqDescription[];
  readonly config: PciConfigSpace;
  private readonly memory = new Map<number, SharedMemory>();
  private readonly trappedBars = new Set<number>();
  /** Offsets of the PM and PCI Express capabilities, when declared. */
  private readonly pmAt: number | undefined;
  private readonly expAt: number | undefined;
  /** The MSI-X table and PBA, when declared. */
  private readonly msix: MsixTable | undefined;
  /** INTx wanted by the device (QEMU's pci_set_irq level); see updateIntx. */
  private intxPending = false;
  /** The line as driven: pending and not disabled by the command register. */
  private intxLevel = false;

  /** Validates the declaration (PciDeclarationError naming the field) and builds everything. */
  constructor(
    protected readonly host: DeviceHost,
    readonly declaration: PciFunctionDeclaration,
  ) {
    validateDeclaration(declaration);
    this.config = new PciConfigSpace(declaration);
    const capAt = (kind: string) => {
      const i = declaration.capabilities.findIndex((c) => c.kind === kind);
      return i < 0 ? undefined : this.config.capabilityOffsets[i];
    };
    this.pmAt = capAt('pm');
    this.expAt = capAt('pcie');
    const regions: RegionDescription[] = declaration.bars.map((bar) => this.describeBar(bar));
    regions.push({ index: PciRegion.CONFIG, size: BigInt(this.config.size), readable: true, writable: true });
    this.regions = regions;
    const irqs: IrqDescription[] = [];
    if (declaration.interruptPin) irqs.push({ index: PciIrq.INTX, count: 1, flags: IrqInfoFlags.EVENTFD | IrqInfoFlags.MASKABLE | IrqInfoFlags.AUTOMASKED });
    const msi = declaration.capabilities.find((c) => c.kind === 'msi');
    if (msi) irqs.push({ index: PciIrq.MSI, count: msi.vectors, flags: IrqInfoFlags.EVENTFD | IrqInfoFlags.NORESIZE });
    const msix = declaration.capabilities.find((c) => c.kind === 'msix');
    if (msix) irqs.push({ index: PciIrq.MSIX, count: msix.vectors, flags: IrqInfoFlags.EVENTFD | IrqInfoFlags.NORESIZE });
    this.irqs = irqs;
    this.msix = msix && new MsixTable(msix);
  }

  get name(): string {
    return this.declaration.name;
  }

  private describeBar(bar: BarDeclaration): RegionDescription {
    const base = { index: bar.index, size: bar.size, readable: true, writable: true };
    if (bar.backing === 'trapped') {
      this.trappedBars.add(bar.index);
      return base;
    }
    const memory = this.host.allocateSharedMemory(`${this.declaration.name}-bar${bar.index}`, bar.size, { hugePages: bar.hugePages });
    this.memory.set(bar.index, memory);
    if (!bar.trappedRanges?.length) return { ...base, memory };
    return { ...base, memory, mmapAreas: mmapAreas(bar) };
  }

  /** The shared memory behind a `memory` BAR (throws for a trapped one: a device bug). */
  barMemory(index: number): SharedMemory {
    const m = this.memory.get(index);
    if (!m) throw new Error(`${this.name}: BAR${index} is not declared with shared-memory backing`);
    return m;
  }

  // --- what a device implements ---

  /** A trapped access of 1, 2, 4 or 8 bytes to BAR `bar`, as a little-endian value. */
  protected abstract barRead(bar: number, offset: number, size: number): bigint;
  protected abstract barWrite(bar: number, offset: number, size: number, value: bigint): void;
  /** Back to power-on state: the device's own registers and engines (config is the layer's). */
  protected abstract resetRegisters(cause: ResetCause): void;

  // --- command register and capabilities, as the device sees them ---

  get busMasterEnabled(): boolean {
    return (this.config.u16(Cfg.COMMAND) & Command.BUS_MASTER) !== 0;
  }

  get memoryEnabled(): boolean {
    return (this.config.u16(Cfg.COMMAND) & Command.MEMORY) !== 0;
  }

  /**
   * The guest enabled MSI. vfio-pci wires an MSI eventfd (and tears INTx down) when it does,
   * and QEMU keeps the MSI enable bit in its own copy of config space, so the eventfd is the
   * truth here, not our config byte.
   */
  get msiEnabled(): boolean {
    return this.host.interrupts.isEnabled(PciIrq.MSI);
  }

  // --- interrupts (QEMU's msi_notify and pci_set_irq) ---

  /**
   * An MSI-X edge on `vector` if the client wired that vector, else an MSI edge if MSI is on,
   * else INTx asserted (until setIntx(false)). vfio-pci enables one of the three at a time.
   */
  protected raiseInterrupt(vector = 0): void {
    if (this.msix && this.host.interrupts.isEnabled(PciIrq.MSIX, vector)) {
      this.host.interrupts.trigger(PciIrq.MSIX, vector);
      return;
    }
    if (this.msiEnabled) {
      this.host.interrupts.trigger(PciIrq.MSI, vector);
      return;
    }
    this.setIntx(true);
  }

  /** INTx as the device wants it; MSI has nothing to release. */
  protected setIntx(asserted: boolean): void {
    this.intxPending = asserted;
    this.updateIntx();
  }

  /**
   * PCI 2.3 INTx: the status register's Interrupt Status bit shows a pending INTx, and the
   * command register's Interrupt Disable bit keeps the line down while the bit stays set. The
   * guest's vfio-pci relies on both (it masks INTx with the disable bit and only claims an
   * interrupt whose status bit is set), as QEMU's PCI core provides them for its own devices.
   */
  private updateIntx(): void {
    this.config.setStatusBits(Status.INTERRUPT, this.intxPending);
    const level = this.intxPending && (this.config.u16(Cfg.COMMAND) & Command.INTX_DISABLE) === 0;
    if (level === this.intxLevel) return;
    this.intxLevel = level;
    this.host.interrupts.setLevel(PciIrq.INTX, level);
  }

  /** The INTx line as driven (for register dumps). */
  get intxAsserted(): boolean {
    return this.intxLevel;
  }

  // --- DeviceModel ---

  read(region: number, offset: number, into: Uint8Array): void {
    if (region === PciRegion.CONFIG) return this.config.read(offset, into);
    if (this.msix?.read(region, offset, into)) return;
    if (this.trappedBars.has(region) || this.memory.has(region)) {
      const size = into.length;
      if (size !== 1 && size !== 2 && size !== 4 && size !== 8) {
        this.host.log.warn(`guest error: ${size}-byte read of BAR${region} at 0x${offset.toString(16)} (registers take 1, 2, 4 or 8 bytes): reads all-ones`);
        into.fill(0xff);
        return;
      }
      const v = this.barRead(region, offset, size);
      // Registers of up to 4 bytes (every trapped access a guest makes with 32-bit MMIO) are
      // taken apart as a number: one BigInt conversion instead of two BigInt operations a byte.
      if (size <= 4) {
        const n = Number(BigInt.asUintN(32, v));
        for (let i = 0; i < size; i++) into[i] = (n >>> (8 * i)) & 0xff;
      } else {
        for (let i = 0; i < size; i++) into[i] = Number((v >> BigInt(8 * i)) & 0xffn);
      }
      return;
    }
    this.host.log.warn(`guest error: read of region ${region} which traps nothing`);
    into.fill(0xff);
  }

  write(region: number, offset: number, data: Uint8Array): void {
    if (region === PciRegion.CONFIG) return this.writeConfig(offset, data);
    if (this.msix?.write(region, offset, data)) return;
    if (this.trappedBars.has(region) || this.memory.has(region)) {
      const size = data.length;
      if (size !== 1 && size !== 2 && size !== 4 && size !== 8) {
        this.host.log.warn(`guest error: ${size}-byte write to BAR${region} at 0x${offset.toString(16)} ignored (registers take 1, 2, 4 or 8 bytes)`);
        return;
      }
      let v: bigint;
      if (size <= 4) {
        let n = 0;
        for (let i = size - 1; i >= 0; i--) n = n * 256 + data[i]!;
        v = BigInt(n);
      } else {
        v = 0n;
        for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(data[i]!);
      }
      this.barWrite(region, offset, size, v);
      return;
    }
    this.host.log.warn(`guest error: write to region ${region} which traps nothing, ignored`);
  }

  private writeConfig(offset: number, data: Uint8Array): void {
    const touches = (at: number, length: number) => offset < at + length && at < offset + data.length;
    const powerBefore = this.pmAt === undefined ? 0 : this.config.u16(this.pmAt + Pm.PMCSR) & Pm.STATE_MASK;
    // Initiate FLR is write-only (it reads 0, so the masked write below drops it): catch it first.
    const devctl = this.expAt === undefined ? undefined : this.expAt + Exp.DEVCTL;
    const flr = devctl !== undefined && this.flrDeclared && touches(devctl + 1, 1) && (data[devctl + 1 - offset]! & (Exp.DEVCTL_FLR >> 8)) !== 0;
    this.config.write(offset, data);
    if (flr) return this.functionReset('flr');
    if (this.pmAt !== undefined && touches(this.pmAt + Pm.PMCSR, 1)) this.powerStateWritten(powerBefore);
    // The Interrupt Disable bit gates the line.
    if (touches(Cfg.COMMAND, 2)) this.updateIntx();
  }

  private get flrDeclared(): boolean {
    return this.declaration.capabilities.some((c) => c.kind === 'pcie' && c.flr);
  }

  /**
   * PCI PM 1.2, 5.4: D1 and D2 are not supported, so a write asking for them leaves the state
   * as it was; D3hot→D0 with No_Soft_Reset clear puts the function back to power-on state.
   */
  private powerStateWritten(before: number): void {
    const pmcsr = this.pmAt! + Pm.PMCSR;
    const value = this.config.u16(pmcsr);
    const now = value & Pm.STATE_MASK;
    if (now !== Pm.STATE_D0 && now !== Pm.STATE_D3HOT) {
      this.config.write(pmcsr, Uint8Array.of((value & ~Pm.STATE_MASK) | before));
      this.host.log.warn(`guest error: power state D${now} requested, which this function does not support: stays D${before}`);
      return;
    }
    if (now === before) return;
    this.host.log.debug(`power state D${before === 3 ? '3hot' : before} → D${now === 3 ? '3hot' : now}`);
    if (before === Pm.STATE_D3HOT && now === Pm.STATE_D0 && (value & Pm.NO_SOFT_RESET) === 0) this.functionReset('pm');
  }

  /** DEVICE_RESET: the client (QEMU on system reset) resets the function. */
  reset(): void {
    this.functionReset('device');
  }

  /**
   * Registers and config space back to power-on values, INTx released. Shared-memory BARs keep
   * their contents: they model RAM on the card, which a function reset does not clear.
   */
  protected functionReset(cause: ResetCause): void {
    this.resetRegisters(cause);
    this.config.reset();
    this.msix?.reset();
    this.intxPending = false;
    this.updateIntx();
    this.host.trace.emit({ type: 'reset', source: cause });
    this.host.log.info(`reset (${RESET_WHY[cause]}): registers and config space back to power-on values; shared-memory BARs keep their contents`);
  }
}
