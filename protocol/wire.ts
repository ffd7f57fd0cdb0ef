/**
 * vfio-user wire constants: command numbers, header flags, and the vfio structures the
 * commands carry. Sources: QEMU docs/interop/vfio-user.rst and linux/vfio.h; where QEMU's client
 * differs from the spec, docs/qemu-client.md says how. Everything is little-endian (host order on
 * the hosts we support).
 */

export const HEADER_SIZE = 16;

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

// struct vfio_device_info
export const DEVICE_INFO_SIZE = 16;
export const DeviceFlags = { RESET: 1 << 0, PCI: 1 << 1 } as const;

// struct vfio_region_info (argsz, flags, index, cap_offset, size u64, offset u64)
export const REGION_INFO_SIZE = 32;
export const RegionFlags = { READ: 1 << 0, WRITE: 1 << 1, MMAP: 1 << 2, CAPS: 1 << 3 } as const;

/** Region capability header: id u16, version u16, next u32. */
export const CAP_HEADER_SIZE = 8;
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

// struct vfio_irq_info (argsz, flags, index, count)
export const IRQ_INFO_SIZE = 16;
export const IrqInfoFlags = { EVENTFD: 1 << 0, MASKABLE: 1 << 1, AUTOMASKED: 1 << 2, NORESIZE: 1 << 3 } as const;

/** vfio-pci interrupt numbering. */
export const PciIrq = { INTX: 0, MSI: 1, MSIX: 2, ERR: 3, REQ: 4 } as const;
export const PCI_NUM_IRQS = 5;

// struct vfio_irq_set (argsz, flags, index, start, count) then data
export const IRQ_SET_SIZE = 20;
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

// struct vfio_user_dma_map (argsz, flags, offset u64, address u64, size u64)
export const DMA_MAP_SIZE = 32;
export const DmaMapFlags = { READ: 1 << 0, WRITE: 1 << 1 } as const;

// struct vfio_user_dma_unmap (argsz, flags, address u64, size u64)
export const DMA_UNMAP_SIZE = 24;
export const DmaUnmapFlags = { GET_DIRTY_BITMAP: 1 << 0, ALL: 1 << 1 } as const;

/** REGION_READ / REGION_WRITE: offset u64, region u32, count u32, then data. */
export const REGION_ACCESS_SIZE = 16;

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
