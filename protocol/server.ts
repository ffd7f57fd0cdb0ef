/**
 * A vfio-user server for one device on one Unix socket. The device and its state live as long
 * as the server; clients come and go. One client at a time (QEMU never shares a device): on
 * disconnect every DMA mapping is unmapped and every interrupt eventfd closed, the device
 * state is kept, and the next client is served.
 */
import { readFileSync, unlinkSync } from 'node:fs';
import { type ClientLimits, DEFAULT_CLIENT_LIMITS } from './client-limits.ts';
import { Connection } from './connection.ts';
import type { WaitMechanism } from './channel.ts';
import type { Outgoing } from './framing.ts';
import { checkRegionDescriptions, type DeviceFactory, type DeviceModel, type SharedMemory } from './served-device.ts';
import { DmaMapTable } from './dma.ts';
import { ServerDma } from './dma-access.ts';
import { IrqTable } from './irqs.ts';
import { Migration } from './migration.ts';
import { refuseClient } from './refuse.ts';
import { DEFAULT_WAIT_MICROS } from './request-wait.ts';
import { removeStaleSocket, withPrivateUmask } from './socket-file.ts';
import { TraceBus } from './trace-bus.ts';
import { type Logger, silentLogger } from './log.ts';
import { type FdWatch, SyscallError, accept, dup, close as closeFd, listenUnix, watchReadable } from './native/libc.ts';
import { Session } from './session.ts';
import { WARM_UP_ROUNDS, warmUp } from './warm-up.ts';
import { MemfdMemory } from './shared-memory.ts';
import { DEFAULT_SERVER_LIMITS, type ServerLimits } from './version.ts';
import { HostResourceError, VfioUserError } from './errors.ts';

export interface ServerOptions {
  readonly socketPath: string;
  readonly device: DeviceFactory;
  readonly log: Logger;
  readonly limits?: ServerLimits;
  /** What one client may make the server hold (client-limits.ts); unset fields keep their defaults. */
  readonly clientLimits?: Partial<ClientLimits>;
  /**
   * Longest sleep for the client's next request after a reply, in µs (request-wait.ts;
   * default DEFAULT_WAIT_MICROS, 0 never waits).
   */
  readonly waitMicros?: number;
  /** How to sleep: io_uring where the kernel has it (default), or recvmsg (channel.ts). */
  readonly waitWith?: WaitMechanism;
  /**
   * Request round trips run through a throw-away session before listening, so the first
   * client's requests run compiled code (warm-up.ts; default WARM_UP_ROUNDS, 0 skips it).
   */
  readonly warmUpRounds?: number;
}

export class VfioUserServer {
  readonly device: DeviceModel;
  readonly irqs: IrqTable;
  readonly dma: DmaMapTable;
  /** The device's DMA engine access (direct or by messages). */
  readonly dmaAccess: ServerDma;
  readonly migration: Migration;
  /** Everything the server and device saw, for the trace channel and tests. */
  readonly trace = new TraceBus();
  private readonly memories: MemfdMemory[] = [];
  private readonly limits: ServerLimits;
  readonly clientLimits: ClientLimits;
  /** Refused connections still open (each waits up to idleTimeoutMs for a request to answer). */
  private refusing = 0;
  private listenFd: number | null = null;
  private listenWatch: FdWatch | null = null;
  private connection: Connection | null = null;
  private session: Session | null = null;
  private readonly log: Logger;
  private closeWaiters: (() => void)[] = [];
  /** The session that ended last (tests and the trace channel read its stats). */
  lastSession: Session | null = null;
  private clients = 0;

