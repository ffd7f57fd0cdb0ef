/**
 * The device-authoring face (package export "edu-plus/device"): the edu-plus model, and the
 * config-space builder a device declares its identity, BARs and capabilities with.
 */
export { EduPlus, createEduPlus, type EduPlusOptions, DEFAULT_BAR1_SIZE, MAX_BAR1_SIZE } from './edu-plus.ts';
export { PciConfigSpace, msiCapability64, type BarSpec, type CapabilitySpec, type ConfigSpaceSpec } from './config-space.ts';
