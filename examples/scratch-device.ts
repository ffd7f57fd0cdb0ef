/**
 * A complete vfio-user PCI device in one file: the example of the README's "Write your own
 * device". It is served with `edu-plus serve --device examples/scratch-device.ts` and looked at
 * with `edu-plus inspect SOCKET`; tests/conformance/example-device.test.ts keeps it working.
 *
 * BAR0 (4 KiB, trapped: every access reaches barRead/barWrite):
 *   0x00  ID        read-only, 0x5c7a0001
 *   0x04  SCRATCH   read/write, 0 after any reset
 *   0x08  DOORBELL  write: counts the ring and raises the interrupt; read: rings so far
 *   0x0c  ACK       write: releases INTx (MSI needs no acknowledgement)
 * BAR2 (1 MiB, 64-bit prefetchable RAM): shared memory the client maps; the device never sees
 * its accesses, and it keeps its contents across resets.
 */
import { type DeviceHost, PciFunction, type PciFunctionDeclaration, type ResetCause } from '../device/index.ts';

export const SCRATCH_ID = 0x5c7a0001;

export const scratchDeclaration: PciFunctionDeclaration = {
  name: 'scratch',
  // 1234 is the vendor id of QEMU's own test devices (edu is 11e8); pick any id no driver knows.
  vendorId: 0x1234,
  deviceId: 0x5c7a,
  revision: 1,
  classCode: 0xff0000, // "unassigned class": no guest driver claims it
  subsystemVendorId: 0x1af4,
  subsystemId: 0x1100,
  interruptPin: 1,
  bars: [
    { index: 0, size: 4096n, backing: 'trapped' },
    { index: 2, size: 1n << 20n, is64: true, prefetchable: true, backing: 'memory' },
  ],
  // One MSI vector and FLR, so a guest's vfio-pci can reset the function.
  capabilities: [
    { kind: 'msi', vectors: 1, address64: true },
    { kind: 'pcie', flr: true },
  ],
};

export class ScratchDevice extends PciFunction {
  scratch = 0;
  rings = 0;

  constructor(host: DeviceHost) {
    super(host, scratchDeclaration);
  }

  protected barRead(_bar: number, offset: number): bigint {
    if (offset === 0x00) return BigInt(SCRATCH_ID);
    if (offset === 0x04) return BigInt(this.scratch);
    if (offset === 0x08) return BigInt(this.rings);
    return 0n; // unimplemented registers read zero
  }

  protected barWrite(_bar: number, offset: number, _size: number, value: bigint): void {
    if (offset === 0x04) {
      this.scratch = Number(value & 0xffff_ffffn);
    } else if (offset === 0x08) {
      this.rings++;
      this.host.log.debug(`doorbell ${this.rings}: 0x${value.toString(16)}`);
      this.raiseInterrupt(); // MSI if the guest enabled it, else INTx until ACK
    } else if (offset === 0x0c) {
      this.setIntx(false);
    } else {
      this.host.log.warn(`guest error: write to read-only or unknown register 0x${offset.toString(16)}`);
    }
  }

  protected resetRegisters(_cause: ResetCause): void {
    this.scratch = 0;
    this.rings = 0;
  }

  /** What `edu-plus trace --registers` shows. */
  registerState() {
    return { scratch: this.scratch, rings: this.rings, intx: this.intxAsserted };
  }
}

/** What `serve --device FILE` loads: a module whose default export builds the device. */
export default function createScratchDevice(host: DeviceHost): ScratchDevice {
  return new ScratchDevice(host);
}