  /**
   * @param standIn a stand-in for the warm-up (warm-up.ts): a second instance of the device that no
   *   client will see, with plain memory (never huge pages: they may be counted for one device).
   */
  private constructor(
    private readonly opts: ServerOptions,
    standIn = false,
  ) {
    this.log = opts.log;
    this.limits = opts.limits ?? DEFAULT_SERVER_LIMITS;
    this.clientLimits = { ...DEFAULT_CLIENT_LIMITS, ...opts.clientLimits };
    this.dma = new DmaMapTable(this.limits.maxDmaMaps);
    this.dmaAccess = new ServerDma(this.dma, () => {
      const s = this.session;
      return s?.negotiated ? { peer: s.peer, maxXfer: s.negotiated.clientMaxDataXferSize } : null;
    });
    // The interrupt table needs the device's irq list; the device needs its lines first.
    let irqs: IrqTable | null = null;
    this.device = opts.device({
      log: opts.log.child('device'),
      trace: this.trace,
      dma: this.dmaAccess,
      interrupts: {
        isEnabled: (index, vector) => irqs?.isEnabled(index, vector) ?? false,
        trigger: (index, vector) => irqs?.trigger(index, vector) ?? false,
        setLevel: (index, level, vector) => irqs?.setLevel(index, level, vector),
      },
      allocateSharedMemory: (name, size, memOpts) => {
        if (memOpts?.hugePages && !standIn) checkHugePages(size);
        const mem = new MemfdMemory(name, size, standIn ? undefined : memOpts);
        this.memories.push(mem);
        return mem;
      },
    });
    try {
      checkRegionDescriptions(this.device);
    } catch (err) {
      this.releaseMemory();
      throw err;
    }
    irqs = new IrqTable(this.device.irqs, this.trace, opts.log.child('irq'));
    this.irqs = irqs;
    this.migration = new Migration(this.device, opts.log.child('migration'), this.clientLimits.maxMigrationBytes);
  }

  /**
   * Creates the device and listens on opts.socketPath, created with mode 0600 (no moment
   * exists when another user could connect). A stale socket file nobody listens on is
   * replaced; a live one is an EADDRINUSE error naming the path.
   */
  static listen(opts: ServerOptions): VfioUserServer {
    removeStaleSocket(opts.socketPath, '--socket-path');
    const server = new VfioUserServer(opts);
    try {
      server.warmUp(opts.warmUpRounds ?? WARM_UP_ROUNDS);
      server.listenFd = withPrivateUmask(() => listenUnix(opts.socketPath));
    } catch (err) {
      server.releaseMemory();
      throw err;
    }
    server.watchListener();
    server.log.info(`listening on ${opts.socketPath} (device ${server.device.name})`);
    return server;
  }

  /**
   * Runs the request path before listening (warm-up.ts), on a stand-in device built by the same
   * factory so that this device's registers are never touched. A factory that cannot build a
   * second instance leaves the warm-up to config space reads of this one.
   */
  private warmUp(rounds: number): void {
    if (rounds <= 0) return;
    let standIn: VfioUserServer | null = null;
    try {
      standIn = new VfioUserServer({ ...this.opts, log: silentLogger }, true);
    } catch (err) {
      this.log.debug(`no stand-in device for the request path warm-up (${(err as Error).message}); warming up with config space reads`);
    }
    const via = standIn ?? this;
    try {
      const rehearse = (fd: number) => via.openConnection(fd, silentLogger, (session) => session.close('warm-up done'), true).connection;
      const stopped = warmUp(rehearse, standIn?.device ?? null, rounds);
      if (stopped) this.log.debug(`request path warm-up stopped early: ${stopped}`);
    } finally {
      if (standIn) {
        standIn.closeDevice();
        releaseStandIn(standIn.memories);
      }
    }
  }

  private watchListener(): void {
    if (this.listenFd === null) return;
    this.listenWatch = watchReadable(
      this.listenFd,
      () => this.acceptPending(),
      (err) => {
        this.log.error(`accepting clients failed: ${err.message}; retrying in 1 s`);
        this.pauseAccepting(1000);
      },
    );
  }

  /**
   * Stops accepting for a while. With no descriptor left for accept (EMFILE), the listening
   * socket stays readable: watched, it would wake us in a loop until an fd frees up.
   */
  private pauseAccepting(ms: number): void {
    this.listenWatch?.stop();
    this.listenWatch = null;
    setTimeout(() => {
      if (this.listenFd !== null && !this.listenWatch) this.watchListener();
    }, ms).unref();
  }

  get socketPath(): string {
    return this.opts.socketPath;
  }

  /** The current client's session, if one is connected. */
  get currentSession(): Session | null {
    return this.session;
  }

