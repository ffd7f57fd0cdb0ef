/**
 * The device-authoring face (package export "edu-plus/device"): the PCI function layer a device
 * is declared with (pci/), and edu-plus, the device built on it.
 */
export { EduPlus, createEduPlus, eduPlusDeclaration, type EduPlusOptions, type EduResetMethod, DEFAULT_BAR1_SIZE, MAX_BAR1_SIZE } from './edu-plus.ts';
export type { DeviceFactory, DeviceHost, DeviceModel } from '../protocol/served-device.ts';
export { Gpu, createGpu, gpuDeclaration, type GpuOptions, GpuReg, DEFAULT_VRAM_SIZE, validateVramSize } from './gpu.ts';
export { PciFunction, mmapAreas, type ResetCause } from './pci/function.ts';
export { PciConfigSpace, barSizingMask } from './pci/config-space.ts';
export { PciDeclarationError, validateDeclaration } from './pci/validate.ts';
export type {
  BarDeclaration,
  BarRange,
  CapabilityDeclaration,
  MsiDeclaration,
  MsixDeclaration,
  MsixLocation,
  PciExpressDeclaration,
  PciFunctionDeclaration,
  PowerManagementDeclaration,
} from './pci/declaration.ts';
