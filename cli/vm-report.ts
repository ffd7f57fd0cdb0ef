/**
 * The verdict of a `vm` run, from the guest console: /init brackets each test program with
 * marker lines (begin, and end with the program's exit status), the KTAP between them is that
 * program's, and the VM-level facts (timeout, kernel panic, /init never reached) come from
 * the run. Pure functions, so the exit-code rules are unit-tested without a VM.
 *
 * Two kinds of program: ours (guest-tests/), which must print KTAP, and programs a developer
 * brings (`--run`, the kernel's selftests), judged by their KTAP when they print any (the
 * kselftest harness's "TAP version 13" output included) and otherwise by the kselftest exit
 * code convention: 0 pass, 4 skip (KSFT_SKIP), anything else fail.
 */
import { DECLARED_SKIP } from '../qemu-configs/guest-init.ts';
import { type KtapResult, parseKtap } from '../qemu-configs/ktap.ts';
import { MODULE_REPORT } from '../qemu-configs/guest-init.ts';
import { buildIdFromNote } from '../qemu-configs/module-closure.ts';

export const TEST_BEGIN = 'EDU_PLUS_VM_BEGIN';
export const TEST_END = 'EDU_PLUS_VM_END';

/** Exit codes of `vm` (also stated in its --help). */
export const EXIT_PASS = 0;
export const EXIT_FAIL = 1;
export const EXIT_USAGE = 2;
export const EXIT_ALL_SKIPPED = 4;

/** kselftest's exit code for "skipped" (KSFT_SKIP in tools/testing/selftests/kselftest.h). */
export const KSFT_SKIP = 4;

/** A name the markers can carry: one word of plain file-name characters. */
export function isProgramName(name: string): boolean {
  return /^[A-Za-z0-9_.:+-]+$/.test(name);
}

/**
 * The /init line that runs `command` (a shell command line) between the markers of program
 * `name`. The subshell keeps a `cd` or `exit` in the command from ending /init itself.
 */
export function programCommand(name: string, command: string): string {
  if (!isProgramName(name)) throw new Error(`program name ${JSON.stringify(name)} is not one plain word`);
  return `echo "${TEST_BEGIN} ${name}"; (${command}\n); echo "${TEST_END} ${name} $?"`;
}

/** The /init line that runs one of our guest test programs (from /tests) between its markers. */
export function testCommand(name: string): string {
  return programCommand(name, `/tests/${name}`);
}

export interface ProgramResult {
  name: string;
  passed: number;
  failed: number;
  skipped: number;
  /** Planned cases that never reported. */
  missing: number;
  /** Exit status the program returned (undefined: it never finished). */
  exitStatus?: number;
  /**
   * How the result was read: its KTAP, or (a program that printed none and may be judged so)
   * its exit status, which then stands as one case named after the program.
   */
  judgedBy: 'ktap' | 'exit-status';
  /** Every top-level case in order (passes too), for reports such as JUnit. */
  cases: KtapResult[];
  /** The console lines the program printed (between its markers). */
  output: string[];
  failures: KtapResult[];
  skips: KtapResult[];
  /** Why the program counts as failed beyond its `not ok` lines (did not run, crashed, ...). */
  problems: string[];
}

export interface Verdict {
  programs: ProgramResult[];
  /** VM-level problems: timeout, kernel panic, no /init, no done sentinel. */
  problems: string[];
  passed: number;
  failed: number;
  skipped: number;
  exitCode: typeof EXIT_PASS | typeof EXIT_FAIL | typeof EXIT_ALL_SKIPPED;
}

export interface RunFacts {
  /** The guest console, line by line. */
  lines: readonly string[];
  /** The programs /init was asked to run, in order. */
  tests: readonly string[];
  timedOut: boolean;
  timeoutSeconds?: number;
  /** The /init sentinel appeared. */
  initSeen: boolean;
  /** The done sentinel appeared (every program ran). */
  doneSeen: boolean;
  /**
   * Programs judged by their exit status when they print no KTAP (ones a developer brought);
   * the rest must print KTAP.
   */
  exitStatusJudged?: readonly string[];
}

/** A guest console line that says the kernel panicked or oopsed. */
export const PANIC = /Kernel panic - not syncing|BUG: kernel NULL pointer|Oops: |general protection fault/;

function describeStatus(status: number): string {
  return status > 128 ? `exited with status ${status} (killed by signal ${status - 128})` : `exited with status ${status}`;
}

