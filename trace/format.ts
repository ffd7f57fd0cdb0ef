/**
 * Trace events as text for humans (`edu-plus trace`) and as JSON lines for scripts. Region and
 * irq indexes are named in vfio-pci numbering, which is what every device served here uses.
 */
import type { TracedEvent } from '../protocol/trace-bus.ts';

const REGION_NAMES = ['BAR0', 'BAR1', 'BAR2', 'BAR3', 'BAR4', 'BAR5', 'ROM', 'config', 'VGA'];
const IRQ_NAMES = ['INTx', 'MSI', 'MSI-X', 'ERR', 'REQ'];

export function regionName(index: number): string {
  return REGION_NAMES[index] ?? `region${index}`;
}

export function irqName(index: number): string {
  return IRQ_NAMES[index] ?? `irq${index}`;
}

function hex(v: number | bigint): string {
  return `0x${v.toString(16)}`;
}

/** Bytes as hex, cut after `max` bytes so a 1 MiB access stays one readable line. */
export function hexBytes(bytes: Uint8Array, max = bytes.length): string {
  const shown = Buffer.from(bytes.buffer, bytes.byteOffset, Math.min(bytes.length, max)).toString('hex');
  return bytes.length > max ? `${shown}…` : shown;
}

function accessValue(value: bigint | Uint8Array, size: number): string {
  if (typeof value === 'bigint') return `0x${value.toString(16).padStart(size * 2, '0')}`;
  return hexBytes(value, 32);
}

function plural(n: number | bigint, word: string): string {
  return `${n} ${word}${n === 1 || n === 1n ? '' : 's'}`;
}

/** What happened, without the time: e.g. `region-write BAR0+0x60 4 bytes = 0x00000004`. */
export function describeEvent(e: TracedEvent): string {
  switch (e.type) {
    case 'client':
      return `client ${e.event}${e.detail ? ` (${e.detail})` : ''}`;
    case 'region-read':
    case 'region-write':
      return `${e.type} ${regionName(e.region)}+${hex(e.offset)} ${plural(e.size, 'byte')} = ${accessValue(e.value, e.size)}`;
    case 'interrupt':
      return `interrupt ${irqName(e.index)}[${e.vector}] ${e.delivered ? 'delivered' : 'not delivered'}${e.reason ? ` (${e.reason})` : ''}`;
    case 'dma': {
      const path = e.path ? ` (${e.path})` : '';
      const outcome = e.ok ? 'ok' : `failed${e.error ? `: ${e.error}` : ''}`;
      const [from, to] =
        e.direction === 'to-device'
          ? [`guest ${hex(e.guestAddress)}`, `device ${hex(e.deviceAddress)}`]
          : [`device ${hex(e.deviceAddress)}`, `guest ${hex(e.guestAddress)}`];
      return `dma ${e.direction} ${from} → ${to} ${plural(e.length, 'byte')}${path} ${outcome}`;
    }
    case 'reset':
      return `reset by ${e.source}`;
    case 'dma-map':
      return `dma-map ${hex(e.address)}+${hex(e.size)}${e.withFd === undefined ? '' : e.withFd ? ' (fd)' : ' (no fd: served by messages)'}`;
    case 'dma-unmap':
      return `dma-unmap ${hex(e.address)}+${hex(e.size)}${e.count === undefined ? '' : ` (${plural(e.count, 'mapping')} removed)`}`;
    case 'log':
      return `log ${e.level}: ${e.message}`;
    default: {
      // A newer server may send types this build does not know: show them rather than hide them.
      const unknown = e as { type?: unknown };
      return `${String(unknown.type)} ${toJson(e)}`;
    }
  }
}

/** One line: time since `startNs` (the first event watched) in ms, then the description. */
export function formatEvent(e: TracedEvent, startNs: bigint): string {
  const ms = Number(e.timeNs - startNs) / 1e6;
  return `+${ms.toFixed(3).padStart(10)} ms  ${describeEvent(e)}`;
}

/** JSON with bigints as decimal strings and byte arrays as hex strings. */
export function toJson(value: unknown): string {
  // The holder's own value, since JSON.stringify hands a replacer Buffer#toJSON()'s result.
  return JSON.stringify(value, function (this: Record<string, unknown>, key: string, v: unknown) {
    const raw = this[key];
    if (raw instanceof Uint8Array) return hexBytes(raw);
    if (typeof v === 'bigint') return v.toString();
    return v;
  });
}
