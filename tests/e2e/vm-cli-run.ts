/**
 * Running `npm run vm` as a child process from an end-to-end test, and reading its summary:
 * shared by the test files that boot guests through the command line.
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

/** Puts the end of the run's output into the test's diagnostics (on failure). */
export function explain(t: { diagnostic(msg: string): void }, r: CliRun): void {
  for (const line of r.stderr.split('\n').slice(-40)) t.diagnostic(`stderr| ${line}`);
  for (const line of r.stdout.split('\n').slice(-40)) t.diagnostic(`stdout| ${line}`);
}
