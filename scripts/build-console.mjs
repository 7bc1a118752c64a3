#!/usr/bin/env node
// Builds the web console into dist/console: type-checks it (console/tsconfig.json, DOM types),
// bundles console/main.tsx with Preact into one minified app.js, copies index.html and app.css.
// Run by `npm run build`; the conductor serves the result itself (no CDN, nothing at run time).
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(root, 'dist', 'console');
const check = spawnSync('npx', ['tsc', '-p', path.join(root, 'console')], { stdio: 'inherit', cwd: root });
if (check.status !== 0) process.exit(check.status ?? 1);
const esbuild = await import('esbuild');
mkdirSync(out, { recursive: true });
await esbuild.build({
  entryPoints: [path.join(root, 'console', 'main.tsx')],
  outfile: path.join(out, 'app.js'),
  bundle: true,
  minify: true,
  format: 'esm',
  target: 'es2022',
  jsx: 'automatic',
  jsxImportSource: 'preact',
  legalComments: 'none',
  logLevel: 'warning',
});
copyFileSync(path.join(root, 'console', 'index.html'), path.join(out, 'index.html'));
copyFileSync(path.join(root, 'console', 'app.css'), path.join(out, 'app.css'));
