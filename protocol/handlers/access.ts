/** REGION_READ, REGION_WRITE and REGION_WRITE_MULTI: trapped accesses and shared memory alike. */
import { decodeRegionAccess, decodeWriteMulti, encodeRegionAccess } from '../codec.ts';
import type { RegionDescription } from '../served-device.ts';
import { u32le } from '../bytes.ts';
import { invalid } from '../errors.ts';
import type { Frame } from '../framing.ts';
import { RegionAccess, WriteMultiHead } from '../wire.ts';
import { EMPTY, type HandlerContext, type HandlerResult, sizedRegion } from './context.ts';
import { MAX_REGISTER } from './register-scratch.ts';

/** Checks index, access, count and range (without u64 overflow). EINVAL for any failure. */
function checkAccess(ctx: HandlerContext, index: number, offset: bigint, count: number, write: boolean): RegionDescription {
  if (index >= ctx.device.numRegions) invalid(`region ${index} out of range`);
  const region = sizedRegion(ctx, index);
  if (!region) invalid(`region ${index} has no size`);
  if (write ? !region.writable : !region.readable) invalid(`region ${index} is not ${write ? 'writable' : 'readable'}`);
  if (count === 0) invalid('access of zero bytes');
  if (count > ctx.limits.maxDataXferSize) invalid(`count ${count} exceeds max_data_xfer_size ${ctx.limits.maxDataXferSize}`);
  if (offset >= region.size || BigInt(count) > region.size - offset) {
    invalid(`[0x${offset.toString(16)}, +${count}) is outside region ${index} (0x${region.size.toString(16)} bytes)`);
  }
  return region;
}

/** Small accesses as a number (what a register holds), larger ones as their bytes. */
function traceValue(data: Uint8Array): bigint | Uint8Array {
  if (data.byteLength > 8) return new Uint8Array(data);
  let v = 0n;
  for (let i = data.byteLength - 1; i >= 0; i--) v = (v << 8n) | BigInt(data[i]!);
  return v;
}

/**
 * Whether shared memory serves [offset, offset+count): the region is RAM-like and the access
 * lies inside one of its mmap areas. Everything else traps to the device.
 */
function inMemory(region: RegionDescription, offset: bigint, count: number): boolean {
  if (!region.memory) return false;
  if (!region.mmapAreas) return true;
  const end = offset + BigInt(count);
  return region.mmapAreas.some((a) => offset >= a.offset && end <= a.offset + a.size);
}

function write(ctx: HandlerContext, region: RegionDescription, offset: bigint, data: Uint8Array): void {
  ctx.stats.regionWrites.add(region.index);
  if (ctx.trace.active) {
    ctx.trace.emit({ type: 'region-write', region: region.index, offset: Number(offset), size: data.byteLength, value: traceValue(data) });
  }
  if (inMemory(region, offset, data.byteLength)) region.memory!.bytes(Number(offset), data.byteLength).set(data);
  else ctx.device.write(region.index, Number(offset), data);
}

/** Where the access struct's fields sit (from its table in wire.ts). */
const ACCESS_SIZE = RegionAccess.size;
const AT_OFFSET = RegionAccess.offsetOf('offset');
const AT_REGION = RegionAccess.offsetOf('region');
const AT_COUNT = RegionAccess.offsetOf('count');
/** Offsets below 2^53 / 2^32 fit a number exactly: every BAR this server can have. */
const MAX_NUMBER_OFFSET_HIGH = 0x1fffff;


/**
 * A register access: up to 8 bytes of a region without shared memory, the guest's MMIO path.
 * Returns its offset when `body` is one that passes every check the general path makes (the
 * count of data bytes included, for a write), else -1: the general path then checks again and
 * refuses or answers it. Read the index and count with u32le. No object, BigInt or copy.
 */
function registerOffset(ctx: HandlerContext, body: Uint8Array, write: boolean): number {
  if (body.byteLength < ACCESS_SIZE) return -1;
  const high = u32le(body, AT_OFFSET + 4);
  const count = u32le(body, AT_COUNT);
  if (high > MAX_NUMBER_OFFSET_HIGH || count === 0 || count > MAX_REGISTER || count > ctx.limits.maxDataXferSize) return -1;
  if (body.byteLength !== ACCESS_SIZE + (write ? count : 0)) return -1;
  const index = u32le(body, AT_REGION);
  const region = index < ctx.device.numRegions ? sizedRegion(ctx, index) : undefined;
  if (!region || region.memory || !(write ? region.writable : region.readable)) return -1;
  const offset = high * 0x100000000 + u32le(body, AT_OFFSET);
  return offset + count > Number(region.size) ? -1 : offset;
}

