/**
 * Bodies of the vfio-user commands: one decode/encode pair per structure, both directions, so
 * the server and the client library share one description of the wire. Decoders read through
 * WireReader (a short body is EINVAL); u64 fields stay bigint.
 */
import { invalid } from './errors.ts';
import { WireReader } from './reader.ts';
import { WireWriter } from './writer.ts';
import {
  CAP_HEADER_SIZE,
  CAP_SPARSE_MMAP,
  DEVICE_INFO_SIZE,
  DMA_MAP_SIZE,
  DMA_UNMAP_SIZE,
  IRQ_INFO_SIZE,
  IRQ_SET_SIZE,
  REGION_ACCESS_SIZE,
  REGION_INFO_SIZE,
} from './wire.ts';

// ---- VERSION ---------------------------------------------------------------------------------

export interface VersionBody {
  readonly major: number;
  readonly minor: number;
  /** The JSON text without its NUL, or undefined when the message has none. */
  readonly json?: string;
}

export function decodeVersion(body: Uint8Array): VersionBody {
  const r = new WireReader(body);
  const major = r.u16('major');
  const minor = r.u16('minor');
  if (r.remaining === 0) return { major, minor };
  const text = r.rest();
  // The spec requires a NUL-terminated string; a missing NUL means a truncated or foreign peer.
  if (text[text.length - 1] !== 0) invalid('VERSION capabilities are not NUL-terminated');
  const nul = text.indexOf(0);
  if (nul !== text.length - 1) invalid('VERSION capabilities contain a NUL before the end');
  return { major, minor, json: Buffer.from(text.subarray(0, nul)).toString('utf8') };
}

export function encodeVersion(v: VersionBody): Buffer {
  const w = new WireWriter().u16(v.major).u16(v.minor);
  if (v.json !== undefined) w.bytes(Buffer.from(v.json + '\0', 'utf8'));
  return w.finish();
}

// ---- argsz-only requests (DEVICE_GET_INFO) ----------------------------------------------------

export interface DeviceInfo {
  readonly argsz: number;
  readonly flags: number;
  readonly numRegions: number;
  readonly numIrqs: number;
}

export function decodeDeviceInfo(body: Uint8Array): DeviceInfo {
  const r = new WireReader(body);
  return { argsz: r.u32('argsz'), flags: r.u32('flags'), numRegions: r.u32('num_regions'), numIrqs: r.u32('num_irqs') };
}

export function encodeDeviceInfo(d: DeviceInfo): Buffer {
  return new WireWriter(DEVICE_INFO_SIZE).u32(d.argsz).u32(d.flags).u32(d.numRegions).u32(d.numIrqs).finish();
}

// ---- DEVICE_GET_REGION_INFO ------------------------------------------------------------------

export interface RegionInfo {
  readonly argsz: number;
  readonly flags: number;
  readonly index: number;
  readonly capOffset: number;
  readonly size: bigint;
  readonly offset: bigint;
  /** Capability chain bytes that follow the struct (reply only). */
  readonly caps?: Uint8Array;
}

export function decodeRegionInfo(body: Uint8Array): RegionInfo {
  const r = new WireReader(body);
  const info = {
    argsz: r.u32('argsz'),
    flags: r.u32('flags'),
    index: r.u32('index'),
    capOffset: r.u32('cap_offset'),
    size: r.u64('size'),
    offset: r.u64('offset'),
  };
  return r.remaining > 0 ? { ...info, caps: r.rest() } : info;
}

export function encodeRegionInfo(info: RegionInfo): Buffer {
  const w = new WireWriter(REGION_INFO_SIZE + (info.caps?.byteLength ?? 0))
    .u32(info.argsz)
    .u32(info.flags)
    .u32(info.index)
    .u32(info.capOffset)
    .u64(info.size)
    .u64(info.offset);
  if (info.caps) w.bytes(info.caps);
  return w.finish();
}

export interface SparseArea {
  readonly offset: bigint;
  readonly size: bigint;
}

/**
 * VFIO_REGION_INFO_CAP_SPARSE_MMAP placed at `at` (the cap's offset from the start of the
 * region info): header {id, version, next=0}, nr_areas u32, pad u32, {offset, size}[].
 */
export function encodeSparseMmapCap(areas: readonly SparseArea[]): Buffer {
  const w = new WireWriter(CAP_HEADER_SIZE + 8 + areas.length * 16)
    .u16(CAP_SPARSE_MMAP.id)
    .u16(CAP_SPARSE_MMAP.version)
    .u32(0)
    .u32(areas.length)
    .u32(0);
  for (const a of areas) w.u64(a.offset).u64(a.size);
  return w.finish();
}

export interface RegionCap {
  readonly id: number;
  readonly version: number;
  /** The cap's bytes after its 8-byte header. */
  readonly data: Uint8Array;
}

