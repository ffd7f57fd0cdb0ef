/**
 * A hostile vfio-user client: a raw socket driven with plain synchronous system calls (the
 * server runs in another process, so this thread may block on it), which builds its messages
 * by hand, may stop reading replies, half-close, or hold fds it passed. Every wait is bounded:
 * a wedged server fails the test instead of hanging it.
 */
import { spawn } from 'node:child_process';
import { close, closeQuietly, connectUnix, setNonBlocking, setReceiveTimeout, shutdownSocket } from '../../protocol/native/libc.ts';
import { FdReceiver, FdSender } from '../../protocol/native/fd-messages.ts';
import { Cmd, body, header } from '../conformance/harness.ts';

export { Cmd, body };

export interface RawReply {
  readonly id: number;
  readonly command: number;
  readonly flags: number;
  readonly error: number;
  readonly body: Buffer;
}

const ERROR_FLAG = 0x20;
export const IrqFlags = { DATA_NONE: 1, DATA_BOOL: 2, DATA_EVENTFD: 4, MASK: 8, UNMASK: 0x10, TRIGGER: 0x20 } as const;
export const BAR0 = 0;
export const BAR1 = 1;
export const CONFIG = 7;
export const Reg = { IRQ_RAISE: 0x60, DMA_SRC: 0x80, DMA_DST: 0x88, DMA_COUNT: 0x90, DMA_CMD: 0x98 } as const;
export const DMA_BUFFER = 0x40000n;

export class RawAttacker {
  private readonly sender = new FdSender(16, 2);
  private readonly receiver = new FdReceiver(16);
  private readonly buf = Buffer.alloc(4 << 20);
  private have = 0;
  private nextId = 1;
  closed = false;

  private constructor(readonly fd: number) {
    // Every blocking receive gives up after 5 s (it then reports a timeout).
    setReceiveTimeout(fd, 5_000_000);
  }

  static connect(path: string): RawAttacker {
    return new RawAttacker(connectUnix(path));
  }

  /** One whole message, waiting (bounded) for room in the socket. */
  send(command: number, payload: Uint8Array, fds: readonly number[] = [], id = this.takeId()): number {
    this.sender.sendAll(this.fd, [header({ id, command, size: 16 + payload.byteLength }), payload], fds);
    return id;
  }

  /** The next request id: 16 bits on the wire, so it wraps (a fast server sees more than 65,535 in one attack). */
  private takeId(): number {
    const id = this.nextId;
    this.nextId = (this.nextId + 1) & 0xffff;
    return id;
  }

  /**
   * Sends `count` copies of a message without reading anything, and without waiting: stops when
   * the socket is full (the server stopped reading). Returns how many went out whole.
   */
  flood(command: number, payload: Uint8Array, count: number): number {
    const message = Buffer.concat([header({ id: 0, command, size: 16 + payload.byteLength }), payload]);
    setNonBlocking(this.fd, true);
    let sent = 0;
    try {
      let partial = 0;
      while (sent < count) {
        const n = this.sender.sendSome(this.fd, [message], [], partial);
        if (n === 0) break;
        partial += n;
        if (partial === message.byteLength) {
          partial = 0;
          sent++;
        }
      }
      if (partial === 0) return sent;
      // Finish the message begun (bounded wait), so the stream stays framed.
      setNonBlocking(this.fd, false);
      try {
        this.sender.sendAll(this.fd, [message.subarray(partial)], []);
        sent++;
      } catch {
        // The server never took the rest: the stream ends mid-message, which it must survive too.
      }
      return sent;
    } finally {
      setNonBlocking(this.fd, false);
    }
  }

  /** The next reply (requests from the server are skipped), or null at end of stream or after 5 s. */
  next(): RawReply | null {
    for (;;) {
      const m = this.parse();
      if (m) {
        if ((m.flags & 0xf) === 1) return m;
        continue;
      }
      if (this.closed) return null;
      if (this.have === this.buf.length) throw new Error('a reply larger than the attacker buffer');
      let got;
      try {
        got = this.receiver.recv(this.fd, this.buf, this.have, this.buf.length - this.have, true);
      } catch {
        this.closed = true;
        return null;
      }
      if (got === null) return null;
      closeQuietly(got.fds);
      if (got.bytes === 0) {
        this.closed = true;
        continue;
      }
      this.have += got.bytes;
    }
  }

