/**
 * The database misbehaving under a running conductor process, provoked for real: another process
 * holds SQLite's write lock past the busy timeout while a flow's timer fires; PostgreSQL drops every
 * connection of the conductor (pg_terminate_backend). The process stays up, answers 503 (not 500,
 * not a crash) while the database is away, and the work completes once it is back.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import path from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { freshPgDatabase, startConductorProcess, tmpDir, waitFor, type ConductorProc } from '../helpers.js';
import { fakeNode, raw } from './helpers.js';

const state = async (api: string, n: string) => ((await raw(api, 'GET', `/v1/nodes/${n}`)).json as { provision_state: string }).provision_state;

describe('SQLite busy: another process holds the write lock', () => {
  const dir = tmpDir('ironfleet-sec-busy-');
  const dbFile = path.join(dir, 'ironfleet.db');
  let c: ConductorProc;

  beforeAll(async () => {
    c = await startConductorProcess({ dir, env: { IRONFLEET_DATABASE__BUSY_TIMEOUT_MS: '100' } });
  });
  afterAll(async () => {
    await c?.kill('SIGTERM');
  });

  it('a flow whose timer fires while the database is locked completes after the lock is gone; the API answers 503 meanwhile', async () => {
    const node = await fakeNode(c.apiUrl, 'busy-1', '52:54:00:bb:00:01', 'manageable');
    const r = await raw(c.apiUrl, 'PUT', `/v1/nodes/${node}/states/provision`, { body: { target: 'clean', clean_steps: [{ interface: 'deploy', step: 'wait', args: { seconds: 2 } }] } });
    expect(r.status, r.text).toBe(202);
    // Once the flow is parked on its timer, take the write lock in this process and keep it for
    // 4 s: the wait step's timer (2 s), the deferred scheduler's claim and its bookkeeping all run
    // into SQLITE_BUSY.
    await waitFor(async () => (await state(c.apiUrl, node)) === 'clean wait', 10_000, 'flow parked on its timer');
    const other = new Database(dbFile);
    other.exec('BEGIN EXCLUSIVE');
    const t0 = Date.now();
    let saw503 = false;
    while (Date.now() - t0 < 4000) {
      const w = await raw(c.apiUrl, 'PUT', `/v1/nodes/${node}/maintenance`, { body: { reason: 'probe' } });
      if (w.status === 503) {
        saw503 = true;
        expect(w.fault?.code).toBe('IRF_DB_UNAVAILABLE');
        expect(w.headers['retry-after']).toBe('1');
      } else expect([202, 503]).toContain(w.status);
      await new Promise((res) => setTimeout(res, 300));
    }
    other.exec('ROLLBACK');
    other.close();
    expect(saw503).toBe(true);
    expect(c.child.exitCode, c.logs().slice(-3000)).toBe(null);
    await waitFor(async () => (await state(c.apiUrl, node)) === 'manageable', 30_000, 'clean finished after the lock');
    const hist = (await raw(c.apiUrl, 'GET', `/v1/nodes/${node}/history?detail=true`)).json as { history: Array<{ event: string }> };
    expect(hist.history.some((h) => /clean/i.test(h.event) && /manageable/.test(h.event))).toBe(true);
    expect(c.logs()).toMatch(/database busy or unavailable/);
    expect(c.logs()).not.toMatch(/unhandled promise rejection/);
    // Still healthy: a valid request succeeds next.
    expect((await raw(c.apiUrl, 'DELETE', `/v1/nodes/${node}/maintenance`)).status).toBe(202);
  }, 60_000);

  it('the database locked as an action starts: the node is never left mid-action without a flow', async () => {
    const node = await fakeNode(c.apiUrl, 'busy-2', '52:54:00:bb:00:03', 'manageable');
    const r = await raw(c.apiUrl, 'PUT', `/v1/nodes/${node}/states/provision`, { body: { target: 'clean', clean_steps: [{ interface: 'deploy', step: 'wait', args: { seconds: 1 } }] } });
    expect(r.status, r.text).toBe(202);
    // The action's first writes race this lock: either they land first (the flow parks and
    // completes) or they meet SQLITE_BUSY (the action fails, and says so, once the lock is gone).
    const other = new Database(dbFile);
    other.exec('BEGIN EXCLUSIVE');
    await new Promise((res) => setTimeout(res, 1500));
    other.exec('ROLLBACK');
    other.close();
    const end = await waitFor(async () => {
      const s = await state(c.apiUrl, node);
      return s === 'manageable' || s === 'clean failed' ? s : undefined;
    }, 30_000, 'a settled state');
    if (end === 'clean failed') {
      const n = (await raw(c.apiUrl, 'GET', `/v1/nodes/${node}`)).json as { last_error: string; reservation: string | null };
      expect(n.last_error).toMatch(/database is locked|SQLITE_BUSY/i);
    }
    expect(c.child.exitCode, c.logs().slice(-3000)).toBe(null);
  }, 60_000);
});

describe('PostgreSQL drops every connection of the conductor', () => {
  let c: ConductorProc;
  let url = '';

  beforeAll(async () => {
    url = await freshPgDatabase(inject('pgUrl'));
    c = await startConductorProcess({ dir: tmpDir('ironfleet-sec-pgdrop-'), database: url });
  });
  afterAll(async () => {
    await c?.kill('SIGTERM');
  });

  it('idle and busy connections killed server-side: no crash, the next requests and flows work', async () => {
    const node = await fakeNode(c.apiUrl, 'pg-1', '52:54:00:bb:00:02', 'manageable');
    const name = new URL(url).pathname.slice(1);
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    for (let i = 0; i < 3; i++) {
      const k = await admin.query('SELECT count(*)::int AS n FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()) t', [name]);
      if (i === 0) expect(k.rows[0].n).toBeGreaterThan(0);
      // Make the pool open new connections (and kill those next round, some mid-request).
      await Promise.all([0, 1, 2].map(() => raw(c.apiUrl, 'GET', `/v1/nodes/${node}`)));
      await new Promise((r) => setTimeout(r, 300));
    }
    await admin.end();
    expect(c.child.exitCode, c.logs().slice(-3000)).toBe(null);
    // A request may meet a connection that died under it (503); a retry gets a new one.
    const ok = await waitFor(async () => (await raw(c.apiUrl, 'GET', `/v1/nodes/${node}`)).status === 200, 10_000, 'API back');
    expect(ok).toBe(true);
    const r = await raw(c.apiUrl, 'PUT', `/v1/nodes/${node}/states/provision`, { body: { target: 'provide' } });
    expect(r.status, r.text).toBe(202);
    await waitFor(async () => (await state(c.apiUrl, node)) === 'available', 20_000, 'provide after reconnect');
    expect(c.logs()).not.toMatch(/unhandled promise rejection/);
  }, 60_000);
});
