/** Shared benchmark plumbing: machine info, process sampling, table output, results JSON. */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const BIN = path.join(ROOT, 'bin', 'ironfleet.js');

export function machineInfo(): Record<string, unknown> {
  return {
    node: process.version,
    cpus: os.cpus().length,
    cpu_model: os.cpus()[0]?.model ?? 'unknown',
    mem_gib: Math.round(os.totalmem() / 2 ** 30),
    platform: `${os.platform()} ${os.release()}`,
    loadavg_at_start: os.loadavg().map((x) => Math.round(x * 100) / 100),
  };
}

export { procSample, treeCpuS } from '../shared/proc-stats.js';

export function printTable(title: string, rows: Array<Record<string, string | number>>): void {
  if (rows.length === 0) return;
  const cols = Object.keys(rows[0]!);
  const cell = (v: string | number) => (typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toFixed(2)) : v);
  const widths = cols.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c] ?? '').length)));
  const line = (vals: string[]) => '| ' + vals.map((v, i) => v.padStart(widths[i]!)).join(' | ') + ' |';
  console.log(`\n${title}`);
  console.log(line(cols));
  console.log('|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|');
  for (const r of rows) console.log(line(cols.map((c) => cell(r[c] ?? ''))));
}

export function writeResults(name: string, doc: Record<string, unknown>): string {
  const dir = path.join(ROOT, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify({ bench: name, finished_at: new Date().toISOString(), machine: machineInfo(), ...doc }, null, 2));
  return file;
}

/**
 * Runs `ironfleet <args>` and resolves with its `{"ready":…}` line (conductor, sim). stdout is
 * drained afterwards; stderr goes to ours.
 */
export function spawnReady(args: string[], o: { env?: NodeJS.ProcessEnv; nodeArgs?: string[] } = {}): Promise<{ child: ChildProcess; ready: Record<string, unknown> }> {
  const child = spawn(process.execPath, [...(o.nodeArgs ?? ['--max-old-space-size=4096']), BIN, ...args], { env: { ...process.env, ...o.env }, stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const l = buf.split('\n').find((x) => x.startsWith('{"ready"'));
      if (l) {
        child.stdout!.removeAllListeners('data');
        child.stdout!.resume();
        resolve({ child, ready: JSON.parse(l) });
      }
    });
    child.once('exit', (code) => reject(new Error(`${args[0]} exited with ${code}`)));
  });
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const LOADGEN = fileURLToPath(new URL('./load-gen.js', import.meta.url));

/** What the load generator (load-gen.ts, its own process) printed for one run on a fleet. */
export interface LoadGenResult {
  bmcs: number;
  ok: number;
  errors: number;
  rps: number;
  p50_ms: number;
  p99_ms: number;
  cpu_ms_per_request: number | null;
}

/** Runs the load generator on the first `bmcs` BMCs of a manifest for `seconds` (3 s warm-up). */
export function runLoadGen(manifest: string, bmcs: number, seconds: number): Promise<LoadGenResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--max-old-space-size=4096', LOADGEN, '--manifest', manifest, '--bmcs', String(bmcs), '--warmup', '3', '--duration', String(seconds), '--auth', 'session'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').pop()!)) : reject(new Error(`load generator exited ${code}`))));
  });
}

/** RSS per idle kept-alive TLS socket in a bare Node process (the load generator's --hold mode) against `bmcs` of the fleet. */
export function tlsSocketFloor(manifest: string, bmcs: number): Promise<{ sockets: number; failed: number; kib_per_socket: number | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [LOADGEN, '--manifest', manifest, '--bmcs', String(bmcs), '--hold', '1'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').pop()!)) : reject(new Error(`load generator (--hold) exited ${code}`))));
  });
}

/** A complete `nodes` row for seeding benchmark databases directly (setup, not what is measured). */
export function benchNodeRow(o: { uuid: string; name: string; driver: string; driver_info?: Record<string, unknown>; provision_state: string; power_state?: string | null }) {
  const ts = new Date().toISOString();
  return {
    uuid: o.uuid, name: o.name, driver: o.driver, driver_info: JSON.stringify(o.driver_info ?? {}), properties: '{}', instance_info: '{}', driver_internal_info: '{}', extra: '{}',
    instance_uuid: null, resource_class: null, provision_state: o.provision_state, target_provision_state: null, power_state: o.power_state ?? null, target_power_state: null,
    maintenance: 0, maintenance_reason: null, fault: null, last_error: null, reservation: null, conductor_group: '', health: null, agent_token_hash: null, agent_boot_id: null,
    agent_last_seen: null, provision_updated_at: ts, created_at: ts, updated_at: null,
  };
}

/** A deterministic image of `bytes` served on loopback (every node writes it, sha256-verified). */
export async function serveBenchImage(bytes: number): Promise<{ url: string; sha: string; server: http.Server }> {
  const image = Buffer.alloc(bytes);
  for (let i = 0; i + 4 <= image.length; i += 4) image.writeUInt32LE((i * 2654435761) >>> 0, i);
  const sha = createHash('sha256').update(image).digest('hex');
  const server = http.createServer((_req, res) => res.writeHead(200, { 'content-length': image.length }).end(image));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/bench.raw`, sha, server };
}

/**
 * Serves `body` at `<url>` on loopback, 1 MiB every `delayMs` (a deploy that takes long enough
 * for a progress bar to move, or for a conductor to be killed mid-write; benches and tests). `close` stops it.
 */
export async function serveSlowly(body: Buffer, delayMs: number): Promise<{ url: string; close(): Promise<void> }> {
  const MiB = 1024 * 1024;
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-length': body.length });
    let o = 0;
    const tick = () => {
      if (res.destroyed) return;
      if (o >= body.length) return void res.end();
      res.write(body.subarray(o, o + MiB));
      o += MiB;
      setTimeout(tick, delayMs);
    };
    tick();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/os.img`,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
