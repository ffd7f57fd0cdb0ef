/** DEVICE_SET_IRQS: wire, mask, unmask, trigger or disable interrupts (IrqTable has the rules). */
import { decodeIrqSet } from '../codec.ts';
import type { Frame } from '../framing.ts';
import { IRQ_SET_SIZE } from '../wire.ts';
import { EMPTY, type HandlerContext, type HandlerResult, requireArgsz } from './context.ts';

export function setIrqs(ctx: HandlerContext, frame: Frame): HandlerResult {
  const req = decodeIrqSet(frame.body);
  requireArgsz('SET_IRQS', req.argsz, IRQ_SET_SIZE);
  ctx.irqs.apply(req, frame.fds.splice(0), ctx.device.numIrqs);
  return { body: EMPTY };
}
