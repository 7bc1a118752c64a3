#!/usr/bin/env node
// Regenerates the console screenshots the README shows (docs/images/): the node drawer during a
// deploy, taken by the browser test suite (test/console/console.test.ts), and the 10,000-node map,
// taken by bench/console. Needs `npm run build` first and /usr/bin/chromium (scripts/setup.sh).
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';

const out = path.resolve('docs', 'images');
mkdirSync(out, { recursive: true });
const run = (cmd, args, env) => {
  const r = spawnSync(cmd, args, { stdio: 'inherit', env: { ...process.env, ...env } });
  if (r.status !== 0) process.exit(r.status ?? 1);
};
run('npx', ['vitest', 'run', 'test/console/console.test.ts'], { CONSOLE_SCREENSHOT_DIR: out });
run(process.execPath, ['dist/bench/console.js', '--quick'], { CONSOLE_SCREENSHOT: path.join(out, 'console-map-10k.png') });
console.log(`screenshots in ${out}`);
