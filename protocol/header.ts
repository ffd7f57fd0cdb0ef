/** The 16-byte message header every vfio-user message starts with. */
import { FLAG_ERROR, HEADER_SIZE, MessageType, TYPE_MASK } from './wire.ts';

export interface Header {
  readonly id: number;
  readonly command: number;
  /** Whole message size, header included. */
  readonly size: number;
  readonly flags: number;
  /** Positive errno in an error reply, else 0. */
  readonly error: number;
}

export function decodeHeader(bytes: Uint8Array, at = 0): Header {
  const v = new DataView(bytes.buffer, bytes.byteOffset + at, HEADER_SIZE);
  return {
    id: v.getUint16(0, true),
    command: v.getUint16(2, true),
    size: v.getUint32(4, true),
    flags: v.getUint32(8, true),
    error: v.getUint32(12, true),
  };
}

export function encodeHeader(h: Header, into: Buffer = Buffer.alloc(HEADER_SIZE)): Buffer {
  into.writeUInt16LE(h.id, 0);
  into.writeUInt16LE(h.command, 2);
  into.writeUInt32LE(h.size, 4);
  into.writeUInt32LE(h.flags, 8);
  into.writeUInt32LE(h.error, 12);
  return into;
}

export function isReply(h: Header): boolean {
  return (h.flags & TYPE_MASK) === MessageType.REPLY;
}

export function isError(h: Header): boolean {
  return (h.flags & FLAG_ERROR) !== 0;
}
