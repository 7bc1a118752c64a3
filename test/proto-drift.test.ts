/** Generated code must match what `npm run proto` produces from proto/ (no hand edits, no drift). */
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT, tmpDir } from './helpers.js';

function files(dir: string, base = dir): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = path.join(dir, f);
    return statSync(p).isDirectory() ? files(p, base) : [path.relative(base, p)];
  });
}

describe('ts-proto generated code', () => {
  it('is up to date with proto/ (run `npm run proto` after editing a .proto)', () => {
    const out = tmpDir('ironfleet-proto-');
    const template = readFileSync(path.join(ROOT, 'buf.gen.yaml'), 'utf8').replace('out: shared/gen', `out: ${out}`);
    const tmpl = path.join(out, 'buf.gen.check.yaml');
    writeFileSync(tmpl, template);
    execFileSync(path.join(ROOT, 'node_modules/.bin/buf'), ['generate', '--template', tmpl], { cwd: ROOT, stdio: 'pipe' });
    const committed = path.join(ROOT, 'shared/gen');
    const generated = files(out).filter((f) => f.endsWith('.ts'));
    expect(generated.sort()).toEqual(files(committed).sort());
    for (const f of generated) expect(readFileSync(path.join(committed, f), 'utf8'), `${f} drifted`).toBe(readFileSync(path.join(out, f), 'utf8'));
  });

  it('the proto passes buf lint', () => {
    execFileSync(path.join(ROOT, 'node_modules/.bin/buf'), ['lint'], { cwd: ROOT, stdio: 'pipe' });
  });
});
