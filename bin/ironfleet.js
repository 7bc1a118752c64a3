#!/usr/bin/env node
// Entry point of the `ironfleet` command. Runs the compiled CLI (npm run build).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const compiled = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
if (!existsSync(compiled)) {
  console.error('ironfleet: not built yet; run `npm run build` first');
  process.exit(2);
}
const { main } = await import(compiled);
await main(process.argv);
