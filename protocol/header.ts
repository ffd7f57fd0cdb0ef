/**
 * The message header every vfio-user message starts with (its table: MessageHeader in wire.ts).
 * Decoded and encoded once per message, so by hand here with the table's offsets;
 * codec.test.ts holds both equal to the table's own decoder and encoder.
 */
import { u16le, u32le } from './bytes.ts';
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
  if (at < 0 || at + HEADER_SIZE > bytes.byteLength) throw new RangeError(`a header needs ${HEADER_SIZE} bytes at ${at}, ${bytes.byteLength} there`);
  return {
    id: u16le(bytes, at + AT_ID),
    command: u16le(bytes, at + AT_COMMAND),
    size: u32le(bytes, at + AT_SIZE),
    flags: u32le(bytes, at + AT_FLAGS),
    error: u32le(bytes, at + AT_ERROR),
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
