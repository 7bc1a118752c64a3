/** Runs `ironfleet sim` as a separate process and talks to its BMCs and admin API. */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Agent, request } from 'undici';
import { BIN, tmpDir } from '../helpers.js';
import type { Manifest } from '../../sim/fleet.js';

export interface SimProc {
  child: ChildProcess;
  manifest: Manifest;
  admin: string;
  dir: string;
  stop(): Promise<void>;
}

/**
 * Starts a simulator on a random port. Why the retry: a random port can be taken by another test
 * process between choosing and binding it (seen in CI as EADDRINUSE), so an address clash starts
 * the simulator again on another port. `{port}` in `args` stands for the chosen port.
 */
export async function startSim(args: string[]): Promise<SimProc> {
  for (let attempt = 1; ; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 20000);
    try {
      return await startSimOnce(args.map((a) => a.replaceAll('{port}', String(port))), port);
    } catch (err) {
      if (attempt >= 5 || !/EADDRINUSE/.test((err as Error).message)) throw err;
    }
  }
}

async function startSimOnce(args: string[], port: number): Promise<SimProc> {
  const dir = tmpDir('ironfleet-sim-');
  const manifestPath = path.join(dir, 'manifest.json');
  const child = spawn(process.execPath, [BIN, 'sim', '--manifest', manifestPath, '--admin-port', '0', '--port', String(port), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  const ready = await new Promise<{ admin: string }>((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const l = buf.split('\n').find((x) => x.startsWith('{"ready"'));
      if (l) resolve(JSON.parse(l));
    });
    child.on('exit', (c) => reject(new Error(`sim exited with ${c}: ${err}`)));
  });
  return {
    child,
    dir,
    admin: ready.admin,
    manifest: JSON.parse(readFileSync(manifestPath, 'utf8')),
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    },
  };
}

export const insecure = new Agent({ connect: { rejectUnauthorized: false }, keepAliveTimeout: 30_000 });

export interface RfResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  json: Record<string, unknown> | null;
}

export async function rf(base: string, method: string, p: string, opts: { token?: string; basic?: [string, string]; body?: unknown; headers?: Record<string, string>; timeoutMs?: number } = {}): Promise<RfResponse> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.token) headers['x-auth-token'] = opts.token;
  if (opts.basic) headers.authorization = `Basic ${Buffer.from(opts.basic.join(':')).toString('base64')}`;
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  const res = await request(`${base}${p}`, {
    method: method as 'GET',
    headers,
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    dispatcher: insecure,
    headersTimeout: opts.timeoutMs ?? 30_000,
    bodyTimeout: opts.timeoutMs ?? 30_000,
  });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, json: text ? JSON.parse(text) : null };
}

export async function login(base: string, user: string, password: string): Promise<RfResponse & { token?: string }> {
  const r = await rf(base, 'POST', '/redfish/v1/SessionService/Sessions', { body: { UserName: user, Password: password } });
  return { ...r, token: r.headers['x-auth-token'] as string | undefined };
}

export async function admin(sim: SimProc, method: 'GET' | 'POST', p: string, body?: unknown): Promise<{ status: number; json: Record<string, any> }> {
  const res = await request(`${sim.admin}${p}`, { method, body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body) });
  return { status: res.statusCode, json: (await res.body.json()) as Record<string, any> };
}
