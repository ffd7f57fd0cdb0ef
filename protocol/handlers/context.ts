/** What every command handler gets: the device, the per-device tables and this session's state. */
import type { DeviceModel, RegionDescription, SharedMemory } from '../served-device.ts';
import type { RegisterScratch } from './register-scratch.ts';
import type { DmaMapTable } from '../dma.ts';
import { invalid } from '../errors.ts';
import type { Frame } from '../framing.ts';
import type { IrqTable } from '../irqs.ts';
import type { Logger } from '../log.ts';
import type { Migration } from '../migration.ts';
import type { TraceBus } from '../trace-bus.ts';
import type { Negotiated, ServerLimits } from '../version.ts';

/** Keys below this are counted in an array; the rest (only a hostile client sends them) in a Map. */
const ARRAY_KEYS = 64;

/**
 * Counts by integer key (a command, a region index). The keys real traffic uses are small, and
 * counting one is an indexed add instead of a hash lookup and a store: this runs for every
 * trapped access. Iterates as [key, count] pairs for the keys counted at least once.
 */
export class Tally implements Iterable<[number, number]> {
  private readonly small: number[] = new Array<number>(ARRAY_KEYS).fill(0);
  private readonly large = new Map<number, number>();

  add(key: number): void {
    if (key >= 0 && key < ARRAY_KEYS) this.small[key]!++;
    else this.large.set(key, (this.large.get(key) ?? 0) + 1);
  }

  get(key: number): number | undefined {
    const n = key >= 0 && key < ARRAY_KEYS ? this.small[key]! : (this.large.get(key) ?? 0);
    return n === 0 ? undefined : n;
  }

  *[Symbol.iterator](): Iterator<[number, number]> {
    for (let key = 0; key < ARRAY_KEYS; key++) if (this.small[key]! > 0) yield [key, this.small[key]!];
    yield* this.large;
  }
}

/** Per-connection counters; the e2e test uses them to prove BAR1 accesses never trapped. */
export class SessionStats {
  readonly commands = new Tally();
  readonly regionReads = new Tally();
  readonly regionWrites = new Tally();
  errors = 0;
}

export interface HandlerContext {
  readonly device: DeviceModel;
  readonly irqs: IrqTable;
  readonly dma: DmaMapTable;
  readonly migration: Migration;
  readonly limits: ServerLimits;
  /** The fd that backs a shared-memory region, to pass in region info. */
  readonly memoryFd: (memory: SharedMemory) => number;
  readonly log: Logger;
  readonly trace: TraceBus;
  readonly stats: SessionStats;
  /** What VERSION agreed (handlers only run after it). */
  readonly negotiated: () => Negotiated;
  /** Reply buffers the register path reuses (access.ts). */
  readonly registers: RegisterScratch;
}

export interface HandlerResult {
  readonly body: Uint8Array;
  readonly fds?: readonly number[];
}

export type Handler = (ctx: HandlerContext, frame: Frame) => HandlerResult;

export const EMPTY = new Uint8Array(0);

/** A region the device describes with a non-zero size, or undefined. */
export function sizedRegion(ctx: HandlerContext, index: number): RegionDescription | undefined {
  const regions = ctx.device.regions;
  // A plain loop: this runs for every trapped access, and find() would allocate a closure.
  for (let i = 0; i < regions.length; i++) {
    const r = regions[i]!;
    if (r.index === index && r.size > 0n) return r;
  }
  return undefined;
}

/** argsz must cover the fixed structure: EINVAL otherwise. */
export function requireArgsz(what: string, argsz: number, min: number): void {
  if (argsz < min) invalid(`${what} argsz ${argsz} < ${min}`);
}
