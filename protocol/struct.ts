/**
 * A wire struct described once, as a table of its fields in wire order, from which its size,
 * field offsets, decoder and encoder all follow:
 *
 *   const DmaUnmap = defineStruct('vfio_user_dma_unmap', { argsz: 'u32', flags: 'u32', address: 'u64', size: 'u64' });
 *   DmaUnmap.size               // 24
 *   DmaUnmap.offsetOf('size')   // 16
 *   DmaUnmap.decode(body)       // { argsz, flags, address: bigint, size: bigint }
 *
 * Field types are little-endian: u16, u32, i32 (numbers), u64 (bigint: never a silently lossy
 * number), and u8[N] (N raw bytes, decoded as a view). A struct that ends in a flexible array
 * (the bytes after the fixed part: data, a capability chain) names it as its `tail`; decode
 * returns it as a view, encode appends it. The spec's C names are in snake_case; the table
 * uses the same words in camelCase (cap_offset → capOffset).
 *
 * Decoding reads the fields in a loop over the table: fine for the messages a client sends a
 * few times per device. The one struct decoded per trapped guest access (REGION_READ/WRITE)
 * has a hand-written fast path in codec.ts that takes its offsets from its table, and a test
 * that holds it equal to this generic codec.
 */
import { invalid } from './errors.ts';

export type FieldType = 'u16' | 'u32' | 'i32' | 'u64' | `u8[${number}]`;
export type Layout = { readonly [field: string]: FieldType };

type ValueOf<T extends FieldType> = T extends 'u64' ? bigint : T extends `u8[${number}]` ? Uint8Array : number;

/** The values of a struct's fixed fields. */
export type Fields<L extends Layout> = { readonly [K in keyof L]: ValueOf<L[K]> };
/** A decoded message: its fields, and its tail when the struct has one. */
export type Decoded<L extends Layout, Tail extends string> = Fields<L> & { readonly [K in Tail]: Uint8Array };
/** What encode takes: every field, and optionally the tail (empty when left out). */
export type Encodable<L extends Layout, Tail extends string> = Fields<L> & { readonly [K in Tail]?: Uint8Array };

interface Field {
  readonly name: string;
  readonly type: FieldType;
  readonly offset: number;
  readonly width: number;
}

function widthOf(type: FieldType): number {
  if (type === 'u16') return 2;
  if (type === 'u32' || type === 'i32') return 4;
  if (type === 'u64') return 8;
  const n = Number(/^u8\[(\d+)\]$/.exec(type)?.[1]);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`bad field type ${type}`);
  return n;
}

export class WireStruct<L extends Layout, Tail extends string = never> {
  readonly fields: readonly Field[];
  /** Bytes of the fixed part (the tail, if any, follows it). */
  readonly size: number;

  constructor(
    /** The spec's name for it, used in errors (e.g. vfio_region_info). */
    readonly name: string,
    layout: L,
    readonly tail?: Tail,
  ) {
    let offset = 0;
    this.fields = Object.entries(layout).map(([name, type]) => {
      const width = widthOf(type);
      // The spec's structs are naturally aligned; a table that is not has a field missing.
      if (type !== `u8[${width}]` && offset % width !== 0) throw new Error(`${this.name}.${name} (${type}) at offset ${offset} is misaligned`);
      const field = { name, type, offset, width };
      offset += width;
      return field;
    });
    this.size = offset;
  }

  offsetOf(field: keyof L & string): number {
    const f = this.fields.find((x) => x.name === field);
    if (!f) throw new Error(`${this.name} has no field ${field}`);
    return f.offset;
  }

  /** The fields of `body` (a view of a frame); EINVAL when it is shorter than the fixed part. */
  decode(body: Uint8Array): Decoded<L, Tail> {
    if (body.byteLength < this.size) invalid(`payload too short for ${this.name}: need ${this.size} bytes, have ${body.byteLength}`);
    const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
    const out: Record<string, number | bigint | Uint8Array> = {};
    for (const f of this.fields) {
      const at = f.offset;
      out[f.name] =
        f.type === 'u16'
          ? view.getUint16(at, true)
          : f.type === 'u32'
            ? view.getUint32(at, true)
            : f.type === 'i32'
              ? view.getInt32(at, true)
              : f.type === 'u64'
                ? view.getBigUint64(at, true)
                : new Uint8Array(body.buffer, body.byteOffset + at, f.width);
    }
    if (this.tail !== undefined) out[this.tail] = new Uint8Array(body.buffer, body.byteOffset + this.size, body.byteLength - this.size);
    return out as Decoded<L, Tail>;
  }

  /** The struct's bytes, followed by its tail. A u8[N] field takes at most N bytes, zero-padded. */
  encode(values: Encodable<L, Tail>): Buffer {
    const v = values as Record<string, number | bigint | Uint8Array | undefined>;
    const tail = this.tail === undefined ? undefined : (v[this.tail] as Uint8Array | undefined);
    // From Buffer's pool (a small Buffer.alloc is a malloc of its own), zeroed: padding and
    // a short u8[N] field read 0.
    const out = Buffer.allocUnsafe(this.size + (tail?.byteLength ?? 0)).fill(0);
    for (const f of this.fields) {
      const value = v[f.name];
      if (f.type === 'u16') out.writeUInt16LE(value as number, f.offset);
      else if (f.type === 'u32') out.writeUInt32LE((value as number) >>> 0, f.offset);
      else if (f.type === 'i32') out.writeInt32LE(value as number, f.offset);
      else if (f.type === 'u64') out.writeBigUInt64LE(BigInt(value as bigint | number), f.offset);
      else out.set((value as Uint8Array).subarray(0, f.width), f.offset);
    }
    if (tail) out.set(tail, this.size);
    return out;
  }
}

export function defineStruct<const L extends Layout, const Tail extends string = never>(name: string, layout: L, tail?: Tail): WireStruct<L, Tail> {
  return new WireStruct(name, layout, tail);
}

/** The decoded type of a struct: `type RegionInfo = MessageOf<typeof RegionInfo>`. */
export type MessageOf<S> = S extends WireStruct<infer L, infer T> ? Decoded<L, T> : never;
