/**
 * Little-endian fields read straight from a byte array: what the per-message paths (header,
 * register accesses) use instead of a DataView, which would be one more object per message.
 */
export const u16le = (b: Uint8Array, at: number): number => b[at]! | (b[at + 1]! << 8);

export const u32le = (b: Uint8Array, at: number): number => (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16)) + b[at + 3]! * 0x1000000;
