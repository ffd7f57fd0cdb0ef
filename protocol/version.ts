/**
 * VERSION negotiation. QEMU speaks 0.0 only and rejects a reply with another major or a higher
 * minor, so we always answer 0.0. The client's capabilities bound what we may send it; ours
 * (kept within QEMU's accepted bounds: max_msg_fds ≤ 16, max_data_xfer_size ≤ 64 MiB,
 * max_dma_maps ≤ 65535, pgsizes a multiple of 4096) bound what it may send us.
 */
import type { VersionBody } from './codec.ts';
import { DEFAULT_MAX_DMA_MAPS } from './dma.ts';
import { Errno, VfioUserError, invalid } from './errors.ts';
import { DEFAULT_MAX_DATA_XFER, DEFAULT_MAX_MSG_FDS, PAGE_SIZE, PROTOCOL_MAJOR, PROTOCOL_MINOR } from './wire.ts';

export interface ServerLimits {
  /** Most fds we accept in one message. */
  readonly maxMsgFds: number;
  /** Most data bytes in one REGION_READ/WRITE we accept. */
  readonly maxDataXferSize: number;
  /** Most DMA mappings we hold at once (a DMA_MAP beyond it fails with ENOSPC). */
  readonly maxDmaMaps: number;
}

/**
 * The max_dma_maps we advertise is at most this: QEMU's client (hw/vfio-user/proxy.c,
 * check_max_dma) reads it as a u64 and refuses the whole VERSION reply when it exceeds its own
 * default of 65535, so the device would never attach. QEMU only stores it (as the container's
 * unsigned dma_max_mappings, read by virtio-mem's check for a warning); it never counts its
 * DMA_MAPs against it, so the table's real limit (maxDmaMaps) can be higher and a vIOMMU guest
 * can map more pages than it was told (docs/qemu-client.md, "DMA").
 */
export const ADVERTISED_MAX_DMA_MAPS_CAP = 65535;

export const DEFAULT_SERVER_LIMITS: ServerLimits = {
  maxMsgFds: 16,
  maxDataXferSize: 1 << 20,
  maxDmaMaps: DEFAULT_MAX_DMA_MAPS,
};

/** What both sides agreed; the client's numbers bound our messages to it. */
export interface Negotiated {
  readonly clientMaxMsgFds: number;
  readonly clientMaxDataXferSize: number;
  readonly clientPgsizes: number;
  readonly server: ServerLimits;
}

function nonNegativeInteger(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    invalid(`VERSION capability ${name} must be a non-negative integer, got ${JSON.stringify(value)}`);
  }
  return value;
}

/** Parses the client's VERSION. Throws EINVAL (bad JSON, wrong types) or ENOTSUP (major). */
export function negotiate(req: VersionBody, server: ServerLimits = DEFAULT_SERVER_LIMITS): { reply: VersionBody; negotiated: Negotiated } {
  if (req.major !== PROTOCOL_MAJOR) {
    throw new VfioUserError(Errno.ENOTSUP, `unsupported protocol major version ${req.major} (server speaks ${PROTOCOL_MAJOR}.${PROTOCOL_MINOR})`);
  }
  let clientMaxMsgFds = DEFAULT_MAX_MSG_FDS;
  let clientMaxDataXferSize = DEFAULT_MAX_DATA_XFER;
  let clientPgsizes = PAGE_SIZE;
  if (req.json !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(req.json);
    } catch {
      invalid('VERSION capabilities are not valid JSON');
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) invalid('VERSION JSON is not an object');
    const caps = (parsed as Record<string, unknown>).capabilities;
    if (caps !== undefined) {
      if (typeof caps !== 'object' || caps === null || Array.isArray(caps)) invalid('VERSION "capabilities" is not an object');
      const c = caps as Record<string, unknown>;
      if (c.max_msg_fds !== undefined) clientMaxMsgFds = nonNegativeInteger(c.max_msg_fds, 'max_msg_fds');
      if (c.max_data_xfer_size !== undefined) {
        clientMaxDataXferSize = nonNegativeInteger(c.max_data_xfer_size, 'max_data_xfer_size');
      }
      if (c.pgsizes !== undefined) {
        clientPgsizes = nonNegativeInteger(c.pgsizes, 'pgsizes');
        if ((clientPgsizes & PAGE_SIZE) === 0) invalid(`VERSION pgsizes ${clientPgsizes} does not include 4096`);
      }
      if (c.max_dma_maps !== undefined) nonNegativeInteger(c.max_dma_maps, 'max_dma_maps');
      if (c.write_multiple !== undefined && typeof c.write_multiple !== 'boolean') invalid('VERSION capability write_multiple must be a boolean');
      if (c.migration !== undefined) {
        if (typeof c.migration !== 'object' || c.migration === null || Array.isArray(c.migration)) invalid('VERSION capability migration must be an object');
        const m = c.migration as Record<string, unknown>;
        if (m.pgsize !== undefined && nonNegativeInteger(m.pgsize, 'migration.pgsize') % PAGE_SIZE !== 0) {
          invalid(`VERSION migration.pgsize ${String(m.pgsize)} is not a multiple of 4096`);
        }
        if (m.max_bitmap_size !== undefined) nonNegativeInteger(m.max_bitmap_size, 'migration.max_bitmap_size');
      }
    }
  }
  const json = JSON.stringify({
    capabilities: {
      max_msg_fds: server.maxMsgFds,
      max_data_xfer_size: server.maxDataXferSize,
      pgsizes: PAGE_SIZE,
      max_dma_maps: Math.min(server.maxDmaMaps, ADVERTISED_MAX_DMA_MAPS_CAP),
      // QEMU never coalesces writes to a device with mmappable regions, but others may.
      write_multiple: true,
    },
  });
  return {
    reply: { major: PROTOCOL_MAJOR, minor: PROTOCOL_MINOR, json },
    negotiated: { clientMaxMsgFds, clientMaxDataXferSize, clientPgsizes, server },
  };
}
