/** How `edu-plus trace` prints each kind of event, readable and as JSON. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { TraceEvent, TracedEvent } from '../protocol/trace-bus.ts';
import { describeEvent, formatEvent, toJson } from './format.ts';

const at = (e: TraceEvent, timeNs = 0n, seq = 1): TracedEvent => ({ ...e, seq, timeNs }) as TracedEvent;

describe('trace format', () => {
  it('names regions and irqs and prints values at their access width', () => {
    const cases: [TraceEvent, string][] = [
      [{ type: 'region-write', region: 0, offset: 0x60, size: 4, value: 4n }, 'region-write BAR0+0x60 4 bytes = 0x00000004'],
      [{ type: 'region-read', region: 7, offset: 0, size: 2, value: 0x1234n }, 'region-read config+0x0 2 bytes = 0x1234'],
      [{ type: 'region-write', region: 1, offset: 0x10, size: 3, value: Uint8Array.of(1, 2, 255) }, 'region-write BAR1+0x10 3 bytes = 0102ff'],
      [{ type: 'interrupt', index: 1, vector: 0, delivered: true }, 'interrupt MSI[0] delivered'],
      [{ type: 'interrupt', index: 0, vector: 0, delivered: false, reason: 'masked' }, 'interrupt INTx[0] not delivered (masked)'],
      [
        { type: 'dma', direction: 'to-device', guestAddress: 0x12345000n, deviceAddress: 0x40000n, length: 4096, ok: true, path: 'direct' },
        'dma to-device guest 0x12345000 → device 0x40000 4096 bytes (direct) ok',
      ],
      [
        { type: 'dma', direction: 'from-device', guestAddress: 0x1000n, deviceAddress: 0x40000n, length: 1, ok: false, error: 'not mapped' },
        'dma from-device device 0x40000 → guest 0x1000 1 byte failed: not mapped',
      ],
      [{ type: 'client', event: 'connect' }, 'client connect'],
      [{ type: 'client', event: 'disconnect', detail: 'peer closed' }, 'client disconnect (peer closed)'],
      [{ type: 'reset', source: 'client' }, 'reset by client'],
      [{ type: 'dma-map', address: 0x100000n, size: 0x1000n, withFd: true }, 'dma-map 0x100000+0x1000 (fd)'],
      [{ type: 'dma-unmap', address: 0x100000n, size: 0x1000n, count: 1 }, 'dma-unmap 0x100000+0x1000 (1 mapping removed)'],
      [{ type: 'log', level: 'warn', message: '3 events dropped' }, 'log warn: 3 events dropped'],
    ];
    for (const [event, text] of cases) assert.equal(describeEvent(at(event)), text);
  });

  it('cuts long byte values, and shows an unknown event type rather than hiding it', () => {
    const line = describeEvent(at({ type: 'region-read', region: 1, offset: 0, size: 64, value: new Uint8Array(64) }));
    assert.equal(line, `region-read BAR1+0x0 64 bytes = ${'00'.repeat(32)}…`);
    const future = { type: 'hotplug', slot: 3n, seq: 9, timeNs: 5n } as unknown as TracedEvent;
    assert.equal(describeEvent(future), 'hotplug {"type":"hotplug","slot":"3","seq":9,"timeNs":"5"}');
  });

  it('prefixes the time since the first event in milliseconds', () => {
    const e = at({ type: 'reset', source: 'device' }, 1_012_345_678n);
    assert.equal(formatEvent(e, 1_000_000_000n), '+    12.346 ms  reset by device');
  });

  it('writes JSON with bigints as decimal strings and bytes as hex', () => {
    const e = at({ type: 'region-write', region: 1, offset: 0, size: 2, value: Buffer.from([0xbe, 0xef]) }, 42n, 7);
    assert.deepEqual(JSON.parse(toJson(e)), { type: 'region-write', region: 1, offset: 0, size: 2, value: 'beef', seq: 7, timeNs: '42' });
    assert.equal(toJson({ big: 1n << 64n }), '{"big":"18446744073709551616"}');
  });
});