/** The cases a runner declared skipped (DECLARED_SKIP lines), as KTAP-like skips. */
function declaredSkips(lines: readonly string[]): KtapResult[] {
  const out: KtapResult[] = [];
  for (const line of lines) {
    const m = new RegExp(`^${DECLARED_SKIP} (\\S+) (.+?)\\s*$`).exec(line);
    if (m !== null) out.push({ ok: true, skip: true, number: 0, name: m[1]!, directive: `SKIP ${m[2]}`, indent: 0 });
  }
  return out;
}

/** A program judged by its exit status, as one KTAP-like case named after it. */
function exitStatusCase(name: string, status: number): KtapResult {
  if (status === 0) return { ok: true, skip: false, number: 1, name, indent: 0 };
  if (status === KSFT_SKIP) return { ok: true, skip: true, number: 1, name, directive: `SKIP exit status ${KSFT_SKIP} (kselftest's skip)`, indent: 0 };
  return { ok: false, skip: false, number: 1, name, directive: describeStatus(status), indent: 0 };
}

/**
 * Whether a KTAP program's exit status fits what it printed: 0, or a plain failure status once
 * a failure or a missing result already explains it, or kselftest's skip status when it
 * reported skips. Death by a signal is always worth saying (a crash, not a verdict).
 */
function statusAgrees(status: number, r: ProgramResult): boolean {
  if (status > 128) return false;
  if (status === 0 || r.failed > 0 || r.missing > 0) return true;
  return status === KSFT_SKIP && r.skipped > 0;
}

/** Splits the console by the program markers and judges each program and the run. */
export function judge(facts: RunFacts): Verdict {
  const exitJudged = new Set(facts.exitStatusJudged ?? []);
  const segments = new Map<string, { lines: string[]; status?: number }>();
  let current: { lines: string[]; status?: number } | undefined;
  for (const line of facts.lines) {
    const begin = new RegExp(`${TEST_BEGIN} (\\S+)`).exec(line);
    if (begin !== null) {
      current = { lines: [] };
      segments.set(begin[1]!, current);
      continue;
    }
    const end = new RegExp(`${TEST_END} (\\S+) (\\d+)`).exec(line);
    if (end !== null) {
      const seg = segments.get(end[1]!);
      if (seg !== undefined) seg.status = Number(end[2]);
      current = undefined;
      continue;
    }
    current?.lines.push(line);
  }

  const programs = facts.tests.map((name): ProgramResult => {
    const seg = segments.get(name);
    const result: ProgramResult = {
      name, passed: 0, failed: 0, skipped: 0, missing: 0, judgedBy: 'ktap', cases: [], output: seg?.lines ?? [], failures: [], skips: [], problems: [],
    };
    if (seg === undefined) {
      result.problems.push('did not run (the guest stopped before it)');
      return result;
    }
    result.exitStatus = seg.status;
    const report = parseKtap(seg.lines);
    const printedKtap = report.version !== undefined || report.plan !== undefined;
    const declared = declaredSkips(seg.lines);
    if (!printedKtap && exitJudged.has(name) && seg.status !== undefined) {
      result.judgedBy = 'exit-status';
      result.cases = [exitStatusCase(name, seg.status)];
    } else if (report.skipAll !== undefined && report.results.length === 0) {
      result.cases = [{ ok: true, skip: true, number: 1, name, directive: `SKIP ${report.skipAll}`, indent: 0 }];
    } else {
      result.cases = report.results.filter((r) => r.indent === 0);
      if (report.plan === undefined) {
        result.problems.push('printed no KTAP plan (1..N)');
      } else if (report.plan > result.cases.length) {
        result.missing = report.plan - result.cases.length;
        result.problems.push(`${result.missing} of ${report.plan} planned results missing`);
      }
    }
    result.cases.push(...declared);
    result.skips = result.cases.filter((r) => r.skip);
    result.failures = result.cases.filter((r) => !r.ok && !r.skip);
    result.skipped = result.skips.length;
    result.failed = result.failures.length;
    result.passed = result.cases.length - result.skipped - result.failed;
    if (seg.status === undefined) result.problems.push('did not finish (the guest stopped while it ran)');
    else if (result.judgedBy === 'ktap' && !statusAgrees(seg.status, result)) result.problems.push(describeStatus(seg.status));
    return result;
  });

  const problems: string[] = [];
  if (facts.timedOut) problems.push(`timed out after ${facts.timeoutSeconds ?? '?'} s (raise --timeout, or see --verbose)`);
  const panic = facts.lines.find((l) => PANIC.test(l));
  if (panic !== undefined) problems.push(`the guest kernel crashed: ${panic.trim()}`);
  if (!facts.initSeen && facts.timedOut) problems.push('the guest had not reached /init yet (run with --verbose to see its console)');
  else if (!facts.initSeen) problems.push('the guest never reached /init (the kernel did not boot: run with --verbose to see its console)');
  else if (!facts.doneSeen && !facts.timedOut) problems.push('/init did not finish its commands');

  const passed = programs.reduce((n, p) => n + p.passed, 0);
  const failed = programs.reduce((n, p) => n + p.failed, 0);
  const skipped = programs.reduce((n, p) => n + p.skipped, 0);
  const anyProblem = problems.length > 0 || programs.some((p) => p.problems.length > 0);
  let exitCode: Verdict['exitCode'];
  if (anyProblem || failed > 0) exitCode = EXIT_FAIL;
  else if (passed > 0) exitCode = EXIT_PASS;
  else if (skipped > 0) exitCode = EXIT_ALL_SKIPPED;
  else {
    problems.push('no test reported any result');
    exitCode = EXIT_FAIL;
  }
  return { programs, problems, passed, failed, skipped, exitCode };
}

