/**
 * When to wait for a client's next request instead of going back to the event loop.
 *
 * A trapped guest access is one request and one reply, and the guest's next access usually
 * follows within tens of microseconds. Going back to the event loop costs an epoll_wait and a
 * non-blocking recvmsg per request: on a virtual machine, where every system call is dear, that
 * is half again the two calls a blocking C server makes (recvmsg, sendmsg). So after replying,
 * the channel may sleep until the request arrives: in an io_uring that also sends the reply
 * (native/request-ring.ts: one call per request, its runs of waits bounded by one timeout of a
 * slice), or in recvmsg with a receive timeout (SO_RCVTIMEO) of the window. Either burns no CPU
 * while it waits (a client on the same CPU runs meanwhile). Busy-polling would burn the CPU the
 * client needs when both share one.
 *
 * The wait blocks the whole event loop, so it is bounded three ways:
 * - the window (`windowMicros`) caps each wait in recvmsg (in the ring, the slice caps a run);
 * - a wait that times out was wasted: the next 1, 2, 4 … 64 bursts do not wait, and one that
 *   is answered resets that (a client that went quiet costs one window, then almost nothing);
 * - after `sliceMicros` of back-to-back waiting the channel goes back to the event loop once,
 *   and while another channel of this process had a request within the last slice nobody waits,
 *   so timers and other clients are delayed by one slice at most.
 * A client in the server's own process (a test, a tool) could never answer in time: the channel
 * does not wait for it at all (its peer's pid, SO_PEERCRED, is ours).
 */

/**
 * The serve command's window: several times the gap between a TCG guest's back-to-back trapped
 * accesses (tens of µs), short enough that a wasted wait delays the event loop unnoticeably.
 */
export const DEFAULT_WAIT_MICROS = 200;

/** Whole-process state: which channel saw a request last, and when (performance.now() ms). */
const lastRequest = { owner: null as object | null, atMs: -Infinity };

/** Most bursts skipped after consecutive wasted waits. */
const MAX_SKIP = 64;

export class RequestWait {
  private readonly sliceMs: number;
  /** Bursts still to skip, and the skip that the next wasted wait doubles. */
  private skipLeft = 0;
  private skipNext = 1;
  /** When this run of waiting started (reset whenever the channel returns to the loop). */
  private sliceStartMs = -1;
  /** Waits answered and wasted, for stats and tests. */
  hits = 0;
  misses = 0;

  constructor(
    readonly windowMicros: number,
    readonly sliceMicros = 1000,
  ) {
    this.sliceMs = sliceMicros / 1000;
  }

  get enabled(): boolean {
    return this.windowMicros > 0;
  }

  /** A request arrived on the channel `owner` at `nowMs`. */
  static noteRequest(owner: object, nowMs: number): void {
    lastRequest.owner = owner;
    lastRequest.atMs = nowMs;
  }

  /** After a burst is answered: wait for the next request now? */
  shouldWait(owner: object, nowMs: number): boolean {
    if (!this.enabled) return false;
    if (this.skipLeft > 0) {
      this.skipLeft--;
      return false;
    }
    if (lastRequest.owner !== owner && nowMs - lastRequest.atMs < this.sliceMs) return false;
    if (this.sliceStartMs < 0) this.sliceStartMs = nowMs;
    else if (nowMs - this.sliceStartMs >= this.sliceMs) {
      this.sliceStartMs = -1;
      return false;
    }
    return true;
  }

  /** The wait was answered by a request. */
  answered(): void {
    this.hits++;
    this.skipNext = 1;
  }

  /** The wait timed out. */
  wasted(): void {
    this.misses++;
    this.skipLeft = this.skipNext;
    this.skipNext = Math.min(this.skipNext * 2, MAX_SKIP);
    this.sliceStartMs = -1;
  }

  /** The channel went back to the event loop. */
  yielded(): void {
    this.sliceStartMs = -1;
  }
}