/** Walks a capability chain inside a region-info reply (offsets are from the struct's start). */
export function decodeCaps(info: RegionInfo): RegionCap[] {
  if (!info.caps || info.capOffset === 0) return [];
  const whole = new Uint8Array(REGION_INFO_SIZE + info.caps.byteLength);
  whole.set(info.caps, REGION_INFO_SIZE);
  const caps: RegionCap[] = [];
  let at = info.capOffset;
  const seen = new Set<number>();
  while (at !== 0) {
    if (seen.has(at) || at < REGION_INFO_SIZE || at + CAP_HEADER_SIZE > whole.byteLength) {
      invalid(`bad capability offset ${at}`);
    }
    seen.add(at);
    const r = new WireReader(whole.subarray(at));
    const id = r.u16();
    const version = r.u16();
    const next = r.u32();
    const end = next > at ? next : whole.byteLength;
    caps.push({ id, version, data: whole.subarray(at + CAP_HEADER_SIZE, end) });
    at = next;
  }
  return caps;
}

export function decodeSparseAreas(cap: RegionCap): SparseArea[] {
  const r = new WireReader(cap.data);
  const n = r.u32('nr_areas');
  r.skip(4);
  const areas: SparseArea[] = [];
  for (let i = 0; i < n; i++) areas.push({ offset: r.u64('area offset'), size: r.u64('area size') });
  return areas;
}

// ---- DEVICE_GET_IRQ_INFO ---------------------------------------------------------------------

export interface IrqInfo {
  readonly argsz: number;
  readonly flags: number;
  readonly index: number;
  readonly count: number;
}

export function decodeIrqInfo(body: Uint8Array): IrqInfo {
  const r = new WireReader(body);
  return { argsz: r.u32('argsz'), flags: r.u32('flags'), index: r.u32('index'), count: r.u32('count') };
}

export function encodeIrqInfo(i: IrqInfo): Buffer {
  return new WireWriter(IRQ_INFO_SIZE).u32(i.argsz).u32(i.flags).u32(i.index).u32(i.count).finish();
}

// ---- DEVICE_SET_IRQS -------------------------------------------------------------------------

export interface IrqSet {
  readonly argsz: number;
  readonly flags: number;
  readonly index: number;
  readonly start: number;
  readonly count: number;
  /** Bytes after the struct: one u8 per vector for DATA_BOOL; nothing for NONE or EVENTFD. */
  readonly data: Uint8Array;
}

export function decodeIrqSet(body: Uint8Array): IrqSet {
  const r = new WireReader(body);
  return {
    argsz: r.u32('argsz'),
    flags: r.u32('flags'),
    index: r.u32('index'),
    start: r.u32('start'),
    count: r.u32('count'),
    data: r.rest(),
  };
}

export function encodeIrqSet(s: IrqSet): Buffer {
  return new WireWriter(IRQ_SET_SIZE + s.data.byteLength)
    .u32(s.argsz)
    .u32(s.flags)
    .u32(s.index)
    .u32(s.start)
    .u32(s.count)
    .bytes(s.data)
    .finish();
}

// ---- REGION_READ / REGION_WRITE --------------------------------------------------------------

export interface RegionAccess {
  readonly offset: bigint;
  readonly region: number;
  readonly count: number;
  /** Write request / read reply: the bytes. Read request / write reply: empty. */
  readonly data: Uint8Array;
}

export function decodeRegionAccess(body: Uint8Array): RegionAccess {
  const r = new WireReader(body);
  return { offset: r.u64('offset'), region: r.u32('region'), count: r.u32('count'), data: r.rest() };
}

export function encodeRegionAccess(a: RegionAccess): Buffer {
  return new WireWriter(REGION_ACCESS_SIZE + a.data.byteLength)
    .u64(a.offset)
    .u32(a.region)
    .u32(a.count)
    .bytes(a.data)
    .finish();
}

// ---- DMA_MAP / DMA_UNMAP ---------------------------------------------------------------------

export interface DmaMap {
  readonly argsz: number;
  readonly flags: number;
  /** Offset of the mapping inside the fd that came with the message. */
  readonly offset: bigint;
  readonly address: bigint;
  readonly size: bigint;
}

export function decodeDmaMap(body: Uint8Array): DmaMap {
  const r = new WireReader(body);
  return { argsz: r.u32('argsz'), flags: r.u32('flags'), offset: r.u64('offset'), address: r.u64('address'), size: r.u64('size') };
}

export function encodeDmaMap(m: DmaMap): Buffer {
  return new WireWriter(DMA_MAP_SIZE).u32(m.argsz).u32(m.flags).u64(m.offset).u64(m.address).u64(m.size).finish();
}

export interface DmaUnmap {
  readonly argsz: number;
  readonly flags: number;
  readonly address: bigint;
  readonly size: bigint;
}

export function decodeDmaUnmap(body: Uint8Array): DmaUnmap {
  const r = new WireReader(body);
  return { argsz: r.u32('argsz'), flags: r.u32('flags'), address: r.u64('address'), size: r.u64('size') };
}

export function encodeDmaUnmap(u: DmaUnmap): Buffer {
  return new WireWriter(DMA_UNMAP_SIZE).u32(u.argsz).u32(u.flags).u64(u.address).u64(u.size).finish();
}

// ---- DEVICE_GET_REGION_IO_FDS ----------------------------------------------------------------

