/**
 * What one client may make the server hold on its behalf. vfio-user has no flow control of its
 * own: a client that sends requests without reading the replies, passes fds it never lets go
 * of, or connects and says nothing would otherwise make the server buffer, dup and wait
 * without end. Each bound here turns such a client into a slow or closed one, never into a
 * server that runs out of memory, descriptors or attention for everyone else.
 */
export interface ClientLimits {
  /**
   * Unsent output a client may have queued (replies and our DMA requests to it): past either
   * bound the server stops reading its requests until the queue has drained.
   */
  readonly maxQueuedBytes: number;
  readonly maxQueuedMessages: number;
  /**
   * Descriptors held by queued replies (a GET_REGION_INFO reply carries a dup of BAR1's memfd).
   * Past it, further requests wait unread in the socket until those replies have gone out.
   */
  readonly maxQueuedFds: number;
  /**
   * How long a peer that keeps us waiting is given: a client that sends no VERSION, a refused
   * client that sends nothing, a client that half-closed but does not read its last replies.
   */
  readonly idleTimeoutMs: number;
  /** Migration data a client may send in RESUMING (edu-plus's state is a few hundred bytes). */
  readonly maxMigrationBytes: number;
  /** Refused connections (answered EBUSY) kept open at once; more are closed at once. */
  readonly maxRefusing: number;
}

export const DEFAULT_CLIENT_LIMITS: ClientLimits = {
  maxQueuedBytes: 8 << 20,
  maxQueuedMessages: 1024,
  maxQueuedFds: 16,
  idleTimeoutMs: 5000,
  maxMigrationBytes: 1 << 20,
  maxRefusing: 8,
};
