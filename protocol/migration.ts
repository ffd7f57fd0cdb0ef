/**
 * The migration v2 state machine (spec "VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE"; linux/vfio.h
 * enum vfio_device_mig_state) over MIG_DATA_READ/WRITE. Supported: STOP_COPY (no PRE_COPY, no
 * P2P). The device's state is a plain value from DeviceModel.saveState(), carried as msgpack.
 *
 * QEMU's vfio-user client has no migration yet; our own client drives this in the tests.
 */
import { Packr } from 'msgpackr';
import type { DeviceModel } from './served-device.ts';
import { Errno, VfioUserError, invalid } from './errors.ts';
import type { Logger } from './log.ts';
import { MigState } from './wire.ts';

const stateNames = new Map<number, string>(Object.entries(MigState).map(([k, v]) => [v, k]));
export const migStateName = (s: number) => stateNames.get(s) ?? `state ${s}`;

/** The direct arcs the spec requires when PRE_COPY and P2P are not offered. */
const ARCS: Record<number, number[]> = {
  [MigState.RUNNING]: [MigState.STOP],
  [MigState.STOP]: [MigState.RUNNING, MigState.STOP_COPY, MigState.RESUMING],
  [MigState.STOP_COPY]: [MigState.STOP],
  [MigState.RESUMING]: [MigState.STOP],
};
const SAVING = new Set<number>([MigState.STOP_COPY, MigState.PRE_COPY]);

/** Shortest arc path from → to whose interior passes no saving-group state. */
export function migrationPath(from: number, to: number): number[] | null {
  const prev = new Map<number, number>([[from, from]]);
  const queue = [from];
  while (queue.length) {
    const at = queue.shift()!;
    if (at === to) break;
    if (at !== from && SAVING.has(at)) continue;
    for (const next of ARCS[at] ?? []) {
      if (!prev.has(next)) {
        prev.set(next, at);
        queue.push(next);
      }
    }
  }
  if (!prev.has(to)) return null;
  const path = [to];
  while (path[0] !== from) path.unshift(prev.get(path[0]!)!);
  return path.slice(1);
}

// Records keep repeated object shapes small; the reader must not share state with the writer.
const packr = new Packr({ useRecords: false });

export class Migration {
  private current: number = MigState.RUNNING;
  private outgoing: Uint8Array | null = null;
  private outgoingAt = 0;
  private incoming: Uint8Array[] = [];
  private incomingBytes = 0;

  constructor(
    private readonly device: DeviceModel,
    private readonly log: Logger,
    /** Most bytes of migration data accepted in RESUMING (ENOSPC past it). */
    private readonly maxIncoming = Infinity,
  ) {}

  get supported(): boolean {
    return typeof this.device.saveState === 'function' && typeof this.device.loadState === 'function';
  }

  get state(): number {
    return this.current;
  }

  /**
   * SET MIG_DEVICE_STATE. EINVAL for a state we do not offer, from ERROR (reset first), or for
   * migration data that does not load (the device then stays in ERROR until reset).
   */
  setState(target: number): void {
    if (this.current === MigState.ERROR) invalid('device is in the ERROR migration state: reset it first');
    if (![MigState.RUNNING, MigState.STOP, MigState.STOP_COPY, MigState.RESUMING].includes(target as 1)) {
      invalid(`migration state ${migStateName(target)} is not supported`);
    }
    const path = migrationPath(this.current, target);
    if (!path) invalid(`no migration path from ${migStateName(this.current)} to ${migStateName(target)}`);
    for (const next of path) this.arc(next);
  }

  private arc(next: number): void {
    const from = this.current;
    if (next === MigState.STOP_COPY) {
      // pack() returns a view of msgpackr's reusable buffer: copy it before anything else packs.
      this.outgoing = Uint8Array.from(packr.pack(this.device.saveState!()));
      this.outgoingAt = 0;
    } else if (from === MigState.STOP_COPY) {
      this.outgoing = null;
    } else if (next === MigState.RESUMING) {
      this.dropIncoming();
    } else if (from === MigState.RESUMING) {
      this.finishResume();
    }
    this.current = next;
    this.log.info(`migration state ${migStateName(from)} → ${migStateName(next)}`);
  }

  private finishResume(): void {
    const data = Buffer.concat(this.incoming);
    this.dropIncoming();
    try {
      this.device.loadState!(packr.unpack(data));
    } catch (err) {
      this.current = MigState.ERROR;
      throw new VfioUserError(Errno.EINVAL, `migration data (${data.length} bytes) did not load: ${(err as Error).message}`);
    }
  }

  /** MIG_DATA_READ: the next `max` bytes of the saved state (fewer at the end). */
  read(max: number): Uint8Array {
    if (this.current !== MigState.STOP_COPY || !this.outgoing) invalid(`MIG_DATA_READ in ${migStateName(this.current)} (needs STOP_COPY)`);
    const chunk = this.outgoing.subarray(this.outgoingAt, this.outgoingAt + max);
    this.outgoingAt += chunk.byteLength;
    return chunk;
  }

  /** MIG_DATA_WRITE: appends to the state being restored. */
  write(data: Uint8Array): void {
    if (this.current !== MigState.RESUMING) invalid(`MIG_DATA_WRITE in ${migStateName(this.current)} (needs RESUMING)`);
    if (this.incomingBytes + data.byteLength > this.maxIncoming) {
      throw new VfioUserError(Errno.ENOSPC, `migration data beyond the limit of ${this.maxIncoming} bytes (${this.incomingBytes} received)`);
    }
    // A copy: data is a view of the receive buffer.
    this.incoming.push(new Uint8Array(data));
    this.incomingBytes += data.byteLength;
  }

  private dropIncoming(): void {
    this.incoming = [];
    this.incomingBytes = 0;
  }

  /** DEVICE_RESET leaves any migration state for RUNNING. */
  reset(): void {
    this.current = MigState.RUNNING;
    this.outgoing = null;
    this.dropIncoming();
  }

  /** The client that drove a migration is gone: its data is dropped and the device runs again. */
  abort(reason: string): void {
    if (this.current === MigState.RUNNING) return;
    this.log.info(`migration in ${migStateName(this.current)} abandoned (${reason}): back to RUNNING, ${this.incomingBytes} bytes of data dropped`);
    this.reset();
  }
}
