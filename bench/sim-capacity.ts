/**
 * bench/sim-capacity: the most Redfish GETs per second the simulator serves on this machine, with
 * the load generator in another process (one keep-alive HTTPS connection per BMC, one session per
 * BMC, GET /redfish/v1/Systems/{id}). This is the ceiling the power-sync benchmark compares with.
 *
 * Baseline in the same run: a plain Node HTTPS server (same processes count, same TLS, a fixed
 * 1 KiB JSON body, no simulation) behind the same number of connections: the ratio shows what the
 * simulation itself costs.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startFleet } from '../sim/fleet.js';
import { generateSimTls } from '../sim/tls.js';
import { printTable, writeResults } from './lib.js';

const quick = process.argv.includes('--quick');
const SIZES = quick ? [1000] : [1000, 10_000];
const PROFILES = ['ideal', 'realistic'] as const;
const WARMUP_S = quick ? 3 : 6;
const DURATION_S = quick ? 5 : 15;
const LOADGEN = fileURLToPath(new URL('./load-gen.js', import.meta.url));

interface LoadResult {
  bmcs: number;
  ok: number;
  errors: number;
  login_failures: number;
  rps: number;
  p50_ms: number;
  p99_ms: number;
}

function loadGen(manifest: string, bmcs: number, auth: 'session' | 'basic'): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--max-old-space-size=4096', LOADGEN, '--manifest', manifest, '--bmcs', String(bmcs), '--warmup', String(WARMUP_S), '--duration', String(DURATION_S), '--auth', auth], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').pop()!)) : reject(new Error(`load generator exited ${code}`))));
  });
}

/** The baseline: N "BMCs" that are all one plain HTTPS server (2 processes, SO_REUSEPORT-style cluster). */
async function plainHttps(dir: string, bmcs: number): Promise<LoadResult> {
  const tls = await generateSimTls();
  const port = 21000 + Math.floor(Math.random() * 20000);
  const server = `
    const https = require('node:https');
    const body = JSON.stringify({ '@odata.id': '/redfish/v1/Systems/x', PowerState: 'On', Status: { State: 'Enabled', Health: 'OK' }, pad: 'x'.repeat(900) });
    https.createServer({ cert: process.env.CERT, key: process.env.KEY, keepAliveTimeout: 120000 }, (req, res) => {
      if (req.method === 'POST') { req.resume(); res.writeHead(201, { 'x-auth-token': 't', 'content-length': 2 }); return res.end('{}'); }
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }); res.end(body);
    }).listen({ port: ${port}, host: '127.0.0.1', reusePort: true });`;
  const env = { ...process.env, CERT: tls.certPem, KEY: tls.keyPem };
  // Two processes like the simulator's two workers (Node 20 supports reusePort on Linux >= 22.12 only,
  // so fall back to node:cluster, which shares the listening socket).
  const clusterMain = `
    const cluster = require('node:cluster');
    if (cluster.isPrimary) { for (let i = 0; i < ${os.availableParallelism()}; i++) cluster.fork(); }
    else { ${server.replace(', reusePort: true', '')} }`;
  const script = path.join(dir, 'plain-https.cjs');
  writeFileSync(script, clusterMain);
  const proc = spawn(process.execPath, [script], { env, stdio: ['ignore', 'ignore', 'inherit'] });
  await new Promise((r) => setTimeout(r, 1500));
  const manifest = path.join(dir, 'plain.json');
  writeFileSync(manifest, JSON.stringify({ bmcs: Array.from({ length: bmcs }, (_, i) => ({ address: `https://127.0.0.1:${port}`, username: 'u', password: 'p', system_id: String(i) })) }));
  try {
    return await loadGen(manifest, bmcs, 'basic');
  } finally {
    proc.kill('SIGTERM');
  }
}

async function main() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ironfleet-bench-sim-'));
  const rows: Array<Record<string, string | number>> = [];
  const doc: Record<string, unknown> = { quick, warmup_s: WARMUP_S, duration_s: DURATION_S, load_generator: '1 process, 1 keep-alive HTTPS connection and 1 request in flight per BMC' };
  try {
    for (const n of SIZES) {
      const tag = n >= 1000 ? `${n / 1000}k` : String(n);
      console.log(`sim-capacity: plain HTTPS baseline, ${n} connections…`);
      const base = await plainHttps(dir, n);
      rows.push({ case: `plain https (baseline)`, bmcs: n, startup_ms: 0, rps: Math.round(base.rps), p50_ms: base.p50_ms, p99_ms: base.p99_ms, errors: base.errors, ratio_vs_baseline: 1 });
      doc[`baseline_plain_https_rps_${tag}`] = Math.round(base.rps);
      for (const profile of PROFILES) {
        console.log(`sim-capacity: ${profile}, ${n} BMCs…`);
        const fleet = await startFleet({ bmcs: n, profile, manifest: path.join(dir, `m-${profile}-${n}.json`), admin_port: 0, port: 9443, seed: 'bench-sim' });
        try {
          const r = await loadGen(fleet.manifestPath, n, 'session');
          const stats = (await fleet.stats()).fleet as Record<string, number>;
          rows.push({ case: `simulator ${profile}`, bmcs: n, startup_ms: fleet.startupMs, rps: Math.round(r.rps), p50_ms: r.p50_ms, p99_ms: r.p99_ms, errors: r.errors, ratio_vs_baseline: Math.round((r.rps / base.rps) * 1000) / 1000 });
          doc[`ceiling_rps_${tag}_${profile}`] = Math.round(r.rps);
          doc[`ratio_vs_plain_https_${tag}_${profile}`] = Math.round((r.rps / base.rps) * 1000) / 1000;
          doc[`startup_ms_${tag}_${profile}`] = fleet.startupMs;
          doc[`sessions_created_${tag}_${profile}`] = stats.sessions_created;
          doc[`login_failures_${tag}_${profile}`] = r.login_failures;
        } finally {
          await fleet.stop();
        }
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  printTable(`sim-capacity (GET /redfish/v1/Systems/{id}, warm-up ${WARMUP_S}s, measured ${DURATION_S}s)`, rows);
  doc.rows = rows;
  console.log(`\nwrote ${writeResults('sim-capacity', doc)}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