/** A register read: the reply echoes offset, region and count, and the device reads into it. */
function registerRead(ctx: HandlerContext, body: Uint8Array): Uint8Array | null {
  const offset = registerOffset(ctx, body, false);
  if (offset < 0) return null;
  const index = u32le(body, AT_REGION);
  const count = u32le(body, AT_COUNT);
  ctx.stats.regionReads.add(index);
  const reply = ctx.registers.readReply[count]!;
  reply.set(body, 0);
  // Zeroed, as the general path's buffer is: a device that leaves a byte alone returns 0 there.
  const data = ctx.registers.readData[count]!;
  for (let i = 0; i < count; i++) data[i] = 0;
  ctx.device.read(index, offset, data);
  if (ctx.trace.active) ctx.trace.emit({ type: 'region-read', region: index, offset, size: count, value: traceValue(data) });
  return reply;
}

/** A register write: the reply is the request's fixed part, echoed. */
function registerWrite(ctx: HandlerContext, body: Uint8Array): Uint8Array | null {
  const offset = registerOffset(ctx, body, true);
  if (offset < 0) return null;
  const index = u32le(body, AT_REGION);
  const data = ctx.registers.writeData[u32le(body, AT_COUNT)]!;
  for (let i = 0; i < data.length; i++) data[i] = body[ACCESS_SIZE + i]!;
  ctx.stats.regionWrites.add(index);
  if (ctx.trace.active) ctx.trace.emit({ type: 'region-write', region: index, offset, size: data.byteLength, value: traceValue(data) });
  ctx.device.write(index, offset, data);
  const reply = ctx.registers.writeReply;
  for (let i = 0; i < ACCESS_SIZE; i++) reply[i] = body[i]!;
  return reply;
}

export function regionRead(ctx: HandlerContext, frame: Frame): HandlerResult {
  const fast = registerRead(ctx, frame.body);
  if (fast) return { body: fast };
  const req = decodeRegionAccess(frame.body);
  if (req.data.byteLength !== 0) invalid('REGION_READ request carries data');
  const region = checkAccess(ctx, req.region, req.offset, req.count, false);
  ctx.stats.regionReads.add(req.region);
  const offset = Number(req.offset);
  let data: Uint8Array;
  if (inMemory(region, req.offset, req.count)) data = new Uint8Array(region.memory!.bytes(offset, req.count));
  else ctx.device.read(req.region, offset, (data = new Uint8Array(req.count)));
  if (ctx.trace.active) ctx.trace.emit({ type: 'region-read', region: req.region, offset, size: req.count, value: traceValue(data) });
  return { body: encodeRegionAccess({ offset: req.offset, region: req.region, count: req.count, data }) };
}

export function regionWrite(ctx: HandlerContext, frame: Frame): HandlerResult {
  const fast = registerWrite(ctx, frame.body);
  if (fast) return { body: fast };
  const req = decodeRegionAccess(frame.body);
  if (req.data.byteLength !== req.count) invalid(`REGION_WRITE count ${req.count} but ${req.data.byteLength} data bytes`);
  write(ctx, checkAccess(ctx, req.region, req.offset, req.count, true), req.offset, req.data);
  return { body: encodeRegionAccess({ offset: req.offset, region: req.region, count: req.count, data: EMPTY }) };
}

/**
 * Coalesced writes (spec: up to 8 bytes each). All entries are validated before any is
 * applied, so a bad entry leaves the device untouched. Reply: wr_cnt completed.
 */
export function regionWriteMulti(ctx: HandlerContext, frame: Frame): HandlerResult {
  const writes = decodeWriteMulti(frame.body);
  if (writes.length === 0) invalid('REGION_WRITE_MULTI with no writes');
  const regions = writes.map((w) => checkAccess(ctx, w.region, w.offset, w.count, true));
  writes.forEach((w, i) => write(ctx, regions[i]!, w.offset, w.data));
  return { body: WriteMultiHead.encode({ wrCnt: BigInt(writes.length) }) };
}