export interface RegionIoFds {
  readonly argsz: number;
  readonly flags: number;
  readonly index: number;
  readonly count: number;
}

export function decodeRegionIoFds(body: Uint8Array): RegionIoFds {
  const r = new WireReader(body);
  return { argsz: r.u32('argsz'), flags: r.u32('flags'), index: r.u32('index'), count: r.u32('count') };
}

export function encodeRegionIoFds(v: RegionIoFds): Buffer {
  return new WireWriter(16).u32(v.argsz).u32(v.flags).u32(v.index).u32(v.count).finish();
}

// ---- REGION_WRITE_MULTI ----------------------------------------------------------------------

/** One coalesced write: at most 8 data bytes, carried in a fixed 8-byte field. */
export interface MultiWrite {
  readonly offset: bigint;
  readonly region: number;
  readonly count: number;
  readonly data: Uint8Array;
}

export const MULTI_WRITE_ENTRY_SIZE = 24;

export function decodeWriteMulti(body: Uint8Array): MultiWrite[] {
  const r = new WireReader(body);
  const n = r.u64('wr_cnt');
  if (BigInt(r.remaining) !== n * BigInt(MULTI_WRITE_ENTRY_SIZE)) {
    invalid(`REGION_WRITE_MULTI wr_cnt ${n} does not match ${r.remaining} bytes of entries`);
  }
  const writes: MultiWrite[] = [];
  for (let i = 0n; i < n; i++) {
    const offset = r.u64('offset');
    const region = r.u32('region');
    const count = r.u32('count');
    const field = r.bytesView(8, 'data');
    if (count > 8) invalid(`REGION_WRITE_MULTI entry ${i} count ${count} exceeds 8`);
    writes.push({ offset, region, count, data: field.subarray(0, count) });
  }
  return writes;
}

export function encodeWriteMulti(writes: readonly MultiWrite[]): Buffer {
  const w = new WireWriter(8 + writes.length * MULTI_WRITE_ENTRY_SIZE).u64(writes.length);
  for (const e of writes) {
    const field = new Uint8Array(8);
    field.set(e.data.subarray(0, 8));
    w.u64(e.offset).u32(e.region).u32(e.count).bytes(field);
  }
  return w.finish();
}

// ---- DMA_READ / DMA_WRITE (server → client) --------------------------------------------------

/**
 * Layout as QEMU 11.1 reads and writes it, measured against a real guest: offset u64, count
 * (u32 in QEMU's struct, then 4 bytes of alignment padding: a u64 in effect), data from
 * payload offset 16 — the spec's `address u64, count u64, data`. QEMU requires the whole
 * message to be at least its 32-byte struct (+count for a write). (An older reading of QEMU's
 * source put data at offset 12; the data the guest saw proved it wrong.)
 */
export const DMA_RW_HEADER = 16;

export interface DmaTransfer {
  readonly address: bigint;
  readonly count: number;
  readonly data: Uint8Array;
}

export function encodeDmaTransfer(t: DmaTransfer): Buffer {
  return new WireWriter(DMA_RW_HEADER + t.data.byteLength).u64(t.address).u64(t.count).bytes(t.data).finish();
}

/** Decodes either direction; `data` is what follows the 16-byte head, trimmed to count. */
export function decodeDmaTransfer(body: Uint8Array, expectData: boolean): DmaTransfer {
  const r = new WireReader(body);
  const address = r.u64('offset');
  const count64 = r.u64('count');
  if (count64 > 0xffff_ffffn) invalid(`DMA transfer count ${count64} is larger than any transfer`);
  const count = Number(count64);
  if (!expectData) return { address, count, data: new Uint8Array(0) };
  if (r.remaining < count) invalid(`DMA transfer of ${count} bytes carries only ${r.remaining}`);
  return { address, count, data: r.bytesView(count) };
}

// ---- DEVICE_FEATURE --------------------------------------------------------------------------

export interface DeviceFeature {
  readonly argsz: number;
  /** Feature index in bits 0–15, GET/SET/PROBE above. */
  readonly flags: number;
  readonly data: Uint8Array;
}

export function decodeDeviceFeature(body: Uint8Array): DeviceFeature {
  const r = new WireReader(body);
  return { argsz: r.u32('argsz'), flags: r.u32('flags'), data: r.rest() };
}

export function encodeDeviceFeature(f: DeviceFeature): Buffer {
  return new WireWriter(8 + f.data.byteLength).u32(f.argsz).u32(f.flags).bytes(f.data).finish();
}

// ---- MIG_DATA_READ / MIG_DATA_WRITE ----------------------------------------------------------

export interface MigData {
  readonly argsz: number;
  readonly size: number;
  readonly data: Uint8Array;
}

export function decodeMigData(body: Uint8Array): MigData {
  const r = new WireReader(body);
  return { argsz: r.u32('argsz'), size: r.u32('size'), data: r.rest() };
}

export function encodeMigData(m: MigData): Buffer {
  return new WireWriter(8 + m.data.byteLength).u32(m.argsz).u32(m.size).bytes(m.data).finish();
}