function caseLine(r: KtapResult): string {
  return `${r.ok ? 'ok' : 'not ok'} ${r.number} ${r.name}${r.directive !== undefined ? ` # ${r.directive}` : ''}`;
}

/**
 * Skips grouped by reason, one line each ("SKIP x40 needs open_device"); the cases are named
 * when a reason covers only a few, so a stock kernel's long list of "needs a patched kernel"
 * stays one line.
 */
function skipLines(skips: readonly KtapResult[]): string[] {
  const byReason = new Map<string, KtapResult[]>();
  for (const s of skips) {
    const reason = (s.directive ?? '').replace(/^skip\b\s*/i, '') || '(no reason given)';
    byReason.set(reason, [...(byReason.get(reason) ?? []), s]);
  }
  return [...byReason].map(([reason, cases]) => {
    const names = cases.length <= 3 ? `: ${cases.map((c) => c.name).join(', ')}` : '';
    return `SKIP x${cases.length} ${reason}${names}`;
  });
}

/** The summary block printed after the run. */
export function formatVerdict(v: Verdict): string[] {
  const width = Math.max(4, ...v.programs.map((p) => p.name.length));
  const out = ['', '== summary =='];
  for (const p of v.programs) {
    const bad = p.failed > 0 || p.problems.length > 0;
    const tag = bad ? 'FAIL' : p.passed > 0 ? 'PASS' : p.skipped > 0 ? 'SKIP' : 'FAIL';
    out.push(`${tag}  ${p.name.padEnd(width)}  ${p.passed} passed, ${p.failed} failed, ${p.skipped} skipped`);
    for (const f of p.failures) out.push(`        ${caseLine(f)}`);
    for (const line of skipLines(p.skips)) out.push(`        ${line}`);
    for (const problem of p.problems) out.push(`        ${problem}`);
  }
  for (const problem of v.problems) out.push(`FAIL  ${problem}`);
  const word = v.exitCode === EXIT_PASS ? 'PASS' : v.exitCode === EXIT_ALL_SKIPPED ? 'ALL SKIPPED' : 'FAIL';
  out.push(`verdict: ${word} (exit ${v.exitCode}): ${v.passed} passed, ${v.failed} failed, ${v.skipped} skipped` +
    ` in ${v.programs.length} test program${v.programs.length === 1 ? '' : 's'}`);
  return out;
}

/** What /init said about one loaded VFIO module (a MODULE_REPORT line, see guest-init.ts). */
export interface ModuleReport {
  name: string;
  /** The modules.dep path busybox modprobe loaded it from ('-' when modules.dep has none). */
  file: string;
  /** /sys/module/<m>/taint: 'O' out of tree, 'E' unsigned, ... */
  taint: string;
  srcversion: string;
  /** The build ID of the loaded object (hex), from its sysfs build-id note. */
  buildId?: string;
  /** The names of its parameters (/sys/module/<m>/parameters). */
  params: string[];
  vermagic: string;
}