  /** Clients served so far, the current one included. */
  get clientsServed(): number {
    return this.clients;
  }

  get hasClient(): boolean {
    return this.connection !== null;
  }

  private acceptPending(): void {
    for (;;) {
      if (this.listenFd === null) return;
      let fd: number | null;
      try {
        fd = accept(this.listenFd);
      } catch (err) {
        this.log.error(`accept failed: ${(err as Error).message}; not accepting for 100 ms`);
        this.pauseAccepting(100);
        return;
      }
      if (fd === null) return;
      if (this.connection) {
        // One client at a time: the device is already driven by someone.
        this.log.warn(`refusing another client: ${this.device.name} is in use by a client`);
        this.trace.emit({ type: 'client', event: 'refused', detail: 'another client is connected' });
        if (this.refusing >= this.clientLimits.maxRefusing) {
          // Each refusal waits for a request to answer: a connection flood must not hold fds.
          closeFd(fd);
          continue;
        }
        this.refusing++;
        refuseClient(fd, `${this.device.name} is already in use by another client`, this.log, this.clientLimits.idleTimeoutMs, () => this.refusing--);
        continue;
      }
      this.serve(fd);
    }
  }

  /**
   * A session and its connection on `fd`, built one way for clients and for the warm-up, so
   * the code the warm-up compiles is the code clients run (V8 compiles for the object shapes
   * and call targets it saw: a look-alike path would be thrown away at the first real request).
   */
  private openConnection(
    fd: number,
    log: Logger,
    onClose: (session: Session, reason: string) => void,
    rehearsal = false,
  ): { session: Session; connection: Connection } {
    let connection: Connection | null = null;
    const session = new Session(
      {
        device: this.device,
        irqs: this.irqs,
        dma: this.dma,
        migration: this.migration,
        limits: this.limits,
        memoryFd: (memory: SharedMemory) => this.memoryFd(memory),
        log,
        trace: this.trace,
      },
      (out: Outgoing) => connection?.send(out),
    );
    connection = new Connection(
      fd,
      {
        onFrame: (frame) => session.handle(frame),
        onBadHeader: (err) => session.errorReply(err.header, new VfioUserError(err.errno, err.message)),
        onClose: (reason) => {
          onClose(session, reason);
          // Nothing may keep the closed connection (and its buffers) alive through the session.
          connection = null;
        },
      },
      {
        limit: session,
        maxFds: this.limits.maxMsgFds,
        waitMicros: this.opts.waitMicros ?? DEFAULT_WAIT_MICROS,
        waitWith: this.opts.waitWith,
        rehearsal,
        output: { maxBytes: this.clientLimits.maxQueuedBytes, maxMessages: this.clientLimits.maxQueuedMessages, maxFds: this.clientLimits.maxQueuedFds },
        lingerMs: this.clientLimits.idleTimeoutMs,
        log,
      },
    );
    return { session, connection };
  }

  private serve(fd: number): void {
    const log = this.log.child(`client${++this.clients}`);
    const { session, connection } = this.openConnection(fd, log, (s, reason) => this.onClientGone(s, reason, log, connection));
    this.session = session;
    this.connection = connection;
    this.trace.emit({ type: 'client', event: 'connect' });
    connection.start();
    log.info(`client connected; ${connection.describeWait()}`);
    // A client that never says VERSION would hold the device from everyone else for ever.
    const hello = setTimeout(() => {
      if (!session.negotiated) connection.close(`no VERSION within ${this.clientLimits.idleTimeoutMs} ms`);
    }, this.clientLimits.idleTimeoutMs);
    hello.unref();
    this.helloTimer = hello;
  }

  private helloTimer: NodeJS.Timeout | null = null;

