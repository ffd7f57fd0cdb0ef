/**
 * Warms the request path before the first client comes. V8 runs new code in its interpreter and
 * compiles it only after many calls, so without this the guest's first few thousand trapped
 * accesses would pay for the compiler: a tail of slow accesses right after boot.
 *
 * A throw-away connection, built exactly as a client's is, sits on one end of a socketpair and is
 * driven synchronously (no event loop: it reads whatever was written, its session answers, we
 * read the reply): VERSION, then REGION_READs of config space offset 0 (the vendor and device
 * ids, which no device may give side effects to reading). Every step of the real path runs (recvmsg, framing, dispatch,
 * checks, the device's read, encoding, sendmsg); the device's own BAR registers are not
 * touched, so its state is exactly what it was.
 */
import { encodeRegionAccess, encodeVersion } from './codec.ts';
import type { Connection } from './connection.ts';
import { encodeHeader } from './header.ts';
import { close as closeFd, socketPair } from './native/libc.ts';
import { FdReceiver, FdSender } from './native/fd-messages.ts';
import { Command, HEADER_SIZE, MessageType, PciRegion } from './wire.ts';

/** Round trips a server runs before it listens (well under a second of start-up). */
export const WARM_UP_ROUNDS = 5_000;

/**
 * Runs `rounds` request/reply round trips through a connection made by `connect`. Returns null
 * when done, or why it stopped early: a device that refuses config reads is warmed no further.
 * A failure anywhere else throws, so a broken request path is found at start, not by the first
 * client.
 */
export function warmUp(connect: (fd: number) => Connection, rounds = WARM_UP_ROUNDS): string | null {
  const [ours, theirs] = socketPair();
  const connection = connect(ours);
  const sender = new FdSender(0);
  const receiver = new FdReceiver(16);
  const reply = Buffer.alloc(64 * 1024);
  /** One round trip; the reply's errno. */
  const ask = (id: number, command: number, body: Uint8Array): number => {
    const header = encodeHeader({ id, command, size: HEADER_SIZE + body.byteLength, flags: MessageType.COMMAND, error: 0 });
    sender.sendAll(theirs, [header, body]);
    if (!connection.pump()) throw new Error(`warm-up: the server did not read request ${id}`);
    const got = receiver.recv(theirs, reply, 0, reply.length);
    if (!got || got.bytes < HEADER_SIZE || reply.readUInt16LE(0) !== id) throw new Error(`warm-up: no reply to request ${id}`);
    // And a read that finds nothing, as after every request of a real client: the empty path
    // must be compiled too.
    if (connection.pump()) throw new Error(`warm-up: a second message after request ${id}`);
    return reply.readUInt32LE(12);
  };
  try {
    const json = '{"capabilities":{"max_msg_fds":16,"max_data_xfer_size":1048576}}';
    const errno = ask(0, Command.VERSION, encodeVersion({ major: 0, minor: 0, json }));
    if (errno !== 0) throw new Error(`warm-up: VERSION failed with errno ${errno}`);
    const read = encodeRegionAccess({ offset: 0n, region: PciRegion.CONFIG, count: 4, data: new Uint8Array(0) });
    for (let i = 1; i <= rounds; i++) {
      const failed = ask(i & 0xffff, Command.REGION_READ, read);
      if (failed) return `the device refused a config space read (errno ${failed})`;
    }
    return null;
  } finally {
    connection.close('warm-up done');
    closeFd(theirs);
  }
}
