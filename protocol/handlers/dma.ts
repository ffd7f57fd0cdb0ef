/** DMA_MAP and DMA_UNMAP: the client lends (and takes back) guest memory. */
import { invalid } from '../errors.ts';
import type { Frame } from '../framing.ts';
import { DmaMap, DmaUnmap } from '../wire.ts';
import { EMPTY, type HandlerContext, type HandlerResult, requireArgsz } from './context.ts';

const hex = (v: bigint) => `0x${v.toString(16)}`;

export function dmaMap(ctx: HandlerContext, frame: Frame): HandlerResult {
  const req = DmaMap.decode(frame.body);
  requireArgsz('DMA_MAP', req.argsz, DmaMap.size);
  if (frame.fds.length > 1) invalid(`DMA_MAP carries ${frame.fds.length} fds (at most 1)`);
  const fd = frame.fds.splice(0)[0];
  ctx.dma.add(req, fd);
  // A guest pinning memory through a vIOMMU sends one of these per page: nothing is built for
  // a trace nobody watches or a debug line nobody writes.
  if (ctx.trace.active) ctx.trace.emit({ type: 'dma-map', address: req.address, size: req.size, withFd: fd !== undefined });
  if (ctx.log.debugEnabled) ctx.log.debug(`DMA_MAP [${hex(req.address)}, +${hex(req.size)}) ${fd === undefined ? 'without fd' : 'fd-backed'}`);
  return { body: EMPTY };
}

export function dmaUnmap(ctx: HandlerContext, frame: Frame): HandlerResult {
  const req = DmaUnmap.decode(frame.body);
  requireArgsz('DMA_UNMAP', req.argsz, DmaUnmap.size);
  const removed = ctx.dma.remove(req);
  if (ctx.trace.active) ctx.trace.emit({ type: 'dma-unmap', address: req.address, size: req.size, count: removed });
  if (ctx.log.debugEnabled) ctx.log.debug(`DMA_UNMAP [${hex(req.address)}, +${hex(req.size)}): ${removed} mapping(s) removed`);
  // The spec: the reply is the original entry of the request (argsz as sent, like libvfio-user).
  return { body: DmaUnmap.encode(req) };
}
