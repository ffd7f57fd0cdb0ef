/** DEVICE_SET_IRQS: wire, mask, unmask, trigger or disable interrupts (IrqTable has the rules). */
import type { Frame } from '../framing.ts';
import { IrqSet } from '../wire.ts';
import { EMPTY, type HandlerContext, type HandlerResult, requireArgsz } from './context.ts';

export function setIrqs(ctx: HandlerContext, frame: Frame): HandlerResult {
  const req = IrqSet.decode(frame.body);
  requireArgsz('SET_IRQS', req.argsz, IrqSet.size);
  ctx.irqs.apply(req, frame.fds.splice(0), ctx.device.numIrqs);
  return { body: EMPTY };
}
