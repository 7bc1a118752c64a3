/**
 * The BMC fleet engine against the simulator in a separate process: one session per BMC across
 * sweeps and API power actions, re-login on expiry, no storm at the session cap, black holes within
 * the deadline, maintenance on repeated failure and recovery, health, bad driver_info, restarts.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { admin, startSim, type SimProc } from '../../sim/helpers.js';
import { conductorFor } from './helpers.js';
import { startConductorProcess, tmpDir, waitFor } from '../../helpers.js';
import { ApiClient } from '../../../cli/api-client.js';
import type { Conductor } from '../../../conductor/manager.js';
import { PowerSync } from '../../../conductor/power-sync.js';
import { createLogger } from '../../../shared/logger.js';

const FAST = { latency_ms: { get: [5, 20], login: [50, 100], action: [5, 20] }, power_delay_ms: [100, 300], flapping_fraction: 0, storm_fraction: 0, slow_fraction: 0, health_changes_per_hour: 0 };

const sims: SimProc[] = [];
const conductors: Conductor[] = [];
afterEach(async () => {
  while (conductors.length) await conductors.pop()!.stop();
});
afterAll(async () => {
  for (const s of sims) await s.stop();
});

async function sim(n: number, overrides: Record<string, unknown> = {}): Promise<SimProc> {
  const s = await startSim(['--bmcs', String(n), '--profile', 'realistic', '--profile-override', JSON.stringify({ ...FAST, ...overrides })]);
  sims.push(s);
  return s;
}

const fleet = async (s: SimProc) => (await admin(s, 'GET', '/stats')).json.fleet as Record<string, number>;

describe('power sync with one shared session per BMC', () => {
  it('5 sweeps of N BMCs create exactly N sessions, also with API power actions running concurrently', async () => {
    const s = await sim(30);
    const { c, nodes } = await conductorFor(s.manifest);
    conductors.push(c);
    const actions: Promise<unknown>[] = [];
    for (let i = 0; i < 5; i++) {
      if (i === 1) for (const n of nodes.slice(0, 10)) actions.push(c.setPowerState(n, 'power on'));
      const r = await c.powerSync.sweep();
      expect(r.failed).toBe(0);
      expect(r.ok + r.skipped).toBe(30);
    }
    await Promise.all(actions);
    await waitFor(async () => (await c.store.listNodes()).filter((n) => n.power_state === 'power on').length === 10, 20_000, 'power actions landed');
    await c.powerSync.sweep();
    const f = await fleet(s);
    expect(f.sessions_created).toBe(30);
    expect(f.sessions_refused_cap).toBe(0);
    // Each BMC saw at most the configured concurrency from us.
    const peaks = await Promise.all([0, 3, 7].map(async (i) => (await admin(s, 'GET', `/bmcs/${i}`)).json.counters.peak_inflight as number));
    expect(Math.max(...peaks)).toBeLessThanOrEqual(2);
    const hist = await c.store.listHistory(nodes[0]!.id);
    expect(hist.some((h) => /Power state changed to "power on"/.test(h.event))).toBe(true);
  });

  it('session expiry costs exactly one re-login per BMC', async () => {
    const s = await sim(6);
    const { c } = await conductorFor(s.manifest);
    conductors.push(c);
    await c.powerSync.sweep();
    for (let i = 0; i < 6; i++) await admin(s, 'POST', `/bmcs/${i}/faults`, { expire_sessions: true });
    const r = await c.powerSync.sweep();
    expect(r.failed).toBe(0);
    await c.powerSync.sweep();
    const f = await fleet(s);
    expect(f.sessions_created).toBe(12);
    expect(f.served_401).toBe(6);
    expect((await c.pool!.stats()).relogins).toBe(6);
  });

  it('a full session table: backoff, no login storm, and the node is reported', async () => {
    const s = await sim(3, { max_sessions: [0, 0] });
    const { c, nodes } = await conductorFor(s.manifest, { power_sync: { max_retries: 2 } });
    conductors.push(c);
    for (let i = 0; i < 5; i++) {
      const r = await c.powerSync.sweep();
      expect(r.errors_by_code.RF_SESSION_CAP).toBe(3);
    }
    const f = await fleet(s);
    // One refused login per BMC, then the client waits out Retry-After instead of retrying every sweep.
    expect(f.sessions_refused_cap).toBe(3);
    expect(f.requests_login).toBe(3);
    const n = (await c.store.getNodeById(nodes[0]!.id))!;
    expect(n.maintenance).toBe(true);
    expect(n.fault).toBe('power failure');
    expect(n.maintenance_reason).toMatch(/session limit/i);
  });

  it('black-holed BMCs: the sweep ends within its deadline, the others are unaffected, and the node is flagged', async () => {
    const s = await sim(8);
    // The client's own 1 s timeout must fire before the 3 s sweep deadline even on a loaded machine,
    // so each black hole is seen (and counted by its breaker) inside the sweep.
    const { c, nodes } = await conductorFor(s.manifest, { power_sync: { sweep_deadline_ms: 3000, max_retries: 2 }, redfish: { timeout_ms: 1000, breaker_open_ms: 60_000 } });
    conductors.push(c);
    await c.powerSync.sweep();
    await admin(s, 'POST', '/bmcs/2/faults', { black_hole: true });
    await admin(s, 'POST', '/bmcs/5/faults', { black_hole: true });
    const r1 = await c.powerSync.sweep();
    expect(r1.duration_ms).toBeLessThan(3500);
    expect(r1.ok).toBe(6);
    expect(r1.failed).toBe(2);
    expect(r1.errors_by_code.RF_TIMEOUT).toBe(2);
    const r2 = await c.powerSync.sweep();
    expect(r2.ok).toBe(6);
    // Second failure: maintenance; the breaker is now open, so the next sweep costs nothing.
    const flagged = (await c.store.getNodeById(nodes[2]!.id))!;
    expect(flagged).toMatchObject({ maintenance: true, fault: 'power failure' });
    const r3 = await c.powerSync.sweep();
    expect(r3.errors_by_code.RF_CIRCUIT_OPEN).toBe(2);
    expect(r3.duration_ms).toBeLessThan(1500);
    expect((await admin(s, 'GET', '/bmcs/2')).json.counters.black_holed).toBe(2);
  });

  it('a sweep window of one read per thread: black-holed BMCs age out of it and hold up nobody', async () => {
    const s = await sim(8);
    // Each thread keeps one read young in flight; a black hole waits out its 2 s timeout. Were it
    // to keep its place in the window, the reads queued behind it would miss the 3 s deadline.
    const { c } = await conductorFor(s.manifest, { power_sync: { sweep_deadline_ms: 3000, max_retries: 2 }, redfish: { timeout_ms: 2000, sweep_window: 1, breaker_open_ms: 60_000 } });
    conductors.push(c);
    expect((await c.powerSync.sweep()).ok).toBe(8);
    for (const b of [0, 1, 4]) await admin(s, 'POST', `/bmcs/${b}/faults`, { black_hole: true });
    const r = await c.powerSync.sweep();
    expect(r).toMatchObject({ ok: 5, failed: 3 });
    expect(r.errors_by_code.RF_TIMEOUT).toBe(3);
    expect(r.duration_ms).toBeLessThan(3000);
  });

  it('sweeps the open breaker answers for are no strikes: maintenance needs max_retries real failures', async () => {
    const s = await sim(2);
    const { c, nodes } = await conductorFor(s.manifest, { power_sync: { sweep_deadline_ms: 3000, max_retries: 2 }, redfish: { timeout_ms: 800, breaker_threshold: 1, breaker_open_ms: 60_000 } });
    conductors.push(c);
    await c.powerSync.sweep();
    await admin(s, 'POST', '/bmcs/1/faults', { black_hole: true });
    const r1 = await c.powerSync.sweep();
    expect(r1.errors_by_code.RF_TIMEOUT).toBe(1);
    for (let i = 0; i < 3; i++) expect((await c.powerSync.sweep()).errors_by_code.RF_CIRCUIT_OPEN).toBe(1);
    // One real failure, three breaker answers: not in maintenance, and the BMC was asked once.
    expect((await c.store.getNodeById(nodes[1]!.id))!).toMatchObject({ maintenance: false, fault: null });
    expect((await admin(s, 'GET', '/bmcs/1')).json.counters.black_holed).toBe(1);
  });

  it('recovery clears the power-failure maintenance; manual maintenance is left alone', async () => {
    const s = await sim(2);
    const { c, nodes } = await conductorFor(s.manifest, { power_sync: { max_retries: 1, sweep_deadline_ms: 1500 }, redfish: { timeout_ms: 800, breaker_threshold: 100 } });
    conductors.push(c);
    await c.store.updateNode(nodes[1]!.id, { maintenance: true, maintenance_reason: 'operator' });
    await admin(s, 'POST', '/bmcs/0/faults', { down: true });
    await c.powerSync.sweep();
    expect((await c.store.getNodeById(nodes[0]!.id))!.fault).toBe('power failure');
    await admin(s, 'POST', '/bmcs/0/faults', { down: false });
    const r = await c.powerSync.sweep();
    expect(r.recovered).toBe(1);
    expect((await c.store.getNodeById(nodes[0]!.id))!).toMatchObject({ maintenance: false, fault: null });
    expect((await c.store.getNodeById(nodes[1]!.id))!).toMatchObject({ maintenance: true, maintenance_reason: 'operator' });
    const hist = await c.store.listHistory(nodes[0]!.id);
    expect(hist.map((h) => h.event).join('\n')).toMatch(/maintenance \("power failure"\) cleared/);
  });

  it('health changes land on the node with a history event', async () => {
    const s = await sim(2);
    const { c, nodes } = await conductorFor(s.manifest);
    conductors.push(c);
    await c.powerSync.sweep();
    expect((await c.store.getNodeById(nodes[1]!.id))!.health).toBe('OK');
    await admin(s, 'POST', '/bmcs/1/faults', { health: 'Critical' });
    const r = await c.powerSync.sweep();
    expect(r.changed_health).toBe(1);
    expect((await c.store.getNodeById(nodes[1]!.id))!.health).toBe('Critical');
    const h = await c.store.listHistory(nodes[1]!.id);
    expect(h.at(-1)).toMatchObject({ event_type: 'monitoring', severity: 'WARNING' });
    expect(h.at(-1)!.event).toMatch(/from OK to Critical/);
  });

  it('out-of-band power changes: force policy pushes the DB state back, record policy records it', async () => {
    const s = await sim(2);
    const { c, nodes } = await conductorFor(s.manifest, { power_sync: { force_power_state: true } });
    conductors.push(c);
    await c.powerSync.sweep();
    const steady = await c.powerSync.sweep();
    // A steady fleet: every reading matched its node in the BMC thread and only a count came back.
    expect(steady).toMatchObject({ nodes: 2, ok: 2, unchanged: 2, changed_power: 0 });
    await admin(s, 'POST', '/bmcs/0/faults', { power: 'on' });
    await new Promise((r) => setTimeout(r, 400));
    const r = await c.powerSync.sweep();
    expect(r.changed_power).toBe(1);
    expect(r).toMatchObject({ ok: 2, unchanged: 1 });
    await waitFor(async () => (await admin(s, 'GET', '/bmcs/0')).json.machine.power === 'Off', 10_000, 'forced back off');
    expect((await c.store.getNodeById(nodes[0]!.id))!.power_state).toBe('power off');
    await c.stop();
    conductors.pop();
    const rec = await conductorFor(s.manifest, { power_sync: { force_power_state: false } });
    conductors.push(rec.c);
    await rec.c.powerSync.sweep();
    await admin(s, 'POST', '/bmcs/1/faults', { power: 'on' });
    await new Promise((r) => setTimeout(r, 400));
    await rec.c.powerSync.sweep();
    expect((await rec.c.store.getNodeById(rec.nodes[1]!.id))!.power_state).toBe('power on');
    expect((await admin(s, 'GET', '/bmcs/1')).json.machine.power).toBe('On');
  });

  it('bad driver_info gives a clear per-node error and does not disturb the sweep', async () => {
    const s = await sim(3);
    const { c, nodes } = await conductorFor(s.manifest);
    conductors.push(c);
    await c.store.updateNode(nodes[0]!.id, { driver_info: { redfish_address: 'https://127.10.0.1:1', redfish_username: 'x' } });
    await c.store.updateNode(nodes[1]!.id, { driver_info: { ...nodes[1]!.driver_info, redfish_address: 'not a url ::' } });
    const r = await c.powerSync.sweep();
    expect(r.ok).toBe(1);
    expect(r.errors_by_code.RF_CONFIG).toBe(2);
    expect((await c.store.getNodeById(nodes[0]!.id))!.last_error).toMatch(/driver_info\.redfish_password is required/);
    expect((await c.store.getNodeById(nodes[1]!.id))!.last_error).toMatch(/redfish_address/);
  });

  it('a steady sweep reuses its plan; a moved row or a ring change makes a new one', async () => {
    const s = await sim(4);
    const { c, nodes } = await conductorFor(s.manifest);
    conductors.push(c);
    // The conductor's own stores, drivers and BMC threads; ownership is ours to move here.
    const mine = new Set(nodes.map((n) => n.uuid));
    let ring = 0;
    let asked = 0;
    const ps = new PowerSync({
      store: c.store, drivers: c.drivers, cfg: c.cfg.power_sync, log: createLogger({ level: 'silent' }),
      history: (node, ev, type, sev) => c.ops.history(node, ev, type, sev),
      setPowerState: (node, target) => c.provisioning.setPowerState(node, target),
      owns: (n) => (asked++, mine.has(n.uuid)),
      ownershipGeneration: () => ring,
    });
    expect((await ps.sweep()).ok).toBe(4); // records the power states: rows move
    expect((await ps.sweep()).ok).toBe(4);
    asked = 0;
    expect(await ps.sweep()).toMatchObject({ nodes: 4, ok: 4, unchanged: 4, failed: 0 });
    expect(asked).toBe(0); // nothing moved: ownership and eligibility are not asked again
    mine.delete(nodes[0]!.uuid);
    ring++;
    expect(await ps.sweep()).toMatchObject({ nodes: 3, ok: 3 });
    expect(asked).toBe(4);
    await c.store.updateNode(nodes[1]!.id, { maintenance: true, maintenance_reason: 'by hand' });
    expect(await ps.sweep()).toMatchObject({ nodes: 2, ok: 2, skipped: 1 });
    expect(asked).toBe(8);
  });

  it('a graceful stop logs every session out (no orphans on the BMC)', async () => {
    const s = await sim(4);
    const first = await conductorFor(s.manifest);
    await first.c.powerSync.sweep();
    expect((await fleet(s)).sessions_live).toBe(4);
    expect((await first.c.store.listBmcSessions('rf-test')).length).toBe(4);
    await first.c.stop();
    expect((await fleet(s)).sessions_live).toBe(0);
    expect((await fleet(s)).sessions_deleted).toBe(4);

  });

  it('a SIGKILLed conductor process leaves its sessions persisted; the restarted one reuses them (no orphans, no new logins)', async () => {
    const s = await sim(4);
    const dir = tmpDir('ironfleet-rf-crash-');
    const env = { IRONFLEET_POWER_SYNC__INTERVAL_S: '0.5', IRONFLEET_REDFISH__POOL_SIZE: '2' };
    let proc = await startConductorProcess({ dir, env });
    const api = () => new ApiClient({ url: proc.apiUrl });
    for (const b of s.manifest.bmcs) {
      await api().post('/v1/nodes', { driver: 'redfish', name: b.name, driver_info: { redfish_address: b.address, redfish_username: b.username, redfish_password: b.password, redfish_system_id: b.system_id, redfish_verify_ca: false } });
      await api().put(`/v1/nodes/${b.name}/states/provision`, { target: 'manage' });
    }
    await waitFor(async () => (await api().get<{ nodes: Array<{ provision_state: string }> }>('/v1/nodes')).nodes.every((n) => n.provision_state === 'manageable'), 20_000, 'nodes verified through their BMCs');
    await waitFor(async () => (await fleet(s)).sessions_live === 4, 20_000, 'sessions from the first conductor');
    await proc.kill('SIGKILL');
    proc = await startConductorProcess({ dir, env, name: 'conductor-2' });
    await waitFor(async () => (await fleet(s)).requests_get > 20, 20_000, 'second conductor sweeping');
    let f = await fleet(s);
    expect(f.sessions_created).toBe(4);
    expect(f.sessions_live).toBe(4);
    await proc.kill('SIGTERM');
    f = await fleet(s);
    expect(f.sessions_live).toBe(0);
    expect(f.sessions_created).toBe(4);
    expect(proc.logs()).not.toContain(s.manifest.bmcs[0]!.password);
  });
});
