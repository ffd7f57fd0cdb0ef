/**
 * `vm` run the way a user runs it (a child process of `tsx cli/main.ts vm ...`), and readers of
 * its summary, shared by the end-to-end tests of the command.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';

const root = join(import.meta.dirname, '../..');
const cli = (args: string[]) => [join(root, 'node_modules/tsx/dist/cli.mjs'), join(root, 'cli/main.ts'), 'vm', ...args];

export interface CliRun {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `vm` as a child process (asynchronously: the server inside it must keep running). */
export function runVmCli(args: string[]): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, cli(args), { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

/** The exit code the verdict line announces, and the per-program summary lines. */
export function summary(out: string): { announced: number; programs: Map<string, string> } {
  const verdict = /^verdict: .*\(exit (\d)\)/m.exec(out);
  assert.ok(verdict, `no verdict line in:\n${out.slice(-3000)}`);
  const programs = new Map<string, string>();
  for (const m of out.matchAll(/^(PASS|FAIL|SKIP)  (\S+)\s+(\d+ passed, \d+ failed, \d+ skipped)$/gm)) programs.set(m[2]!, `${m[1]} ${m[3]}`);
  return { announced: Number(verdict[1]), programs };
}

export function explain(t: { diagnostic(msg: string): void }, r: CliRun): void {
  for (const line of r.stderr.split('\n').slice(-40)) t.diagnostic(`stderr| ${line}`);
  for (const line of r.stdout.split('\n').slice(-40)) t.diagnostic(`stdout| ${line}`);
}

/** Asserts a run exited 0 with a PASS verdict and the given per-program lines (explaining the run otherwise). */
export function assertPassed(t: { diagnostic(msg: string): void }, r: CliRun, programs: Record<string, string>): void {
  if (r.status !== 0) explain(t, r);
  assert.equal(r.status, 0);
  const s = summary(r.stdout);
  assert.equal(s.announced, 0);
  for (const [name, line] of Object.entries(programs)) assert.equal(s.programs.get(name), line);
}
