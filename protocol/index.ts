/**
 * The public face of the vfio-user side (package export "edu-plus"): serve a device model over
 * a Unix socket, or talk to any vfio-user server as a client. Everything else in protocol/ is
 * internal and may change. The sources are TypeScript: run them with tsx (or another loader
 * that strips types); the types come with them.
 */
export { VfioUserServer, type ServerOptions } from './server.ts';
export { VfioUserClient, type Reply } from './client.ts';
export {
  DmaFault,
  type DeviceFactory,
  type DeviceHost,
  type DeviceModel,
  type DmaAccess,
  type InterruptLines,
  type IrqDescription,
  type RegionDescription,
  type SharedMemory,
} from './served-device.ts';
export { Errno, VfioUserError } from './errors.ts';
export { createLogger, silentLogger, type LogLevel, type Logger } from './log.ts';
export type { TraceEvent, TracedEvent, TraceListener } from './trace-bus.ts';
