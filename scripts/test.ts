/**
 * `npm test`: the type check, then every *.test.ts (unit tests and the end-to-end VM tests)
 * in one run of Node's test runner.
 *
 *   npm test                 everything (the first run provisions QEMU and a guest kernel)
 *   npm test -- --unit       skip tests/e2e (no VM)
 *   npm test -- FILTER...    only test files whose path contains one of the FILTER words
 */
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, relative } from 'node:path';

const root = join(import.meta.dirname, '..');
const TEST_DIRS = ['protocol', 'device', 'cli', 'qemu-configs', 'guest-tests', 'bench', 'trace', 'tests'];
/** A hung test fails after this long instead of holding CI until its limit (the VM tests take ~10 s). */
const TEST_TIMEOUT_MS = 15 * 60_000;

function findTests(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...findTests(path));
    else if (entry.name.endsWith('.test.ts')) out.push(path);
  }
  return out;
}

const args = process.argv.slice(2);
const unitOnly = args.includes('--unit');
const filters = args.filter((a) => !a.startsWith('--'));

const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
console.log('== type check (tsc --noEmit) ==');
const typecheck = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.json'), '--noEmit'], { stdio: 'inherit' });
if (typecheck.status !== 0) {
  console.error('type check failed: fix the errors above (npm run typecheck repeats only this step)');
  process.exit(1);
}
console.log('type check passed');

let files = TEST_DIRS.flatMap((d) => findTests(join(root, d))).map((f) => relative(root, f)).sort();
if (unitOnly) files = files.filter((f) => !f.startsWith('tests/e2e/'));
if (filters.length) files = files.filter((f) => filters.some((w) => f.includes(w)));
if (files.length === 0) {
  console.error(`no test files match ${filters.join(' ')}`);
  process.exit(1);
}
console.log(`== ${files.length} test files ==`);
const run = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=spec', `--test-timeout=${TEST_TIMEOUT_MS}`, ...files], {
  cwd: root,
  stdio: 'inherit',
});
process.exit(run.status ?? 1);
