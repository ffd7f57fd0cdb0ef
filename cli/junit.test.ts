/** `vm --junit`: the verdict as JUnit XML, read back with a small independent parser. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { junitXml, xmlEscape } from './junit.ts';
import { TEST_BEGIN, TEST_END, judge } from './vm-report.ts';

const program = (name: string, body: string[], status: number): string[] => [`${TEST_BEGIN} ${name}`, ...body, `${TEST_END} ${name} ${status}`];

/** Every element with its attributes, in document order (enough for this flat format). */
function elements(xml: string): { tag: string; attrs: Record<string, string> }[] {
  const out: { tag: string; attrs: Record<string, string> }[] = [];
  for (const m of xml.matchAll(/<([a-z-]+)((?:\s+[a-z]+="[^"]*")*)\s*\/?>/g)) {
    const attrs: Record<string, string> = {};
    for (const a of m[2]!.matchAll(/([a-z]+)="([^"]*)"/g)) attrs[a[1]!] = a[2]!;
    out.push({ tag: m[1]!, attrs });
  }
  return out;
}

describe('junit', () => {
  it('one testsuite per program, one testcase per case, failure and skipped with the reason', () => {
    const v = judge({
      lines: [
        ...program('edu_plus_basic', ['KTAP version 1', '1..3', 'ok 1 bar0_id', 'not ok 2 dma_copy # expected 0x12 got 0x0', 'ok 3 msi # SKIP no MSI <here> & "there"'], 1),
        ...program('mine', ['hi'], 4),
        ...program('crashy', ['KTAP version 1', '1..2', 'ok 1 first'], 139),
      ],
      tests: ['edu_plus_basic', 'mine', 'crashy', 'never'],
      exitStatusJudged: ['mine'],
      timedOut: true,
      timeoutSeconds: 9,
      initSeen: true,
      doneSeen: false,
    });
    const xml = junitXml(v);
    const els = elements(xml);
    const suites = els.filter((e) => e.tag === 'testsuite');
    assert.deepEqual(suites.map((s) => [s.attrs.name, s.attrs.tests, s.attrs.failures, s.attrs.skipped]), [
      ['edu_plus_basic', '3', '1', '1'],
      ['mine', '1', '0', '1'],
      ['crashy', '2', '1', '0'],
      ['never', '1', '1', '0'],
      ['vm', '1', '1', '0'],
    ]);
    const root = els.find((e) => e.tag === 'testsuites')!;
    assert.deepEqual([root.attrs.tests, root.attrs.failures, root.attrs.skipped], ['8', '4', '2']);
    assert.deepEqual(els.filter((e) => e.tag === 'testcase').map((e) => `${e.attrs.classname}/${e.attrs.name}`), [
      'edu_plus_basic/bar0_id', 'edu_plus_basic/dma_copy', 'edu_plus_basic/msi', 'mine/mine', 'crashy/first', 'crashy/(program)', 'never/(program)', 'vm/run',
    ]);
    const reasons = els.filter((e) => e.tag === 'failure' || e.tag === 'skipped').map((e) => `${e.tag}: ${e.attrs.message}`);
    assert.deepEqual(reasons, [
      'failure: expected 0x12 got 0x0',
      'skipped: no MSI &lt;here&gt; &amp; &quot;there&quot;',
      'skipped: exit status 4 (kselftest&apos;s skip)',
      'failure: 1 of 2 planned results missing; exited with status 139 (killed by signal 11)',
      'failure: did not run (the guest stopped before it)',
      'failure: timed out after 9 s (raise --timeout, or see --verbose)',
    ]);
    assert.match(xml, /<system-out>KTAP version 1\n1..3\nok 1 bar0_id\n/);
  });

  it('escapes markup and drops characters XML cannot hold', () => {
    assert.equal(xmlEscape('a<b>&"c\'\x01\x1b'), 'a&lt;b&gt;&amp;&quot;c&apos;');
  });
});
