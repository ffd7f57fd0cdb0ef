/** The reply buffers of a session's register path (access.ts). */
import { RegionAccess } from '../wire.ts';

const ACCESS_SIZE = RegionAccess.size;

/** Largest access the register path takes (a 64-bit register). */
export const MAX_REGISTER = 8;

/**
 * The buffers one session's register accesses reuse: a reply is sent, or copied into the
 * writer's queue, before the session handles its next request, so nothing is allocated per
 * access. Views are made once per size (1–8 bytes): a device gets a Uint8Array of exactly the
 * access's size, as on the general path, and valid only during its call, as a frame's body is.
 */
export class RegisterScratch {
  private readonly readBytes = new Uint8Array(ACCESS_SIZE + MAX_REGISTER);
  private readonly writeBytes = new Uint8Array(MAX_REGISTER);
  /** By size: the whole read reply, and the device's part of it. */
  readonly readReply: Uint8Array[] = [];
  readonly readData: Uint8Array[] = [];
  /** By size: what a write hands the device. */
  readonly writeData: Uint8Array[] = [];
  /** A write's reply: the request's fixed part. */
  readonly writeReply = new Uint8Array(ACCESS_SIZE);

  constructor() {
    for (let n = 0; n <= MAX_REGISTER; n++) {
      this.readReply.push(this.readBytes.subarray(0, ACCESS_SIZE + n));
      this.readData.push(this.readBytes.subarray(ACCESS_SIZE, ACCESS_SIZE + n));
      this.writeData.push(this.writeBytes.subarray(0, n));
    }
  }
}
