/**
 * Bring your own test, without booting: naming --run commands, what --add accepts (a static
 * program, a script, a directory) and refuses (a dynamic program, a clash), and how the verdict
 * judges a developer's program — by KTAP when it prints KTAP (ours, or the kselftest harness's
 * TAP 13), else by kselftest's exit-code convention. tests/e2e/byo-test.test.ts boots it.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { BYO_DIR, ExtraTestInputError, addedFiles, byoCommand, elfKind, nameRuns, planByo } from './vm-extra-tests.ts';
import { TEST_BEGIN, TEST_END, judge } from './vm-report.ts';

const dir = mkdtempSync(join(tmpdir(), 'edu-plus-byo-unit-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Compiles a tiny C program with the host's gcc (static or not). */
function compile(name: string, flags: string[]): string {
  const src = join(dir, `${name}.c`);
  writeFileSync(src, 'int main(void) { return 0; }\n');
  const out = join(dir, name);
  const r = spawnSync('gcc', [...flags, src, '-o', out], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return out;
}

describe('--run names', () => {
  it('names a command after its first word, unique against ours and each other', () => {
    const runs = nameRuns(['./my_test -v', 'my_test', '/byo/tools/edu_plus_basic', 'sh -c "exit 4"', '  '], ['edu_plus_basic']);
    assert.deepEqual(runs.map((r) => r.name), ['my_test', 'my_test-2', 'edu_plus_basic-2', 'sh', 'run']);
    assert.equal(runs[0]!.command, './my_test -v');
  });
});

describe('--add', () => {
  it('takes a static program, a script and a directory tree, under /byo', () => {
    const prog = compile('static_prog', ['-static']);
    const tree = join(dir, 'suite');
    mkdirSync(join(tree, 'sub'), { recursive: true });
    writeFileSync(join(tree, 'run.sh'), '#!/bin/sh\nexit 0\n');
    chmodSync(join(tree, 'run.sh'), 0o755);
    writeFileSync(join(tree, 'sub', 'data.txt'), 'x');
    const { files, dirs } = addedFiles([prog, tree]);
    assert.deepEqual(files.map((f) => f.dest), [`${BYO_DIR}/static_prog`, `${BYO_DIR}/suite/run.sh`, `${BYO_DIR}/suite/sub/data.txt`]);
    assert.deepEqual(dirs, [`${BYO_DIR}/suite`]);
    assert.deepEqual(elfKind(Buffer.from(spawnSync('head', ['-c', '4096', prog]).stdout)), { elf: true, dynamic: false, x86_64: true });
  });

  it('refuses a dynamically linked program, a missing path and two paths with one name, saying what to do', () => {
    const dynamic = compile('dynamic_prog', []);
    assert.throws(() => addedFiles([dynamic]), (e: unknown) => e instanceof ExtraTestInputError && /dynamically linked.*link it with -static/.test(e.message));
    assert.throws(() => addedFiles([join(dir, 'nope')]), /--add .*nope: no such file or directory/);
    mkdirSync(join(dir, 'a'), { recursive: true });
    mkdirSync(join(dir, 'b', 'a'), { recursive: true });
    assert.throws(() => addedFiles([join(dir, 'a'), join(dir, 'b', 'a')]), /would both be \/byo\/a in the guest: rename one/);
  });

  it('runs each command in /byo with the added directories on PATH, one marked program each', () => {
    assert.equal(byoCommand('./t', ['/byo/suite']), 'cd /byo && PATH=/byo:/byo/suite:$PATH && ./t');
    const plan = planByo([], ['./t one', './t two'], []);
    assert.deepEqual(plan.names, ['t', 't-2']);
    assert.match(plan.commands[0]!, new RegExp(`^echo "${TEST_BEGIN} t"; \\(cd /byo && PATH=/byo:\\$PATH && ./t one\\n\\); echo "${TEST_END} t \\$\\?"$`));
  });
});

describe('judging a developer\'s program', () => {
  const program = (name: string, body: string[], status: number): string[] => [`${TEST_BEGIN} ${name}`, ...body, `${TEST_END} ${name} ${status}`];
  const verdictOf = (body: string[], status: number) =>
    judge({ lines: program('mine', body, status), tests: ['mine'], exitStatusJudged: ['mine'], timedOut: false, initSeen: true, doneSeen: true });

  it('no KTAP: exit status 0 passes, 4 skips, anything else fails (a signal is named)', () => {
    const pass = verdictOf(['hello'], 0);
    assert.deepEqual([pass.exitCode, pass.passed, pass.programs[0]!.judgedBy], [0, 1, 'exit-status']);
    const skip = verdictOf([], 4);
    assert.deepEqual([skip.exitCode, skip.skipped], [4, 1]);
    assert.match(skip.programs[0]!.skips[0]!.directive!, /SKIP exit status 4/);
    const fail = verdictOf(['oops'], 1);
    assert.deepEqual([fail.exitCode, fail.failed], [1, 1]);
    const killed = verdictOf([], 139);
    assert.match(killed.programs[0]!.failures[0]!.directive!, /killed by signal 11/);
  });

  it('the kselftest harness\'s TAP 13: read case by case, its exit status 4 agrees with an all-skipped run', () => {
    const harness = [
      'TAP version 13', '1..3', '# Starting 3 tests from 2 test cases.',
      '#  RUN           vfio_dma_mapping_test.vfio_type1_iommu_anonymous.dma_map_unmap ...',
      '#            OK  vfio_dma_mapping_test.vfio_type1_iommu_anonymous.dma_map_unmap',
      'ok 1 vfio_dma_mapping_test.vfio_type1_iommu_anonymous.dma_map_unmap',
      'ok 2 vfio_dma_mapping_test.vfio_type1_iommu_anonymous_hugetlb_2mb.dma_map_unmap # SKIP no huge pages',
      'not ok 3 vfio_dma_mapping_test.iommufd.dma_map_unmap',
      '# FAILED: 1 / 3 tests passed.', '# Totals: pass:1 fail:1 xfail:0 xpass:0 skip:1 error:0',
    ];
    const v = verdictOf(harness, 1);
    assert.deepEqual([v.exitCode, v.passed, v.failed, v.skipped, v.programs[0]!.judgedBy], [1, 1, 1, 1, 'ktap']);
    assert.equal(v.programs[0]!.failures[0]!.name, 'vfio_dma_mapping_test.iommufd.dma_map_unmap');
    const allSkipped = verdictOf(['TAP version 13', '1..1', 'ok 1 a.b.c # SKIP no /dev/iommu'], 4);
    assert.deepEqual([allSkipped.exitCode, allSkipped.programs[0]!.problems], [4, []]);
    const lying = verdictOf(['TAP version 13', '1..1', 'ok 1 a.b.c'], 1);
    assert.equal(lying.exitCode, 1, 'a pass with a failing exit status is not a pass');
    const cut = verdictOf(['TAP version 13', '1..2', 'ok 1 a.b.c'], 139);
    assert.match(cut.programs[0]!.problems[0]!, /1 of 2 planned results missing/);
  });

  it('our own programs must still print KTAP: no plan is a failure whatever the exit status', () => {
    const v = judge({ lines: program('ours', ['hello'], 0), tests: ['ours'], timedOut: false, initSeen: true, doneSeen: true });
    assert.equal(v.exitCode, 1);
    assert.match(v.programs[0]!.problems[0]!, /no KTAP plan/);
  });
});
