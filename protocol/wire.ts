/**
 * vfio-user wire constants: command numbers, header flags, and the vfio structures the
 * commands carry, each described once as a table (struct.ts) with its flags beside it: size,
 * offsets, decoder and encoder all come from that table, for the server and the client alike.
 * Sources: QEMU docs/interop/vfio-user.rst and linux/vfio.h; where QEMU's client differs from
 * the spec, docs/qemu-client.md says how. Everything is little-endian (host order on the hosts
 * we support).
 */
import { defineStruct, type MessageOf } from './struct.ts';

/**
 * The header every message starts with. `size` counts the whole message, header included;
 * `error` is a positive errno in an error reply. header.ts has its fast path (every message).
 */
export const MessageHeader = defineStruct('vfio_user_header', { id: 'u16', command: 'u16', size: 'u32', flags: 'u32', error: 'u32' });
export const HEADER_SIZE = MessageHeader.size;

/** Command numbers (spec "Commands"); 14 is retired. */
export const Command = {
  VERSION: 1,
  DMA_MAP: 2,
  DMA_UNMAP: 3,
  DEVICE_GET_INFO: 4,
  DEVICE_GET_REGION_INFO: 5,
  DEVICE_GET_REGION_IO_FDS: 6,
  DEVICE_GET_IRQ_INFO: 7,
  DEVICE_SET_IRQS: 8,
  REGION_READ: 9,
  REGION_WRITE: 10,
  DMA_READ: 11,
  DMA_WRITE: 12,
  DEVICE_RESET: 13,
  REGION_WRITE_MULTI: 15,
  DEVICE_FEATURE: 16,
  MIG_DATA_READ: 17,
  MIG_DATA_WRITE: 18,
} as const;
export type CommandNumber = (typeof Command)[keyof typeof Command];

const commandNames = new Map<number, string>(Object.entries(Command).map(([name, n]) => [n, name]));
export function commandName(n: number): string {
  return commandNames.get(n) ?? `command ${n}`;
}

/** Header flags: the low nibble is the message type. */
export const MessageType = { COMMAND: 0, REPLY: 1 } as const;
export const TYPE_MASK = 0xf;
export const FLAG_NO_REPLY = 0x10;
export const FLAG_ERROR = 0x20;
export const KNOWN_HEADER_FLAGS = TYPE_MASK | FLAG_NO_REPLY | FLAG_ERROR;

/** The only protocol version QEMU speaks; it rejects another major or a higher minor. */
export const PROTOCOL_MAJOR = 0;
export const PROTOCOL_MINOR = 0;

/** Spec defaults when VERSION carries no capability (used until negotiation says otherwise). */
export const DEFAULT_MAX_MSG_FDS = 1;
export const DEFAULT_MAX_DATA_XFER = 1 << 20;
export const PAGE_SIZE = 4096;

/** VERSION's fixed part; a NUL-terminated JSON text of capabilities may follow (codec.ts). */
export const VersionHead = defineStruct('vfio_user_version', { major: 'u16', minor: 'u16' }, 'json');

export const DeviceInfo = defineStruct('vfio_device_info', { argsz: 'u32', flags: 'u32', numRegions: 'u32', numIrqs: 'u32' });
export type DeviceInfo = MessageOf<typeof DeviceInfo>;
export const DeviceFlags = { RESET: 1 << 0, PCI: 1 << 1 } as const;

/** The capability chain (reply only) follows; cap_offset counts from the struct's start. */
export const RegionInfo = defineStruct(
  'vfio_region_info',
  { argsz: 'u32', flags: 'u32', index: 'u32', capOffset: 'u32', size: 'u64', offset: 'u64' },
  'caps',
);
export type RegionInfo = MessageOf<typeof RegionInfo>;
export const RegionFlags = { READ: 1 << 0, WRITE: 1 << 1, MMAP: 1 << 2, CAPS: 1 << 3 } as const;

/** Every region capability starts with this; `next` is the offset of the next one, 0 at the end. */
export const CapHeader = defineStruct('vfio_info_cap_header', { id: 'u16', version: 'u16', next: 'u32' });
/** VFIO_REGION_INFO_CAP_SPARSE_MMAP: the header, then nr_areas SparseMmapArea entries. */
export const SparseMmapCap = defineStruct(
  'vfio_region_info_cap_sparse_mmap',
  { id: 'u16', version: 'u16', next: 'u32', nrAreas: 'u32', reserved: 'u32' },
  'areas',
);
export const SparseMmapArea = defineStruct('vfio_region_sparse_mmap_area', { offset: 'u64', size: 'u64' });
export type SparseMmapArea = MessageOf<typeof SparseMmapArea>;
export const CAP_SPARSE_MMAP = { id: 1, version: 1 } as const;

/** vfio-pci region numbering. */
export const PciRegion = {
  BAR0: 0,
  BAR1: 1,
  BAR2: 2,
  BAR3: 3,
  BAR4: 4,
  BAR5: 5,
  ROM: 6,
  CONFIG: 7,
  VGA: 8,
} as const;
export const PCI_NUM_REGIONS = 9;

export const IrqInfo = defineStruct('vfio_irq_info', { argsz: 'u32', flags: 'u32', index: 'u32', count: 'u32' });
export type IrqInfo = MessageOf<typeof IrqInfo>;
export const IrqInfoFlags = { EVENTFD: 1 << 0, MASKABLE: 1 << 1, AUTOMASKED: 1 << 2, NORESIZE: 1 << 3 } as const;

/** vfio-pci interrupt numbering. */
export const PciIrq = { INTX: 0, MSI: 1, MSIX: 2, ERR: 3, REQ: 4 } as const;
export const PCI_NUM_IRQS = 5;

