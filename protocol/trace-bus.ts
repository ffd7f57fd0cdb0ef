/**
 * What the server and the device saw, as events, for the control/trace channel (trace/) and
 * for tests. Emitting costs one boolean check while nobody listens, so the hot path (every
 * trapped access) stays cheap.
 *
 * Who owns what: the event types below are the emitters' vocabulary, so they live with the
 * emitters (protocol/, and devices through DeviceHost.trace), beside the bus they travel on.
 * The trace channel in trace/ is one consumer among others (tests subscribe directly): it owns
 * how events leave the process — the msgpack wire format, the subscribe filters, the text
 * formatting — and the worker pool behind its checksum request. Putting the types in trace/
 * instead would make protocol/ import trace/, which imports protocol/ (the server it
 * watches): two folders that could no longer be read or reused apart.
 */

export type TraceEvent =
  | { type: 'client'; event: 'connect' | 'disconnect' | 'refused'; detail?: string }
  | { type: 'region-read' | 'region-write'; region: number; offset: number; size: number; value: bigint | Uint8Array }
  | { type: 'interrupt'; index: number; vector: number; delivered: boolean; reason?: string }
  | {
      type: 'dma';
      direction: 'to-device' | 'from-device';
      guestAddress: bigint;
      deviceAddress: bigint;
      length: number;
      ok: boolean;
      path?: 'direct' | 'messages';
      error?: string;
    }
  | { type: 'reset'; source: 'client' | 'device' | 'flr' | 'pm' }
  | { type: 'dma-map' | 'dma-unmap'; address: bigint; size: bigint; withFd?: boolean; count?: number }
  | { type: 'log'; level: 'warn' | 'error' | 'info'; message: string };

/** An event as delivered: numbered, and timed in nanoseconds since the bus started. */
export type TracedEvent = TraceEvent & { readonly seq: number; readonly timeNs: bigint };

export type TraceListener = (event: TracedEvent) => void;

export class TraceBus {
  private readonly listeners = new Set<TraceListener>();
  private readonly started = process.hrtime.bigint();
  private seq = 0;

  /** True when someone listens: check before building an event on a hot path. */
  get active(): boolean {
    return this.listeners.size > 0;
  }

  emit(event: TraceEvent): void {
    if (this.listeners.size === 0) return;
    const traced = { ...event, seq: ++this.seq, timeNs: process.hrtime.bigint() - this.started } as TracedEvent;
    for (const l of this.listeners) {
      try {
        l(traced);
      } catch {
        // A broken listener must not break the device; the trace server drops its client.
      }
    }
  }

  /** Adds a listener; returns the function that removes it. */
  subscribe(listener: TraceListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
