/** The SVG chart builder: well-formed output, bars that scale with their values, goal markers. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildChart, escapeXml, formatValue, meetsGoal } from './chart.ts';

/** Checks that every tag opens and closes in order (enough to catch a broken document). */
function assertBalanced(svg: string): void {
  const stack: string[] = [];
  for (const m of svg.matchAll(/<(\/?)([a-zA-Z][\w:-]*)[^>]*?(\/?)>/g)) {
    const [, closing, name, selfClosing] = m;
    if (selfClosing) continue;
    if (closing) assert.equal(stack.pop(), name, `</${name}> closes the wrong element`);
    else stack.push(name!);
  }
  assert.deepEqual(stack, [], 'unclosed elements');
}

const widths = (svg: string) => [...svg.matchAll(/<rect class="bar"[^>]*width="([\d.]+)"/g)].map((m) => Number(m[1]));
const goalXs = (svg: string) => [...svg.matchAll(/<line class="goal" x1="([\d.]+)"/g)].map((m) => Number(m[1]));

describe('buildChart', () => {
  const svg = buildChart(
    [
      { suite: 'host', headline: [
        { label: 'same-cpu TS ÷ C', value: 1.2, unit: 'ratio', goal: 1.3, goalKind: 'max' },
        { label: 'split-cpu TS ÷ C', value: 2.4, unit: 'ratio', goal: 1.3, goalKind: 'max' },
      ] },
      { suite: 'scale', headline: [{ label: 'idle RSS <per device> & "x"', value: 60, unit: 'MiB', goal: 15, goalKind: 'max' }] },
      { suite: 'guest-mmio', headline: [{ label: 'BAR0 read ÷ QEMU edu', value: 3, unit: 'ratio', goalKind: 'max' }] },
      { suite: 'empty', headline: [] },
    ],
    { title: 'test', subtitle: 'a & b' },
  );

  it('is a well-formed SVG document with escaped text', () => {
    assert.match(svg, /^<\?xml version="1.0" encoding="UTF-8"\?>\n<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    assert.ok(svg.trimEnd().endsWith('</svg>'));
    assertBalanced(svg);
    assert.ok(svg.includes('idle RSS &lt;per device&gt; &amp; &quot;x&quot;'));
    assert.ok(svg.includes('a &amp; b'));
    assert.ok(!/&(?!amp;|lt;|gt;|quot;|apos;)/.test(svg), 'no bare ampersand');
  });

  it('draws one bar per headline figure, scaled by value within its group', () => {
    const w = widths(svg);
    assert.equal(w.length, 4);
    assert.ok(Math.abs(w[1]! / w[0]! - 2) < 0.02, `2.4 is twice 1.2: ${w[0]} vs ${w[1]}`);
    assert.ok(svg.includes('data-suite="host"') && svg.includes('data-suite="scale"') && !svg.includes('data-suite="empty"'));
  });

  it('marks goals, colours by whether they are met, and leaves report-only figures without one', () => {
    const g = goalXs(svg);
    assert.equal(g.length, 3, 'host has two goals, scale one, guest-mmio none');
    assert.equal(g[0], g[1], 'the same goal sits at the same x within a group');
    // In the host group the goal (1.3) lies between the bars' ends.
    const barStart = Number(/<rect class="bar" x="([\d.]+)"/.exec(svg)![1]);
    const w = widths(svg);
    assert.ok(barStart + w[0]! < g[0]! && g[0]! < barStart + w[1]!);
    assert.match(svg, /fill="#2e7d32" data-value="1.2"/);
    assert.match(svg, /fill="#c62828" data-value="2.4"/);
    assert.match(svg, /fill="#607d8b" data-value="3"/);
    assert.ok(svg.includes('report only'));
  });

  it('copes with no figures at all and with non-finite values', () => {
    const none = buildChart([]);
    assertBalanced(none);
    assert.ok(none.includes('no headline figures'));
    const nan = buildChart([{ suite: 'x', headline: [{ label: 'broken', value: NaN, unit: 's', goal: 10, goalKind: 'max' }] }]);
    assertBalanced(nan);
    assert.deepEqual(widths(nan), [0]);
  });
});

describe('chart helpers', () => {
  it('formats values with their units and judges goals both ways', () => {
    assert.equal(formatValue(1.234, 'ratio'), '1.23×');
    assert.equal(formatValue(8.31, 's'), '8.31 s');
    assert.equal(formatValue(61.24, 'MiB'), '61.2 MiB');
    assert.equal(formatValue(Infinity, 's'), 'n/a');
    assert.equal(meetsGoal({ label: '', value: 0.95, unit: 'ratio', goal: 0.9, goalKind: 'min' }), true);
    assert.equal(meetsGoal({ label: '', value: 0.5, unit: 'ratio', goal: 0.8, goalKind: 'min' }), false);
    assert.equal(meetsGoal({ label: '', value: 1, unit: 'ratio', goalKind: 'max' }), null);
    assert.equal(escapeXml(`<a href="x">'&'</a>`), '&lt;a href=&quot;x&quot;&gt;&apos;&amp;&apos;&lt;/a&gt;');
  });
});
