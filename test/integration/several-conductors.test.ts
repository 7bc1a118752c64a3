/**
 * Several conductors on one real PostgreSQL (the suite's embedded server), real processes, the
 * simulator's BMCs: the fleet splits across three owners on the hash ring, every BMC has exactly
 * one session fleet-wide (the simulator's own counters), any conductor's API acts on any node
 * (forwarded to the owner), GET /v1/conductors lists all three; then one conductor is killed with
 * SIGKILL during sweeps and a `wait` step, and the survivors own, sweep and finish its nodes within
 * the takeover window with no new BMC login, no lock left and no deferred action left RUNNING.
 * A second conductor on a SQLite database is refused through the database.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { freshPgDatabase, startConductorProcess, tmpDir, waitFor, type ConductorProc } from '../helpers.js';
import { admin, startSim, type SimProc } from '../sim/helpers.js';
import { callVia, clusterEnv, leftovers, startThree } from './cluster-helpers.js';

type N = { uuid: string; name: string; provision_state: string; power_state: string | null; conductor: string | null; reservation: string | null; last_error: string | null };
type C = { hostname: string; alive: boolean; state: string; api_url: string | null };

const BMCS = 24;

describe('three conductors on PostgreSQL', () => {
  const dir = tmpDir('ironfleet-ha-');
  let db = '';
  let sim: SimProc;
  const conductors = new Map<string, ConductorProc>();
  const env = { ...clusterEnv(dir), IRONFLEET_POWER_SYNC__INTERVAL_S: '1', IRONFLEET_POWER_SYNC__FORCE_POWER_STATE: 'false', IRONFLEET_LOGGING__LEVEL: 'info' };
  const call = <T = unknown>(c: string, method: string, p: string, body?: unknown) => callVia<T>(conductors.get(c)!, method, p, body);
  const nodes = async (via = 'c1') => (await call<{ nodes: N[] }>(via, 'GET', '/v1/nodes?detail=true&limit=1000')).json.nodes;
  const simStats = async () => (await admin(sim, 'GET', '/stats')).json.fleet as Record<string, number>;

  beforeAll(async () => {
    db = await freshPgDatabase(inject('pgUrl'));
    sim = await startSim(['--bmcs', String(BMCS), '--profile', 'ideal', '--http', '--initial-power', 'off']);
    await startThree(dir, db, env, conductors);
    for (const b of sim.manifest.bmcs) {
      const r = await call<N>('c1', 'POST', '/v1/nodes', { driver: 'redfish', name: b.name, driver_info: { redfish_address: b.address, redfish_username: b.username, redfish_password: b.password, redfish_system_id: b.system_id } });
      expect(r.status).toBe(201);
    }
  }, 120_000);

  afterAll(async () => {
    for (const c of conductors.values()) await c.kill('SIGKILL');
    await sim?.stop();
  });

  it('lists every conductor from any of them; the fleet splits across all three', async () => {
    for (const via of ['c1', 'c2', 'c3']) {
      const list = (await call<{ conductors: C[] }>(via, 'GET', '/v1/conductors')).json.conductors;
      expect(list.map((c) => [c.hostname, c.alive, c.state])).toEqual([['c1', true, 'online'], ['c2', true, 'online'], ['c3', true, 'online']]);
      expect(list.every((c) => /^http:\/\/127\.0\.0\.1:\d+$/.test(c.api_url ?? ''))).toBe(true);
    }
    const owners = (await nodes()).map((n) => n.conductor);
    for (const c of ['c1', 'c2', 'c3']) expect(owners.filter((o) => o === c).length).toBeGreaterThan(0);
    // Every conductor computes the same owners.
    expect((await nodes('c3')).map((n) => n.conductor)).toEqual(owners);
  });

  it('any conductor acts on any node (forwarded to its owner); one session per BMC fleet-wide', async () => {
    const all = await nodes();
    const served = new Set<string>();
    for (const n of all) {
      const r = await call('c1', 'PUT', `/v1/nodes/${n.uuid}/states/provision`, { target: 'manage' });
      expect(r.status).toBe(202);
      served.add(r.servedBy ?? 'c1');
    }
    expect(served).toEqual(new Set(['c1', 'c2', 'c3']));
    await waitFor(async () => (await nodes()).every((n) => n.provision_state === 'manageable') || undefined, 60_000, 'all manageable');
    // Sweeps of manageable nodes run on their owners only; after several, still one session each.
    await new Promise((r) => setTimeout(r, 3000));
    const s = await simStats();
    expect(s.sessions_created).toBe(BMCS);
    expect(s.bmcs_with_sessions).toBe(BMCS);
    for (const c of ['c1', 'c2', 'c3']) {
      const m = await (await fetch(`${conductors.get(c)!.apiUrl}/metrics`)).text();
      const swept = Number(/ironfleet_power_sync_nodes\{outcome="ok"\} (\d+)/.exec(m)?.[1] ?? -1);
      const owned = (await nodes()).filter((n) => n.conductor === c).length;
      expect(swept).toBe(owned);
    }
  }, 90_000);

  it('SIGKILL one conductor during sweeps and a wait step: survivors own, sweep and finish its nodes in seconds, without a login', async () => {
    const before = await nodes();
    const victim = 'c2';
    const theirs = before.filter((n) => n.conductor === victim);
    expect(theirs.length).toBeGreaterThan(0);
    // A wait step on one of the victim's nodes, parked in clean wait when the victim dies.
    const waiting = theirs[0]!;
    expect((await call('c1', 'PUT', `/v1/nodes/${waiting.uuid}/states/provision`, { target: 'clean', clean_steps: [{ interface: 'deploy', step: 'wait', args: { seconds: 3 } }] })).status).toBe(202);
    await waitFor(async () => (await call<N>('c1', 'GET', `/v1/nodes/${waiting.uuid}`)).json.provision_state === 'clean wait' || undefined, 10_000, 'clean wait');
    const sessionsBefore = (await simStats()).sessions_created;

    const t0 = Date.now();
    await conductors.get(victim)!.kill('SIGKILL');
    conductors.delete(victim);
    // Until the ring moves, a change sent to another conductor for the victim's node cannot be
    // carried out: a 503 the caller may retry, nothing done.
    const early = await fetch(`${conductors.get('c1')!.apiUrl}/v1/nodes/${theirs.at(-1)!.uuid}/states/power`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ target: 'power on' }) });
    expect(early.status).toBe(503);
    expect(early.headers.get('retry-after')).toBe('2');
    expect(JSON.parse(JSON.parse(await early.text()).error_message)).toMatchObject({ code: 'IRF_CONDUCTOR_UNAVAILABLE', faultstring: expect.stringMatching(new RegExp(`owned by conductor ${victim}, which did not answer`)) });
    // Owned by the survivors.
    await waitFor(async () => (await nodes()).every((n) => n.conductor !== victim) || undefined, 15_000, 'victim nodes re-owned');
    const owned = Date.now() - t0;
    // Swept by them: an out-of-band power change on one of its BMCs is recorded.
    const probe = theirs.at(-1)!;
    const bmcIndex = sim.manifest.bmcs.findIndex((b) => b.name === probe.name);
    await admin(sim, 'POST', `/bmcs/${bmcIndex}/faults`, { power: 'on' });
    await waitFor(async () => (await call<N>('c3', 'GET', `/v1/nodes/${probe.uuid}`)).json.power_state === 'power on' || undefined, 15_000, 'probe swept by a survivor');
    const swept = Date.now() - t0;
    expect(swept).toBeLessThan(15_000);
    // The wait step finished on its new owner.
    const done = await waitFor(async () => {
      const n = (await call<N>('c1', 'GET', `/v1/nodes/${waiting.uuid}`)).json;
      return n.provision_state === 'manageable' ? n : undefined;
    }, 20_000, 'wait step done');
    expect(done.last_error).toBeNull();
    // No new logins: the survivors adopted the victim's sessions.
    expect((await simStats()).sessions_created).toBe(sessionsBefore);

    const list = (await call<{ conductors: C[] }>('c1', 'GET', '/v1/conductors')).json.conductors;
    expect(list.find((c) => c.hostname === victim)).toMatchObject({ alive: false, state: 'offline' });
    expect(await leftovers(db)).toEqual({ locks: 0, running: 0 });
    console.log(`takeover: owned after ${owned} ms, swept after ${swept} ms`);
  }, 90_000);

  it('drain (SIGUSR2): the conductor leaves the ring, its nodes move to the last one without a login, it exits', async () => {
    const logins = (await simStats()).requests_login;
    const drained = conductors.get('c3')!;
    expect(await drained.kill('SIGUSR2')).toBe(0);
    conductors.delete('c3');
    await waitFor(async () => (await nodes()).every((n) => n.conductor === 'c1') || undefined, 15_000, 'all nodes on c1');
    const probe = (await nodes()).at(-2)!;
    const bmcIndex = sim.manifest.bmcs.findIndex((b) => b.name === probe.name);
    const want = probe.power_state === 'power on' ? 'off' : 'on';
    await admin(sim, 'POST', `/bmcs/${bmcIndex}/faults`, { power: want });
    await waitFor(async () => (await call<N>('c1', 'GET', `/v1/nodes/${probe.uuid}`)).json.power_state === `power ${want}` || undefined, 15_000, 'swept by c1');
    expect((await simStats()).requests_login).toBe(logins);
    const list = (await call<{ conductors: C[] }>('c1', 'GET', '/v1/conductors')).json.conductors;
    expect(list.find((c) => c.hostname === 'c3')).toMatchObject({ alive: false, state: 'offline' });
  }, 60_000);

  it('a second conductor on one SQLite database is refused, naming the first', async () => {
    const sqlite = `sqlite://${path.join(dir, 'single.db')}`;
    const first = await startConductorProcess({ dir, database: sqlite, name: 'solo-1', env: { IRONFLEET_HOST: 'solo-1' } });
    try {
      await expect(startConductorProcess({ dir, database: sqlite, name: 'solo-2', env: { IRONFLEET_HOST: 'solo-2' } })).rejects.toThrow(/exited with 2/);
      expect(readFileSync(path.join(dir, 'solo-2.log'), 'utf8')).toMatch(/another conductor \(solo-1, pid \d+, started .*\) is running on this SQLite database; SQLite supports one conductor/);
    } finally {
      await first.kill('SIGTERM');
    }
    // After a clean stop the database takes a conductor again.
    const again = await startConductorProcess({ dir, database: sqlite, name: 'solo-3', env: { IRONFLEET_HOST: 'solo-3' } });
    await again.kill('SIGTERM');
  }, 60_000);
});