/** The MODULE_REPORT lines of a guest console. */
export function parseModuleReports(lines: readonly string[]): ModuleReport[] {
  const reports: ModuleReport[] = [];
  const pattern = new RegExp(`${MODULE_REPORT} name=(\\S+) file=(\\S+) taint=(\\S*) srcversion=(\\S+) buildid=(\\S+) params=(\\S+) vermagic=(.*)$`);
  for (const line of lines) {
    const m = pattern.exec(line);
    if (m === null) continue;
    const note = m[5] === '-' || !/^[0-9a-f]+$/.test(m[5]!) ? undefined : buildIdFromNote(Buffer.from(m[5]!, 'hex'));
    const params = m[6] === '-' ? [] : m[6]!.split(',');
    reports.push({ name: m[1]!, file: m[2]!, taint: m[3]!, srcversion: m[4]!, buildId: note, params, vermagic: m[7]!.trim() });
  }
  return reports;
}

/** A VFIO module the initramfs carried (from buildInitramfs's summary) and why. */
export interface ExpectedModule {
  name: string;
  /** Its path below lib/modules/<release>/ in the guest. */
  path: string;
  /** The host file it came from. */
  source: string;
  origin: 'override' | 'updates' | 'extra' | 'kernel' | 'other';
  buildId?: string;
  /** Same-name files it replaced (e.g. the stock kernel/ copy), with their build IDs. */
  shadowed: { file: string; buildId?: string }[];
}

export interface ProvenanceOptions {
  /** The modules are the developer's: given with --modules, or built by --vfio-src. */
  developerModules: boolean;
  /** Where --vfio-src modules came from (for the summary). */
  vfioSrc?: string;
}

function shortId(id: string | undefined): string {
  return id === undefined ? '(no build ID)' : id.slice(0, 12);
}

/**
 * The provenance block of the summary and the problems that fail the run: every VFIO module we
 * packed must be the one the guest runs (its loaded build ID equals the packed file's), a
 * module the loop built must be out of tree, and a developer's module that the guest is not
 * running is a failure that says which file ran instead.
 */
export function judgeModules(reports: readonly ModuleReport[], expected: readonly ExpectedModule[], opts: ProvenanceOptions): { lines: string[]; problems: string[] } {
  const lines: string[] = [];
  const problems: string[] = [];
  const vfio = expected.filter((e) => e.name.startsWith('vfio'));
  if (reports.length === 0 && vfio.length === 0) return { lines, problems };
  lines.push('', '== vfio modules the guest loaded ==');
  const width = Math.max(4, ...reports.map((r) => r.name.length), ...vfio.map((e) => e.name.length));
  for (const r of reports) {
    const e = vfio.find((x) => x.name === r.name);
    const tree = r.taint.includes('O') ? 'out-of-tree' : 'in-tree';
    const from = e === undefined ? 'not packed by edu-plus'
      : e.origin === 'override' ? `built from ${opts.vfioSrc ?? 'the developer tree'} (${e.source})`
      : opts.developerModules && opts.vfioSrc === undefined ? `${e.origin}/ of your --modules, ${e.source}` : `stock, ${e.source}`;
    lines.push(`${r.name.padEnd(width)}  ${tree} (taint ${r.taint || '-'})  ${r.file}  <- ${from}`);
    lines.push(`${''.padEnd(width)}  build-id ${shortId(r.buildId)}  srcversion ${r.srcversion}  vermagic ${r.vermagic || '?'}`);
    if (r.params.length > 0) lines.push(`${''.padEnd(width)}  parameters ${r.params.join(', ')}`);
    if (e === undefined) continue;
    if (e.buildId !== undefined && r.buildId !== e.buildId) {
      const stock = e.shadowed.find((s) => s.buildId !== undefined && s.buildId === r.buildId);
      problems.push(`${r.name}: the guest runs build ID ${shortId(r.buildId)}, not ${e.path} (${shortId(e.buildId)}) that edu-plus packed` +
        (stock !== undefined ? `: that is the stock ${stock.file}, so your module did not load` : ''));
    }
    if (e.origin === 'override' && !r.taint.includes('O')) {
      problems.push(`${r.name}: loaded as an in-tree module (taint "${r.taint}"), but --vfio-src built it out of tree: the stock module ran, not yours`);
    }
  }
  for (const e of vfio) {
    if (reports.some((r) => r.name === e.name)) continue;
    lines.push(`${e.name.padEnd(width)}  NOT LOADED  (packed: ${e.path} <- ${e.source})`);
    if (opts.developerModules || e.origin === 'override') problems.push(`${e.name}: your ${e.path} was packed but the guest did not load it`);
    else problems.push(`${e.name}: packed but not loaded by the guest`);
  }
  return { lines, problems };
}
