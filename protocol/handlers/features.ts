/**
 * DEVICE_FEATURE (migration features only, as the spec allows), MIG_DATA_READ/WRITE, and
 * DEVICE_RESET. Unknown or unsupported features are ENOTTY, as the kernel answers
 * VFIO_DEVICE_FEATURE; malformed requests are EINVAL.
 */
import { Errno, VfioUserError, invalid } from '../errors.ts';
import type { Frame } from '../framing.ts';
import { DeviceFeature, FEATURE_INDEX_MASK, Feature, FeatureFlags, FeatureMigState, FeatureMigration, MigData, MigrationFlags } from '../wire.ts';
import { EMPTY, type HandlerContext, type HandlerResult, requireArgsz } from './context.ts';
const ALL_OPS = FeatureFlags.GET | FeatureFlags.SET | FeatureFlags.PROBE;

/** Which operations each feature supports. */
const SUPPORTED: Record<number, number> = {
  [Feature.MIGRATION]: FeatureFlags.GET,
  [Feature.MIG_DEVICE_STATE]: FeatureFlags.GET | FeatureFlags.SET,
};

export function deviceFeature(ctx: HandlerContext, frame: Frame): HandlerResult {
  const req = DeviceFeature.decode(frame.body);
  requireArgsz('DEVICE_FEATURE', req.argsz, DeviceFeature.size);
  if (req.flags & ~(FEATURE_INDEX_MASK | ALL_OPS)) invalid(`DEVICE_FEATURE unknown flags 0x${req.flags.toString(16)}`);
  const feature = req.flags & FEATURE_INDEX_MASK;
  const ops = req.flags & (FeatureFlags.GET | FeatureFlags.SET);
  const probe = (req.flags & FeatureFlags.PROBE) !== 0;
  if (!probe && ops !== FeatureFlags.GET && ops !== FeatureFlags.SET) invalid('DEVICE_FEATURE needs exactly one of GET and SET (or PROBE)');
  const supported = ctx.migration.supported ? SUPPORTED[feature] : undefined;
  if (supported === undefined) throw new VfioUserError(Errno.ENOTTY, `device feature ${feature} is not supported`);
  if ((ops & supported) !== ops) invalid(`device feature ${feature} does not support ${ops === FeatureFlags.SET ? 'SET' : 'GET/SET'}`);
  // The spec: a probe's reply is its request.
  if (probe) return { body: DeviceFeature.encode({ argsz: req.argsz, flags: req.flags }) };

  if (feature === Feature.MIGRATION) {
    return reply(req.argsz, req.flags, FeatureMigration.encode({ flags: MigrationFlags.STOP_COPY }));
  }
  if (ops === FeatureFlags.SET) {
    // argsz covers the whole struct, as the kernel's vfio_check_feature requires.
    requireArgsz('DEVICE_FEATURE SET MIG_DEVICE_STATE', req.argsz, DeviceFeature.size + FeatureMigState.size);
    ctx.migration.setState(FeatureMigState.decode(req.data).deviceState);
    return { body: DeviceFeature.encode(req) };
  }
  return reply(req.argsz, req.flags, FeatureMigState.encode({ deviceState: ctx.migration.state, dataFd: -1 }));
}

/** A GET reply: the data appended and its length added to argsz; EINVAL if argsz cannot hold it. */
function reply(argsz: number, flags: number, data: Uint8Array): HandlerResult {
  const needed = DeviceFeature.size + data.byteLength;
  requireArgsz('DEVICE_FEATURE GET', argsz, needed);
  return { body: DeviceFeature.encode({ argsz: needed, flags, data }) };
}

export function migDataRead(ctx: HandlerContext, frame: Frame): HandlerResult {
  const req = MigData.decode(frame.body);
  requireArgsz('MIG_DATA_READ', req.argsz, MigData.size);
  if (req.data.byteLength !== 0) invalid('MIG_DATA_READ request carries data');
  const limit = ctx.negotiated().clientMaxDataXferSize;
  if (req.size > limit) invalid(`MIG_DATA_READ size ${req.size} exceeds the client's max_data_xfer_size ${limit}`);
  // A short reply means "no more data", so a reply that cannot hold `size` must be refused.
  requireArgsz('MIG_DATA_READ', req.argsz, MigData.size + req.size);
  const data = ctx.migration.read(req.size);
  return { body: MigData.encode({ argsz: MigData.size + data.byteLength, size: data.byteLength, data }) };
}

export function migDataWrite(ctx: HandlerContext, frame: Frame): HandlerResult {
  const req = MigData.decode(frame.body);
  requireArgsz('MIG_DATA_WRITE', req.argsz, MigData.size);
  if (req.size !== req.data.byteLength) invalid(`MIG_DATA_WRITE size ${req.size} but ${req.data.byteLength} data bytes`);
  ctx.migration.write(req.data);
  return { body: EMPTY };
}

export function deviceReset(ctx: HandlerContext, frame: Frame): HandlerResult {
  if (frame.body.byteLength !== 0) invalid('DEVICE_RESET carries a payload');
  ctx.log.info('device reset requested by the client');
  ctx.device.reset();
  ctx.migration.reset();
  ctx.trace.emit({ type: 'reset', source: 'client' });
  return { body: EMPTY };
}
