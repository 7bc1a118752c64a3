/** Test helpers: real processes on loopback, fresh databases, polling. */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, createWriteStream } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import pg from 'pg';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const BIN = path.join(ROOT, 'bin', 'ironfleet.js');

export function tmpDir(prefix = 'ironfleet-test-'): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** A fresh, empty PostgreSQL database on the shared test server. */
export async function freshPgDatabase(serverUrl: string): Promise<string> {
  const name = `t_${randomBytes(6).toString('hex')}`;
  const c = new pg.Client({ connectionString: `${serverUrl}/postgres` });
  await c.connect();
  await c.query(`CREATE DATABASE ${name}`);
  await c.end();
  return `${serverUrl}/${name}`;
}

export async function waitFor<T>(fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 20_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${lastErr ? `: ${String(lastErr)}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface Proc {
  child: ChildProcess;
  logFile: string;
  logs(): string;
  kill(signal?: NodeJS.Signals): Promise<number | null>;
}

function spawnLogged(args: string[], logFile: string, env: NodeJS.ProcessEnv = {}, fdLimit?: number): Proc {
  const out = createWriteStream(logFile);
  // With fdLimit the process runs under `ulimit -n` (exec keeps the PID: kill() reaches node itself).
  const child = fdLimit
    ? spawn('/bin/sh', ['-c', `ulimit -n ${fdLimit} && exec "$0" "$@"`, process.execPath, BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.pipe(out, { end: false });
  child.stderr!.pipe(out, { end: false });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code, sig) => resolve(code ?? (sig ? -1 : null))));
  return {
    child,
    logFile,
    logs: () => readFileSync(logFile, 'utf8'),
    async kill(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

export interface ConductorProc extends Proc {
  apiUrl: string;
  agentAddr: string;
  apiPort: number;
  agentPort: number;
}

/** Starts `ironfleet conductor` on ephemeral ports; resolves when it prints its ready line. */
export async function startConductorProcess(o: { dir: string; database?: string; env?: NodeJS.ProcessEnv; config?: string; apiPort?: number; agentPort?: number; name?: string; fdLimit?: number }): Promise<ConductorProc> {
  const logFile = path.join(o.dir, `${o.name ?? 'conductor'}.log`);
  const args = ['conductor', '--api-port', String(o.apiPort ?? 0), '--agent-port', String(o.agentPort ?? 0), '--database', o.database ?? `sqlite://${path.join(o.dir, 'ironfleet.db')}`];
  if (o.config) args.push('--config', o.config);
  const p = spawnLogged(args, logFile, { IRONFLEET_HOST: 'test-conductor', IRONFLEET_AGENT__LIVENESS_FLUSH_MS: '200', IRONFLEET_SECURITY__SECRETS_KEY_FILE: path.join(o.dir, 'secrets.key'), ...o.env }, o.fdLimit);
  const ready = await new Promise<{ api_port: number; agent_port: number }>((resolve, reject) => {
    let buf = '';
    const t = setTimeout(() => reject(new Error(`conductor did not start:\n${buf}`)), 30_000);
    p.child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const line = buf.split('\n').find((l) => l.startsWith('{"ready":true'));
      if (line) {
        clearTimeout(t);
        resolve(JSON.parse(line));
      }
    });
    p.child.on('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`conductor exited with ${code}:\n${buf}`));
    });
  });
  return { ...p, apiPort: ready.api_port, agentPort: ready.agent_port, apiUrl: `http://127.0.0.1:${ready.api_port}`, agentAddr: `127.0.0.1:${ready.agent_port}` };
}

export function startAgentProcess(o: { dir: string; conductor: string; stateDir: string; name?: string; extraArgs?: string[] }): Proc {
  return spawnLogged(['agent', '--conductor', o.conductor, '--state-dir', o.stateDir, '--log-level', 'debug', ...(o.extraArgs ?? [])], path.join(o.dir, `${o.name ?? 'agent'}.log`));
}

export { serveSlowly } from '../bench/lib.js';
