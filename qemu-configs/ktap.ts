// Extracts KTAP results (Documentation/dev-tools/ktap.rst) from a guest console transcript.
//
// The console is noisy: kernel printk lines interleave with the test's output, lines may keep
// a CR, and printk lines can carry a "[    1.234567] " timestamp. Only lines that are KTAP
// result or plan lines are used; everything else is ignored. Subtests are indented by four
// spaces per level; `indent` reports the raw number of leading spaces.

export interface KtapResult {
  ok: boolean;
  /** `# SKIP` directive (the test did not run, which is neither a pass nor a failure). */
  skip: boolean;
  number: number;
  name: string;
  /** Text after '#', e.g. "SKIP mmap of a DMABUF needs a patched kernel". */
  directive?: string;
  indent: number;
}

export interface KtapReport {
  /** The top-level version line: "KTAP version 1", or the kselftest harness's "TAP version 13". */
  version?: string;
  /** N from the top-level `1..N` plan line. */
  plan?: number;
  /** The reason of a top-level `1..0 # SKIP reason`: the whole program skipped (kselftest's ksft_exit_skip). */
  skipAll?: string;
  results: KtapResult[];
}

/** A printk timestamp prefix; KUnit's results arrive through printk and carry one. */
const PRINTK_TIME = /^\[\s*\d+\.\d+\] ?/;
const RESULT = /^( *)(ok|not ok) (\d+)(?: (?:- )?([^#]*?))?\s*(?:#\s?(.*?))?\s*$/;
const PLAN = /^( *)1\.\.(\d+)\b(?:[^#]*#\s*(.*?))?\s*$/;
const VERSION = /^(K?TAP version \d+)\s*$/;

/**
 * Parses the KTAP lines in `lines`. Top-level (indent 0) `1..N` sets `plan`; results at every
 * level are returned in console order with their indent.
 */
export function parseKtap(lines: readonly string[]): KtapReport {
  const report: KtapReport = { results: [] };
  for (const raw of lines) {
    const line = raw.replace(/\r/g, '').replace(PRINTK_TIME, '').replace(/\t/g, '    ');
    const version = VERSION.exec(line);
    if (version !== null) {
      report.version ??= version[1];
      continue;
    }
    const plan = PLAN.exec(line);
    if (plan !== null) {
      if (plan[1]!.length === 0 && report.plan === undefined) {
        report.plan = Number(plan[2]);
        const skip = /^skip\b\s*(.*)$/i.exec(plan[3] ?? '');
        if (report.plan === 0 && skip !== null) report.skipAll = skip[1] || 'skipped';
      }
      continue;
    }
    const m = RESULT.exec(line);
    if (m === null) continue;
    const directive = m[5] !== undefined && m[5] !== '' ? m[5] : undefined;
    report.results.push({
      ok: m[2] === 'ok',
      skip: directive !== undefined && /^skip\b/i.test(directive),
      number: Number(m[3]),
      name: (m[4] ?? '').trim(),
      ...(directive !== undefined ? { directive } : {}),
      indent: m[1]!.length,
    });
  }
  return report;
}

/** Counts of top-level results: skips are counted apart from passes. */
export function summariseKtap(report: KtapReport): { passed: number; failed: number; skipped: number; missing: number } {
  const top = report.results.filter((r) => r.indent === 0);
  const skipped = top.filter((r) => r.skip).length;
  const failed = top.filter((r) => !r.ok && !r.skip).length;
  const passed = top.length - skipped - failed;
  const missing = report.plan !== undefined ? Math.max(0, report.plan - top.length) : 0;
  return { passed, failed, skipped, missing };
}
