/**
 * The message header every vfio-user message starts with (its table: MessageHeader in wire.ts).
 * Decoded and encoded once per message, so by hand here with the table's offsets;
 * codec.test.ts holds both equal to the table's own decoder and encoder.
 */
import { FLAG_ERROR, HEADER_SIZE, MessageHeader, MessageType, TYPE_MASK } from './wire.ts';

const AT_ID = MessageHeader.offsetOf('id');
const AT_COMMAND = MessageHeader.offsetOf('command');
const AT_SIZE = MessageHeader.offsetOf('size');
const AT_FLAGS = MessageHeader.offsetOf('flags');
const AT_ERROR = MessageHeader.offsetOf('error');

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
    id: v.getUint16(AT_ID, true),
    command: v.getUint16(AT_COMMAND, true),
    size: v.getUint32(AT_SIZE, true),
    flags: v.getUint32(AT_FLAGS, true),
    error: v.getUint32(AT_ERROR, true),
  };
}

export function encodeHeader(h: Header, into: Buffer = Buffer.alloc(HEADER_SIZE)): Buffer {
  into.writeUInt16LE(h.id, AT_ID);
  into.writeUInt16LE(h.command, AT_COMMAND);
  into.writeUInt32LE(h.size, AT_SIZE);
  into.writeUInt32LE(h.flags, AT_FLAGS);
  into.writeUInt32LE(h.error, AT_ERROR);
  return into;
}

export function isReply(h: Header): boolean {
  return (h.flags & TYPE_MASK) === MessageType.REPLY;
}

export function isError(h: Header): boolean {
  return (h.flags & FLAG_ERROR) !== 0;
}
