#!/usr/bin/env node
// npm run bench -- NAME [--quick]: runs bench/NAME (compiled to dist/bench/NAME.js).
import { existsSync, readdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';

const [name, ...rest] = process.argv.slice(2);
const available = readdirSync('bench').filter((f) => f.endsWith('.ts') && f !== 'lib.ts').map((f) => f.replace(/\.ts$/, ''));
if (!name || !available.includes(name)) {
  console.error(`usage: npm run bench -- <name> [--quick]\navailable: ${available.join(', ')}`);
  process.exit(2);
}
const file = `dist/bench/${name}.js`;
if (!existsSync(file)) {
  console.error(`${file} missing: run npm run build`);
  process.exit(2);
}
const r = spawnSync(process.execPath, [file, ...rest], { stdio: 'inherit' });
process.exit(r.status ?? 1);
