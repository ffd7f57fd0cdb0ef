import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseKtap, summariseKtap } from './ktap.ts';

test('parses plan, passes, failures with reasons and skips', () => {
  const report = parseKtap([
    'KTAP version 1',
    '1..4',
    'ok 1 bar0_read',
    'not ok 2 dmabuf_export # errno 22',
    'ok 3 dmabuf_mmap # SKIP mmap of a DMABUF needs a patched kernel',
    'ok 4 - dash_name',
  ]);
  assert.equal(report.plan, 4);
  assert.deepEqual(report.results, [
    { ok: true, skip: false, number: 1, name: 'bar0_read', indent: 0 },
    { ok: false, skip: false, number: 2, name: 'dmabuf_export', directive: 'errno 22', indent: 0 },
    { ok: true, skip: true, number: 3, name: 'dmabuf_mmap', directive: 'SKIP mmap of a DMABUF needs a patched kernel', indent: 0 },
    { ok: true, skip: false, number: 4, name: 'dash_name', indent: 0 },
  ]);
  assert.deepEqual(summariseKtap(report), { passed: 2, failed: 1, skipped: 1, missing: 0 });
});

test('copes with CRLF, interleaved printk lines and timestamps', () => {
  const report = parseKtap([
    'KTAP version 1\r',
    '1..3\r',
    '[    5.123456] vfio-pci 0000:00:03.0: enabling device (0000 -> 0002)',
    'ok 1 open_group\r',
    '[    5.200000] random: crng init done',
    'okay, not a result',
    'not ok 2 map_dma\r',
    '[    6.000001] ok 3 kunit_style',
  ]);
  assert.equal(report.plan, 3);
  assert.deepEqual(report.results.map((r) => [r.number, r.name, r.ok]), [
    [1, 'open_group', true],
    [2, 'map_dma', false],
    [3, 'kunit_style', true],
  ]);
  assert.ok(report.results.every((r) => !r.name.includes('\r')));
});

test('keeps subtest indentation and only takes the top-level plan', () => {
  const report = parseKtap([
    'KTAP version 1',
    '1..2',
    '    KTAP version 1',
    '    1..2',
    '    ok 1 sub_a',
    '    ok 2 sub_b # SKIP no device',
    'ok 1 group',
    'ok 2 # SKIP whole test skipped',
  ]);
  assert.equal(report.plan, 2);
  assert.deepEqual(report.results.map((r) => [r.indent, r.number, r.name, r.skip]), [
    [4, 1, 'sub_a', false],
    [4, 2, 'sub_b', true],
    [0, 1, 'group', false],
    [0, 2, '', true],
  ]);
  assert.deepEqual(summariseKtap(report), { passed: 1, failed: 0, skipped: 1, missing: 0 });
});

test('reports missing results against the plan and finds nothing in noise', () => {
  const partial = parseKtap(['1..5', 'ok 1 a', 'ok 2 b']);
  assert.equal(summariseKtap(partial).missing, 3);
  const none = parseKtap(['SeaBIOS (version 1.17.0)', 'Booting from ROM...', 'EDU_PLUS_GUEST_DONE']);
  assert.deepEqual(none, { results: [] });
});

test('a skip directive is recognised case-insensitively, a TODO is not a skip', () => {
  const report = parseKtap(['ok 1 a # skip lower case', 'not ok 2 b # TODO later']);
  assert.equal(report.results[0]!.skip, true);
  assert.equal(report.results[1]!.skip, false);
  assert.equal(report.results[1]!.directive, 'TODO later');
});