  private parse(): RawReply | null {
    if (this.have < 16) return null;
    const size = this.buf.readUInt32LE(4);
    if (this.have < size) return null;
    const m = {
      id: this.buf.readUInt16LE(0),
      command: this.buf.readUInt16LE(2),
      flags: this.buf.readUInt32LE(8),
      error: this.buf.readUInt32LE(12),
      body: Buffer.from(this.buf.subarray(16, size)),
    };
    this.buf.copyWithin(0, size, this.have);
    this.have -= size;
    return m;
  }

  /** A request and its reply; throws on an error reply or no reply. Returns the reply body. */
  call(command: number, payload: Uint8Array, fds: readonly number[] = []): Buffer {
    const id = this.send(command, payload, fds);
    const r = this.next();
    if (!r) throw new Error(`no reply to command ${command} (id ${id})`);
    if (r.id !== id) throw new Error(`reply id ${r.id} for request ${id}`);
    if (r.flags & ERROR_FLAG) throw Object.assign(new Error(`command ${command} failed with errno ${r.error}`), { errno: r.error });
    return r.body;
  }

  version(): void {
    this.call(Cmd.VERSION, body.version(0, 0, JSON.stringify({ capabilities: { max_msg_fds: 16, max_data_xfer_size: 1 << 20 } })));
  }

  writeReg(offset: number, value: bigint, size = 8): void {
    const data = Buffer.alloc(size);
    if (size === 8) data.writeBigUInt64LE(value);
    else data.writeUInt32LE(Number(value));
    this.call(Cmd.REGION_WRITE, body.regionAccess(BigInt(offset), BAR0, size, data));
  }

  readReg(offset: number, size = 8): bigint {
    const b = this.call(Cmd.REGION_READ, body.regionAccess(BigInt(offset), BAR0, size));
    return size === 8 ? b.readBigUInt64LE(16) : BigInt(b.readUInt32LE(16));
  }

  /** PCI command register: memory space and bus master on (edu refuses DMA without them). */
  enableBusMaster(): void {
    this.call(Cmd.REGION_WRITE, body.regionAccess(4n, CONFIG, 2, [0x06, 0x00]));
  }

  /** One edu DMA (RAM → device buffer, or back with toRam), polled to completion (bounded). */
  dma(guest: bigint, count: number, opts: { toRam?: boolean; irq?: boolean } = {}): void {
    this.writeReg(Reg.DMA_SRC, opts.toRam ? DMA_BUFFER : guest);
    this.writeReg(Reg.DMA_DST, opts.toRam ? guest : DMA_BUFFER);
    this.writeReg(Reg.DMA_COUNT, BigInt(count));
    this.writeReg(Reg.DMA_CMD, 1n | (opts.toRam ? 2n : 0n) | (opts.irq ? 4n : 0n));
    const deadline = Date.now() + 5000;
    while (this.readReg(Reg.DMA_CMD) & 1n) {
      if (Date.now() > deadline) throw new Error('edu DMA never completed');
    }
  }

  /** shutdown(SHUT_WR): the server sees end of stream; we can still read. */
  halfClose(): void {
    shutdownSocket(this.fd, 'write');
  }

  close(): void {
    if (this.fd >= 0) close(this.fd);
    this.closed = true;
  }
}

/**
 * Another process that flips a file's size between 0 and `size` as fast as it can for
 * `seconds` (through /proc/PID/fd/FD, so it reopens our memfd): a client shrinking guest RAM
 * under the device's feet.
 */
export function startSizeFlipper(fd: number, size: number, seconds: number): { stop(): Promise<void> } {
  const script = `const fs=require('fs');const f=fs.openSync('/proc/${process.pid}/fd/${fd}','r+');` +
    `const end=Date.now()+${seconds * 1000};while(Date.now()<end){fs.ftruncateSync(f,0);fs.ftruncateSync(f,${size});}`;
  const child = spawn(process.execPath, ['-e', script], { stdio: 'ignore' });
  const done = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    async stop() {
      child.kill('SIGTERM');
      await done;
    },
  };
}
