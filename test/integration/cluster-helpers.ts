/**
 * What the several-conductors tests share: the membership settings they run with, starting three
 * conductors on one database and waiting until each sees the ring of three, and an API call that
 * reports which conductor served it, and what a takeover may not leave behind.
 */
import path from 'node:path';
import pg from 'pg';
import { startConductorProcess, waitFor, type ConductorProc } from '../helpers.js';

/** A short heartbeat (takeover in seconds) that still tolerates a loaded, parallel suite. */
export function clusterEnv(dir: string): Record<string, string> {
  return {
    IRONFLEET_CONDUCTOR__HEARTBEAT_INTERVAL_S: '0.5',
    IRONFLEET_CONDUCTOR__HEARTBEAT_TIMEOUT_S: '4',
    IRONFLEET_SECURITY__SECRETS_KEY_FILE: path.join(dir, 'secrets.key'),
  };
}

/** Starts c1, c2, c3 on `database`; resolves once every one of them sees all three alive (their rings agree). */
export async function startThree(dir: string, database: string, env: Record<string, string>, into: Map<string, ConductorProc>): Promise<void> {
  for (const name of ['c1', 'c2', 'c3']) into.set(name, await startConductorProcess({ dir, database, name, env: { ...env, IRONFLEET_HOST: name } }));
  await waitFor(async () => {
    for (const c of into.values()) {
      const list = (await (await fetch(`${c.apiUrl}/v1/conductors`)).json()) as { conductors: Array<{ alive: boolean }> };
      if (list.conductors.filter((x) => x.alive).length !== 3) return undefined;
    }
    return true;
  }, 20_000, 'ring of three');
}

/** One API call (latest microversion) through a given conductor. */
export async function callVia<T = unknown>(c: ConductorProc, method: string, p: string, body?: unknown): Promise<{ status: number; json: T; servedBy: string | null }> {
  const res = await fetch(`${c.apiUrl}${p}`, { method, headers: { 'x-openstack-ironic-api-version': 'latest', ...(body ? { 'content-type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined });
  const text = await res.text();
  return { status: res.status, json: (text ? JSON.parse(text) : undefined) as T, servedBy: res.headers.get('x-ironfleet-served-by') };
}

/** Node locks still held and deferred actions still RUNNING, read straight from the database. */
export async function leftovers(database: string): Promise<{ locks: number; running: number }> {
  const client = new pg.Client({ connectionString: database });
  await client.connect();
  try {
    const locks = (await client.query(`SELECT count(*)::int AS n FROM nodes WHERE reservation IS NOT NULL`)).rows[0].n as number;
    const running = (await client.query(`SELECT count(*)::int AS n FROM deferred_actions WHERE state = 'RUNNING'`)).rows[0].n as number;
    return { locks, running };
  } finally {
    await client.end();
  }
}
