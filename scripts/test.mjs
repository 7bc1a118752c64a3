#!/usr/bin/env node
// The test command: build, run the whole vitest suite, print "N passed, N failed".
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';

const extra = process.argv.slice(2);
mkdirSync('.tmp', { recursive: true });
const results = '.tmp/vitest-results.json';
rmSync(results, { force: true });

// The conductor and CLI (tsc), then the web console bundle the browser tests load.
let build = spawnSync('npx', ['tsc', '-p', '.'], { stdio: 'inherit' });
if (build.status === 0) build = spawnSync(process.execPath, ['scripts/build-console.mjs'], { stdio: 'inherit' });
if (build.status !== 0) {
  console.log('build failed');
  console.log('0 passed, 1 failed');
  process.exit(1);
}
const run = spawnSync('npx', ['vitest', 'run', '--reporter=default', '--reporter=json', `--outputFile=${results}`, ...extra], { stdio: 'inherit' });
let passed = 0;
let failed = 0;
try {
  const r = JSON.parse(readFileSync(results, 'utf8'));
  passed = r.numPassedTests;
  failed = r.numFailedTests;
  // A file that fails to load (or a failing hook) has no failed test of its own: count it.
  for (const f of r.testResults ?? []) if (f.status === 'failed' && !(f.assertionResults ?? []).some((a) => a.status === 'failed')) failed++;
} catch {
  failed = Math.max(failed, 1);
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(run.status === 0 && failed === 0 ? 0 : 1);
