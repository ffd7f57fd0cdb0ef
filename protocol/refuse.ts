/**
 * Turning away a client while another one drives the device. vfio-user has no refusal message,
 * so the clearest thing we can do is answer the newcomer's first request (its VERSION) with
 * EBUSY, then close. A client that sends nothing is closed after `graceMs`.
 */
import { Errno } from './errors.ts';
import { decodeHeader, encodeHeader } from './header.ts';
import type { Logger } from './log.ts';
import { closeQuietly, close as closeFd, watchReadable } from './native/libc.ts';
import { FdReceiver, FdSender } from './native/fd-messages.ts';
import { FLAG_ERROR, HEADER_SIZE, MessageType } from './wire.ts';

export function refuseClient(fd: number, reason: string, log: Logger, graceMs: number, onDone: () => void): void {
  const header = Buffer.alloc(HEADER_SIZE);
  let have = 0;
  const receiver = new FdReceiver(16);
  let done = false;
  const finish = () => {
    if (done) return;
    done = true;
    watch.stop();
    clearTimeout(timer);
    closeFd(fd);
    onDone();
  };
  const watch = watchReadable(fd, () => {
    try {
      const got = receiver.recv(fd, header, have, HEADER_SIZE - have);
      if (got === null) return;
      closeQuietly(got.fds);
      if (got.bytes === 0) return finish();
      have += got.bytes;
      if (have < HEADER_SIZE) return;
      const h = decodeHeader(header);
      // 16 bytes always fit an empty socket buffer; if not, the client is not reading anyway.
      new FdSender(0).sendSome(fd, [encodeHeader({ id: h.id, command: h.command, size: HEADER_SIZE, flags: MessageType.REPLY | FLAG_ERROR, error: Errno.EBUSY })], []);
      log.info(`answered the refused client's first request (id ${h.id}) with EBUSY: ${reason}`);
    } catch (err) {
      log.warn(`refusing a client: ${(err as Error).message}`);
    }
    finish();
  }, finish);
  const timer = setTimeout(finish, graceMs);
  timer.unref();
}