/** `data`: one u8 per vector for DATA_BOOL; nothing for NONE or EVENTFD (the fds come alongside). */
export const IrqSet = defineStruct('vfio_irq_set', { argsz: 'u32', flags: 'u32', index: 'u32', start: 'u32', count: 'u32' }, 'data');
export type IrqSet = MessageOf<typeof IrqSet>;
export const IrqSetFlags = {
  DATA_NONE: 1 << 0,
  DATA_BOOL: 1 << 1,
  DATA_EVENTFD: 1 << 2,
  ACTION_MASK: 1 << 3,
  ACTION_UNMASK: 1 << 4,
  ACTION_TRIGGER: 1 << 5,
} as const;
export const IRQ_SET_DATA_MASK = IrqSetFlags.DATA_NONE | IrqSetFlags.DATA_BOOL | IrqSetFlags.DATA_EVENTFD;
export const IRQ_SET_ACTION_MASK = IrqSetFlags.ACTION_MASK | IrqSetFlags.ACTION_UNMASK | IrqSetFlags.ACTION_TRIGGER;

/** `offset`: where the mapping starts inside the fd that came with the message. */
export const DmaMap = defineStruct('vfio_user_dma_map', { argsz: 'u32', flags: 'u32', offset: 'u64', address: 'u64', size: 'u64' });
export type DmaMap = MessageOf<typeof DmaMap>;
export const DmaMapFlags = { READ: 1 << 0, WRITE: 1 << 1 } as const;

export const DmaUnmap = defineStruct('vfio_user_dma_unmap', { argsz: 'u32', flags: 'u32', address: 'u64', size: 'u64' });
export type DmaUnmap = MessageOf<typeof DmaUnmap>;
export const DmaUnmapFlags = { GET_DIRTY_BITMAP: 1 << 0, ALL: 1 << 1 } as const;

/**
 * REGION_READ / REGION_WRITE, both directions. `data`: the bytes of a write request or a read
 * reply; empty in a read request and a write reply. Decoded once per trapped guest access, so
 * codec.ts has a fast path for it, held equal to this table by codec.test.ts.
 */
export const RegionAccess = defineStruct('vfio_user_region_access', { offset: 'u64', region: 'u32', count: 'u32' }, 'data');
export type RegionAccess = MessageOf<typeof RegionAccess>;

/** DEVICE_GET_REGION_IO_FDS (request and the reply's fixed part; we never list sub-regions). */
export const RegionIoFds = defineStruct('vfio_user_region_io_fds_request', { argsz: 'u32', flags: 'u32', index: 'u32', count: 'u32' });
export type RegionIoFds = MessageOf<typeof RegionIoFds>;

/** REGION_WRITE_MULTI: wr_cnt, then that many entries (the reply is wr_cnt alone). */
export const WriteMultiHead = defineStruct('vfio_user_write_multi', { wrCnt: 'u64' }, 'entries');
/** One coalesced write: at most 8 data bytes, carried in a fixed 8-byte field. */
export const WriteMultiEntry = defineStruct('vfio_user_write_multi_data', { offset: 'u64', region: 'u32', count: 'u32', data: 'u8[8]' });

/**
 * DMA_READ / DMA_WRITE (server → client), as QEMU 11.1 reads and writes them, measured against
 * a real guest: offset u64, count (u32 in QEMU's struct, then 4 bytes of alignment padding: a
 * u64 in effect), data from payload offset 16 — the spec's `address u64, count u64, data`.
 * QEMU requires the whole message to be at least its 32-byte struct (+count for a write). (An
 * older reading of QEMU's source put data at offset 12; the data the guest saw proved it wrong.)
 */
export const DmaTransferHead = defineStruct('vfio_user_dma_rw', { address: 'u64', count: 'u64' }, 'data');

/** DEVICE_FEATURE: `flags` holds the feature index (bits 0–15) and GET/SET/PROBE above. */
export const DeviceFeature = defineStruct('vfio_device_feature', { argsz: 'u32', flags: 'u32' }, 'data');
export type DeviceFeature = MessageOf<typeof DeviceFeature>;
/** The data of a GET of Feature.MIGRATION: the MigrationFlags offered. */
export const FeatureMigration = defineStruct('vfio_device_feature_migration', { flags: 'u64' });
/** The data of Feature.MIG_DEVICE_STATE: data_fd is unused over vfio-user (-1). */
export const FeatureMigState = defineStruct('vfio_device_feature_mig_state', { deviceState: 'u32', dataFd: 'i32' });

/** MIG_DATA_READ / MIG_DATA_WRITE: `data` holds `size` bytes of migration data. */
export const MigData = defineStruct('vfio_user_mig_data', { argsz: 'u32', size: 'u32' }, 'data');
export type MigData = MessageOf<typeof MigData>;

/** DEVICE_FEATURE flags (linux/vfio.h): feature index in the low 16 bits. */
export const FEATURE_INDEX_MASK = 0xffff;
export const FeatureFlags = { GET: 1 << 16, SET: 1 << 17, PROBE: 1 << 18 } as const;
export const Feature = {
  MIGRATION: 1,
  MIG_DEVICE_STATE: 2,
  DMA_LOGGING_START: 6,
  DMA_LOGGING_STOP: 7,
  DMA_LOGGING_REPORT: 8,
} as const;
export const MigrationFlags = { STOP_COPY: 1n << 0n, P2P: 1n << 1n, PRE_COPY: 1n << 2n } as const;
/** enum vfio_device_mig_state */
export const MigState = {
  ERROR: 0,
  STOP: 1,
  RUNNING: 2,
  STOP_COPY: 3,
  RESUMING: 4,
  RUNNING_P2P: 5,
  PRE_COPY: 6,
  PRE_COPY_P2P: 7,
} as const;
