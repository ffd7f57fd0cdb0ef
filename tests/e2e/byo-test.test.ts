/**
 * Bring your own test, booted for real: a static program of ours (tests/e2e/byo/byo_probe.c,
 * compiled here) and a directory with a TAP 13 script go into the guest with --add, four --run
 * commands run against edu-plus, and the verdict judges each the way it promises — the probe
 * by its exit status (once expecting the right device, so it passes; once the wrong one, so it
 * must fail), the script by its TAP, a bare `exit 4` as kselftest's skip. --junit writes the
 * same verdict as XML.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { explain, runVmCli, summary } from './cli-run.ts';

const here = import.meta.dirname;

describe('vm --add/--run: a developer\'s own tests in the guest', { timeout: 10 * 60_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'edu-plus-byo-e2e-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('judges each by KTAP or exit status, in one verdict, and writes JUnit', async (t) => {
    const probe = join(dir, 'byo_probe');
    const cc = spawnSync('gcc', ['-static', '-O2', '-Wall', '-Werror', join(here, 'byo/byo_probe.c'), '-o', probe], { encoding: 'utf8' });
    assert.equal(cc.status, 0, cc.stderr);
    const junit = join(dir, 'results.xml');
    const r = await runVmCli([
      '--add', probe, '--add', join(here, 'byo/suite'),
      '--run', 'byo_probe $EDU_PLUS_BDF 1234:11e8',
      '--run', 'byo_probe $EDU_PLUS_BDF 1234:0bad',
      '--run', 'tap13.sh',
      '--run', 'sh -c "exit 4"',
      '--junit', junit,
    ]);
    const s = summary(r.stdout);
    if (r.status !== 1) explain(t, r);
    assert.equal(r.status, 1, 'the probe expecting the wrong device fails the run');
    assert.equal(s.announced, 1);
    assert.deepEqual(Object.fromEntries(s.programs), {
      byo_probe: 'PASS 1 passed, 0 failed, 0 skipped',
      'byo_probe-2': 'FAIL 0 passed, 1 failed, 0 skipped',
      'tap13.sh': 'PASS 1 passed, 0 failed, 1 skipped',
      sh: 'SKIP 0 passed, 0 failed, 1 skipped',
    });
    assert.match(r.stdout, /^byo_probe: 0000:00:\S+ is 1234:11e8, driver vfio-pci$/m, 'the probe saw edu-plus bound to vfio-pci');
    assert.match(r.stdout, /^\s+not ok 1 byo_probe-2 # exited with status 1$/m);
    assert.match(r.stdout, /^\s+SKIP x1 one device per VM: needs_two_devices$/m);
    assert.doesNotMatch(r.stdout, /^(PASS|FAIL)\s+edu_plus_basic/m, 'with --run, our own programs run only when --tests asks');

    const xml = readFileSync(junit, 'utf8');
    assert.match(xml, /<testsuite name="byo_probe-2" tests="1" failures="1" errors="0" skipped="0">\n\s+<testcase classname="byo_probe-2" name="byo_probe-2">\n\s+<failure message="exited with status 1"\/>/);
    assert.match(xml, /<testcase classname="tap13.sh" name="needs_two_devices">\n\s+<skipped message="one device per VM"\/>/);
    assert.match(xml, /<testsuites name="edu-plus vm" tests="5" failures="1" errors="0" skipped="2">/);
  });
});
