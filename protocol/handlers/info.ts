/** DEVICE_GET_INFO, DEVICE_GET_REGION_INFO, DEVICE_GET_REGION_IO_FDS, DEVICE_GET_IRQ_INFO. */
import { encodeSparseMmapCap } from '../codec.ts';
import { invalid } from '../errors.ts';
import type { Frame } from '../framing.ts';
import { DeviceFlags, DeviceInfo, IrqInfo, RegionFlags, RegionInfo, RegionIoFds } from '../wire.ts';
import { type HandlerContext, type HandlerResult, requireArgsz, sizedRegion } from './context.ts';

export function deviceInfo(ctx: HandlerContext, frame: Frame): HandlerResult {
  const req = DeviceInfo.decode(frame.body);
  requireArgsz('DEVICE_GET_INFO', req.argsz, DeviceInfo.size);
  const d = ctx.device;
  return {
    body: DeviceInfo.encode({
      argsz: DeviceInfo.size,
      flags: DeviceFlags.PCI | (d.resettable ? DeviceFlags.RESET : 0),
      numRegions: d.numRegions,
      numIrqs: d.numIrqs,
    }),
  };
}

function checkRegionIndex(ctx: HandlerContext, what: string, index: number): void {
  if (index >= ctx.device.numRegions) invalid(`${what} index ${index} out of range (${ctx.device.numRegions} regions)`);
}

export function regionInfo(ctx: HandlerContext, frame: Frame): HandlerResult {
  const req = RegionInfo.decode(frame.body);
  requireArgsz('GET_REGION_INFO', req.argsz, RegionInfo.size);
  checkRegionIndex(ctx, 'GET_REGION_INFO', req.index);
  const region = sizedRegion(ctx, req.index);
  const base = { argsz: RegionInfo.size, index: req.index, capOffset: 0, offset: 0n };
  if (!region) return { body: RegionInfo.encode({ ...base, flags: 0, size: 0n }) };
  const flags = (region.readable ? RegionFlags.READ : 0) | (region.writable ? RegionFlags.WRITE : 0);
  if (!region.memory) return { body: RegionInfo.encode({ ...base, flags, size: region.size }) };
  // Shared memory: mmappable through one fd, over the areas the device declared (the whole
  // region unless some pages trap, e.g. a doorbell inside a RAM BAR).
  const cap = encodeSparseMmapCap(region.mmapAreas ?? [{ offset: 0n, size: region.size }]);
  const needed = RegionInfo.size + cap.byteLength;
  if (req.argsz < needed) {
    // Too small for the capability: say how much is needed and send neither caps nor fd;
    // QEMU retries with that argsz. CAPS stays clear because QEMU's vfio-user client rejects
    // CAPS with a cap_offset below the struct size.
    return { body: RegionInfo.encode({ ...base, argsz: needed, flags: flags | RegionFlags.MMAP, size: region.size }) };
  }
  return {
    body: RegionInfo.encode({
      ...base,
      argsz: needed,
      flags: flags | RegionFlags.MMAP | RegionFlags.CAPS,
      capOffset: RegionInfo.size,
      size: region.size,
      caps: cap,
    }),
    fds: [ctx.memoryFd(region.memory)],
  };
}

/**
 * No region of ours has ioeventfd/ioregionfd sub-regions (and QEMU's client never asks):
 * answer with count 0 and no fds for any valid region.
 */
export function regionIoFds(ctx: HandlerContext, frame: Frame): HandlerResult {
  const req = RegionIoFds.decode(frame.body);
  requireArgsz('GET_REGION_IO_FDS', req.argsz, RegionIoFds.size);
  if (req.flags !== 0 || req.count !== 0) invalid('GET_REGION_IO_FDS flags and count must be 0');
  checkRegionIndex(ctx, 'GET_REGION_IO_FDS', req.index);
  return { body: RegionIoFds.encode({ argsz: RegionIoFds.size, flags: 0, index: req.index, count: 0 }) };
}

export function irqInfo(ctx: HandlerContext, frame: Frame): HandlerResult {
  const req = IrqInfo.decode(frame.body);
  requireArgsz('GET_IRQ_INFO', req.argsz, IrqInfo.size);
  if (req.index >= ctx.device.numIrqs) invalid(`GET_IRQ_INFO index ${req.index} out of range (${ctx.device.numIrqs} indexes)`);
  const irq = ctx.device.irqs.find((i) => i.index === req.index);
  return { body: IrqInfo.encode({ argsz: IrqInfo.size, flags: irq?.flags ?? 0, index: req.index, count: irq?.count ?? 0 }) };
}
