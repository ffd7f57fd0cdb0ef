/**
 * `vm --junit FILE`: the verdict as JUnit XML, the format CI systems (GitLab, Jenkins, GitHub
 * test reporters) render per case. One <testsuite> per guest program, one <testcase> per
 * top-level KTAP case; a `not ok` is a <failure>, a SKIP a <skipped> with its reason. What
 * fails a program beyond its cases (it crashed, results missing, never ran) is one more
 * failing case named "(program)", and what fails the whole run (timeout, kernel panic, no
 * boot) a suite "vm" of its own, so no failure the summary prints is missing from the XML.
 */
import { rename, writeFile } from 'node:fs/promises';
import type { KtapResult } from '../qemu-configs/ktap.ts';
import type { ProgramResult, Verdict } from './vm-report.ts';

/** Escapes text for XML content and attribute values; drops characters XML 1.0 forbids. */
export function xmlEscape(text: string): string {
  return text
    .replace(/[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]/g, '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

/** The reason in a KTAP directive: "SKIP needs a patched kernel" → "needs a patched kernel". */
function reasonOf(c: KtapResult, fallback: string): string {
  const text = (c.directive ?? '').replace(/^skip\b\s*/i, '').trim();
  return text === '' ? fallback : text;
}

interface Case {
  name: string;
  failure?: string;
  skipped?: string;
}

function programCases(p: ProgramResult): Case[] {
  const cases: Case[] = p.cases.map((c) => ({
    name: c.name !== '' ? c.name : `case ${c.number}`,
    ...(c.skip ? { skipped: reasonOf(c, 'skipped') } : !c.ok ? { failure: reasonOf(c, 'not ok') } : {}),
  }));
  if (p.problems.length > 0) cases.push({ name: '(program)', failure: p.problems.join('; ') });
  return cases;
}

function suite(name: string, cases: Case[], output: readonly string[]): string[] {
  const failures = cases.filter((c) => c.failure !== undefined).length;
  const skipped = cases.filter((c) => c.skipped !== undefined).length;
  const out = [`  <testsuite name="${xmlEscape(name)}" tests="${cases.length}" failures="${failures}" errors="0" skipped="${skipped}">`];
  for (const c of cases) {
    const open = `    <testcase classname="${xmlEscape(name)}" name="${xmlEscape(c.name)}"`;
    if (c.failure !== undefined) out.push(`${open}>`, `      <failure message="${xmlEscape(c.failure)}"/>`, '    </testcase>');
    else if (c.skipped !== undefined) out.push(`${open}>`, `      <skipped message="${xmlEscape(c.skipped)}"/>`, '    </testcase>');
    else out.push(`${open}/>`);
  }
  if (output.length > 0) out.push(`    <system-out>${xmlEscape(output.join('\n'))}</system-out>`);
  out.push('  </testsuite>');
  return out;
}

/** The JUnit XML document for a verdict. */
export function junitXml(v: Verdict): string {
  const suites = v.programs.map((p) => ({ name: p.name, cases: programCases(p), output: p.output }));
  if (v.problems.length > 0) suites.push({ name: 'vm', cases: v.problems.map((problem) => ({ name: 'run', failure: problem })), output: [] });
  const all = suites.flatMap((s) => s.cases);
  const failures = all.filter((c) => c.failure !== undefined).length;
  const skipped = all.filter((c) => c.skipped !== undefined).length;
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="edu-plus vm" tests="${all.length}" failures="${failures}" errors="0" skipped="${skipped}">`,
    ...suites.flatMap((s) => suite(s.name, s.cases, s.output)),
    '</testsuites>',
    '',
  ].join('\n');
}

/** Writes the JUnit XML for `v` to `file` (through a temporary name: a reader never sees half). */
export async function writeJunit(file: string, v: Verdict): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, junitXml(v));
  await rename(tmp, file);
}