  private onClientGone(session: Session, reason: string, log: Logger, connection: Connection): void {
    if (this.helloTimer) clearTimeout(this.helloTimer);
    this.helloTimer = null;
    session.close(reason);
    // A migration the client left unfinished ends with it (its data is dropped): the next
    // client finds the device RUNNING, as a vfio device is after its fd is closed.
    this.migration.abort(reason);
    const maps = this.dma.clear();
    const irqFds = this.irqs.heldFds;
    this.irqs.clear();
    const waits = connection.waitStats;
    log.info(`${reason}; released ${maps} DMA mapping(s) and ${irqFds} interrupt eventfd(s); device state kept`);
    if (waits.answered + waits.wasted > 0) log.debug(`waits in recvmsg for the next request: ${waits.answered} answered, ${waits.wasted} timed out`);
    this.trace.emit({ type: 'client', event: 'disconnect', detail: reason });
    this.lastSession = session;
    this.connection = null;
    this.session = null;
    const waiters = this.closeWaiters;
    this.closeWaiters = [];
    for (const w of waiters) w();
  }

  /** Resolves when the current client (if any) disconnects. */
  clientGone(): Promise<void> {
    if (!this.connection) return Promise.resolve();
    return new Promise((resolve) => this.closeWaiters.push(resolve));
  }

  /**
   * A dup of the region's memfd: the reply owns it and closes it once sent. Out of descriptors
   * (EMFILE) is that request's error, not the server's.
   */
  private memoryFd(memory: SharedMemory): number {
    if (!(memory instanceof MemfdMemory)) throw new Error('region memory was not allocated by this server');
    try {
      return dup(memory.fd);
    } catch (err) {
      if (err instanceof SyscallError) throw new VfioUserError(err.errno, `cannot pass the region's fd: ${err.message}`);
      throw err;
    }
  }

  /** Stops listening, drops the client, removes the socket file and frees device memory. */
  close(): void {
    this.listenWatch?.stop();
    this.listenWatch = null;
    if (this.listenFd !== null) {
      closeFd(this.listenFd);
      this.listenFd = null;
      try {
        unlinkSync(this.opts.socketPath);
      } catch {
        // Already gone (removed by someone else): nothing to clean.
      }
    }
    this.connection?.close('server shutting down');
    this.closeDevice();
    this.releaseMemory();
    this.log.info('stopped');
  }

  /** The device's own close (optional); its failure is logged, never thrown. */
  private closeDevice(): void {
    try {
      this.device.close?.();
    } catch (err) {
      this.log.error(`closing device ${this.device.name} failed: ${(err as Error).message}`);
    }
  }

  private releaseMemory(): void {
    for (const m of this.memories.splice(0)) m.close();
  }
}

/** How long a stand-in's memory stays mapped when its device took views of it. */
const STAND_IN_GRACE_MS = 10_000;

/**
 * Frees a warm-up stand-in's memory. Memory its device never viewed goes at once. A view may
 * still be held by work the rehearsal started (a DMA continuation, a timer), and unmapping under
 * it would crash the process, so viewed memory goes after a grace period instead.
 */
function releaseStandIn(memories: MemfdMemory[]): void {
  const release = (list: MemfdMemory[]) => list.forEach((m) => m.close());
  release(memories.filter((m) => !m.viewed));
  const viewed = memories.filter((m) => m.viewed);
  if (viewed.length) setTimeout(() => release(viewed), STAND_IN_GRACE_MS).unref();
  memories.length = 0;
}

const HUGE_PAGE = 2n << 20n;

/** Huge-page backing needs a multiple of 2 MiB and that many free pages in the kernel's pool. */
function checkHugePages(size: bigint): void {
  if (size % HUGE_PAGE !== 0n) throw new HostResourceError(`huge-page backing needs a multiple of 2 MiB, not ${size} bytes`);
  let free = 0n;
  try {
    const info = readFileSync('/proc/meminfo', 'utf8');
    const pageKiB = BigInt(/Hugepagesize:\s+(\d+) kB/.exec(info)?.[1] ?? '0');
    if (pageKiB * 1024n === HUGE_PAGE) free = BigInt(/HugePages_Free:\s+(\d+)/.exec(info)?.[1] ?? '0');
  } catch {
    // No /proc/meminfo: report zero free pages below.
  }
  const need = size / HUGE_PAGE;
  if (free < need) {
    throw new HostResourceError(
      `huge-page backing for ${size >> 20n} MiB needs ${need} free 2 MiB huge pages, the host has ${free}; ` +
        `reserve them (as root: echo ${need} > /proc/sys/vm/nr_hugepages) or drop --hugepages`,
    );
  }
}

