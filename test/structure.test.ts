/**
 * The conductor's structure, measured from its imports (every import, type-only ones included):
 * no cycle between its modules, nothing imported from the ramdisk agent's code (what both sides
 * share lives in shared/), and no module past 350 lines. Read the source files as they are: a new
 * cycle or a god module fails here with the path that shows it.
 */
import { describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const ROOT = path.resolve(import.meta.dirname, '..');
const MAX_LINES = 350;

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir)) {
    const f = path.join(dir, e);
    if (statSync(f).isDirectory()) out.push(...tsFiles(f));
    else if (f.endsWith('.ts') && !f.endsWith('.d.ts')) out.push(f);
  }
  return out;
}

/** Relative imports of a file (static, re-exports, dynamic), resolved to .ts paths under ROOT. */
function importsOf(file: string): string[] {
  const src = readFileSync(file, 'utf8');
  const specs = new Set<string>();
  for (const m of src.matchAll(/(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+['"]([^'"]+)['"]/g)) specs.add(m[1]!);
  for (const m of src.matchAll(/(?:^|\n)\s*import\s+['"]([^'"]+)['"]/g)) specs.add(m[1]!);
  for (const m of src.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g)) specs.add(m[1]!);
  return [...specs].filter((s) => s.startsWith('.')).map((s) => path.resolve(path.dirname(file), s.replace(/\.js$/, '.ts')));
}

const rel = (f: string) => path.relative(ROOT, f);
const conductorFiles = tsFiles(path.join(ROOT, 'conductor'));

/** Every cycle's path through the graph of `files` (Tarjan's SCCs, then one cycle per component). */
function cycles(files: string[]): string[][] {
  const inside = new Set(files);
  const graph = new Map(files.map((f) => [f, importsOf(f).filter((t) => inside.has(t))]));
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const on = new Set<string>();
  const comps: string[][] = [];
  const visit = (v: string) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of graph.get(v)!) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const comp: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1 || graph.get(v)!.includes(v)) comps.push(comp);
    }
  };
  for (const f of files) if (!idx.has(f)) visit(f);
  // A readable witness per component: walk from its first member back to itself.
  return comps.map((comp) => {
    const set = new Set(comp);
    const start = comp[0]!;
    const prev = new Map<string, string>();
    const queue = [start];
    while (queue.length) {
      const v = queue.shift()!;
      for (const w of graph.get(v)!) {
        if (!set.has(w)) continue;
        if (w === start) {
          const p = [v];
          while (p[0] !== start) p.unshift(prev.get(p[0]!)!);
          return [...p, start].map(rel);
        }
        if (!prev.has(w)) {
          prev.set(w, v);
          queue.push(w);
        }
      }
    }
    return comp.map(rel);
  });
}

describe('conductor structure', () => {
  it('has no import cycle between its modules', () => {
    expect(cycles(conductorFiles).map((c) => c.join(' -> '))).toEqual([]);
  });

  it('imports nothing from agent/ (shared code lives in shared/)', () => {
    const bad = conductorFiles.flatMap((f) => importsOf(f).filter((t) => rel(t).startsWith('agent' + path.sep)).map((t) => `${rel(f)} imports ${rel(t)}`));
    expect(bad).toEqual([]);
  });

  it(`keeps every module at or under ${MAX_LINES} lines`, () => {
    const big = conductorFiles.map((f) => ({ f: rel(f), lines: readFileSync(f, 'utf8').split('\n').length })).filter((x) => x.lines > MAX_LINES);
    expect(big).toEqual([]);
  });

  it('the checker finds a cycle, type-only imports included, and names its path', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'ironfleet-cycle-'));
    writeFileSync(path.join(dir, 'a.ts'), "import { b } from './b.js';\nexport const a = b;\n");
    writeFileSync(path.join(dir, 'b.ts'), "import type { C } from './c.js';\nexport const b = 1 as unknown as C;\n");
    writeFileSync(path.join(dir, 'c.ts'), "export type C = number;\nexport { a } from './a.js';\n");
    writeFileSync(path.join(dir, 'd.ts'), "import { a } from './a.js';\nexport const d = a;\n");
    const found = cycles(tsFiles(dir));
    expect(found).toHaveLength(1);
    const names = found[0]!.map((f) => path.basename(f));
    expect(names[0]).toBe(names.at(-1)); // a closed path
    expect(new Set(names)).toEqual(new Set(['a.ts', 'b.ts', 'c.ts'])); // d only imports into the cycle
  });
});
