/**
 * The shape of protocol/'s import graph, read from the sources: no module imports itself back
 * through others (type-only imports count: a cycle of types is still two files that cannot be
 * understood apart).
 */
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, it } from 'node:test';

const ROOT = import.meta.dirname;

/** Every source module under dir (tests excluded: they may import anything). */
function modules(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return modules(path);
    return /\.(ts|mjs)$/.test(e.name) && !e.name.endsWith('.test.ts') ? [path] : [];
  });
}

/** The specifiers a module imports or re-exports from (static and type-only alike). */
function specifiers(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/^\s*(?:import|export)\b[^;]*?\bfrom\s+'([^']+)'/gms)].map((m) => m[1]!);
}

/** Import cycles among protocol/'s own modules, each as a path that returns to its start. */
export function findCycles(files: readonly string[]): string[][] {
  const inside = new Set(files);
  const edges = new Map(files.map((f) => [f, specifiers(f).filter((s) => s.startsWith('.')).map((s) => resolve(dirname(f), s)).filter((p) => inside.has(p))]));
  const cycles: string[][] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (f: string): void => {
    state.set(f, 'open');
    stack.push(f);
    for (const next of edges.get(f)!) {
      if (state.get(next) === 'open') cycles.push([...stack.slice(stack.indexOf(next)), next]);
      else if (!state.has(next)) visit(next);
    }
    stack.pop();
    state.set(f, 'done');
  };
  for (const f of files) if (!state.has(f)) visit(f);
  return cycles;
}

describe('protocol/ import graph', () => {
  const files = modules(ROOT);

  it('reads the imports it checks (the scan is not blind)', () => {
    assert.ok(files.length > 20, `found only ${files.length} modules`);
    assert.ok(specifiers(join(ROOT, 'session.ts')).includes('./peer-requests.ts'));
  });

  it('has no import cycle, type-only imports included', () => {
    const cycles = findCycles(files).map((c) => c.map((f) => relative(ROOT, f)).join(' -> '));
    assert.deepEqual(cycles, []);
  });
});

describe('protocol/ dependencies', () => {
  const files = modules(ROOT);
  const importers = (pkg: string) => files.filter((f) => specifiers(f).some((s) => s === pkg || s.startsWith(`${pkg}/`))).map((f) => relative(ROOT, f));

  it('leaves worker threads to the trace channel (no piscina)', () => {
    assert.deepEqual(importers('piscina'), []);
  });

  it('uses msgpack only to carry device state in migration, not for tracing', () => {
    assert.deepEqual(importers('msgpackr'), ['migration.ts']);
  });

  it('never imports the trace channel, the devices or the CLI', () => {
    const outward = files.flatMap((f) => specifiers(f).filter((s) => /^(\.\.\/)+(trace|device|cli)\//.test(s)).map((s) => `${relative(ROOT, f)}: ${s}`));
    assert.deepEqual(outward, []);
  });
});
