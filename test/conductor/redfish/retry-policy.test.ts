/**
 * The Redfish retry policy (conductor/redfish/retry-policy.ts) provoked for real: a simulator
 * process whose BMCs answer scripted faults (503 + Retry-After, 500 after the reset landed, a
 * connection reset mid-PATCH, login 503), black-hole or refuse credentials, driven through the
 * redfish hardware type of an in-process conductor (real BMC worker threads).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { admin, startSim, type SimProc } from '../../sim/helpers.js';
import { conductorFor } from './helpers.js';
import type { Conductor } from '../../../conductor/manager.js';
import type { Node } from '../../../conductor/db/store.js';
import type { DriverContext } from '../../../conductor/drivers/base.js';

const FAST = { latency_ms: { get: [2, 5], login: [5, 10], action: [2, 5] }, power_delay_ms: [20, 40], flapping_fraction: 0, storm_fraction: 0, slow_fraction: 0, health_changes_per_hour: 0 };
const ctx: DriverContext = { setInternalInfo: async () => {} };

describe('Redfish operations ride through BMC faults', () => {
  let sim: SimProc;
  let c: Conductor;
  let nodes: Node[];
  beforeAll(async () => {
    sim = await startSim(['--bmcs', '9', '--profile', 'realistic', '--profile-override', JSON.stringify(FAST), '--initial-power', 'off']);
    ({ c, nodes } = await conductorFor(sim.manifest, { redfish: { timeout_ms: 1200, connect_timeout_ms: 1000, breaker_threshold: 2, breaker_open_ms: 1500, operation_deadline_s: 8 } }));
  });
  afterAll(async () => {
    await c?.stop();
    await sim?.stop();
  });

  const bmc = async (i: number) => (await admin(sim, 'GET', `/bmcs/${i}`)).json as { counters: Record<string, number>; machine: { power: string; resets: number; boot: { target: string; enabled: string } } };
  const fault = (i: number, body: unknown) => admin(sim, 'POST', `/bmcs/${i}/faults`, body);
  const power = () => c.drivers.get('redfish').power;

  it('503 with Retry-After on Reset: tried again after the wait, and exactly one reset lands', async () => {
    const before = await bmc(0);
    await fault(0, { script: [{ method: 'POST', path: 'ComputerSystem.Reset', status: 503, retry_after_s: 1, times: 2 }] });
    const t0 = Date.now();
    expect(await power().setPowerState(nodes[0]!, 'power on', ctx, 0)).toBe('power on');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1500); // honoured Retry-After twice (±10 %)
    const after = await bmc(0);
    expect(after.machine.resets - before.machine.resets).toBe(1);
    expect(after.counters.scripted_faults).toBe(2);
    expect((await c.pool!.stats()).op_retry_RF_BUSY).toBeGreaterThanOrEqual(2);
  });

  it('an API power action that needed retries says so once in node history, not once per attempt', async () => {
    const node = (await c.store.getNodeById(nodes[0]!.id))!;
    await fault(0, { script: [{ method: 'POST', path: 'ComputerSystem.Reset', status: 503, retry_after_s: 0, times: 3 }] });
    await c.setPowerState(node, 'power off');
    const { waitFor } = await import('../../helpers.js');
    await waitFor(async () => (await c.store.getNodeById(node.id))!.power_state === 'power off', 15_000, 'powered off');
    const events = (await c.store.listHistory(node.id, { limit: 50 })).map((e) => e.event);
    const retried = events.filter((e) => /BMC busy or unreachable, retried/.test(e));
    expect(retried).toHaveLength(1);
    expect(retried[0]).toMatch(/power action "power off": BMC busy or unreachable, retried \(HTTP 503 ×3\)/);
  });

  it('500 after the reset landed: the state is re-read and the reset is not sent again', async () => {
    const before = await bmc(1);
    await fault(1, { script: [{ method: 'POST', path: 'ComputerSystem.Reset', status: 500, after_apply: true }] });
    expect(await power().setPowerState(nodes[1]!, 'power on', ctx, 0)).toBe('power on');
    const after = await bmc(1);
    expect(after.machine.resets - before.machine.resets).toBe(1);
    expect(['On', 'PoweringOn']).toContain(after.machine.power);
  });

  it('a reboot whose answer was lost after it landed is not sent twice (LastResetTime tells)', async () => {
    await power().setPowerState(nodes[2]!, 'power on', ctx, 5);
    const before = await bmc(2);
    await fault(2, { script: [{ method: 'POST', path: 'ComputerSystem.Reset', reset: true, after_apply: true }] });
    await power().setPowerState(nodes[2]!, 'rebooting', ctx, 0);
    expect((await bmc(2)).machine.resets - before.machine.resets).toBe(1);
  });

  it('connection reset mid-PATCH: re-sent when it did not land, not re-sent when it did', async () => {
    const mgmt = c.drivers.get('redfish').management;
    let before = await bmc(3);
    await fault(3, { script: [{ method: 'PATCH', reset: true }] });
    await mgmt.setBootDevice(nodes[3]!, 'pxe', false, ctx);
    let after = await bmc(3);
    expect(after.machine.boot).toMatchObject({ target: 'Pxe', enabled: 'Once' });
    expect(after.counters.requests_action - before.counters.requests_action).toBe(2);

    before = after;
    await fault(3, { script: [{ method: 'PATCH', reset: true, after_apply: true }] });
    await mgmt.setBootDevice(nodes[3]!, 'disk', true, ctx);
    after = await bmc(3);
    expect(after.machine.boot).toMatchObject({ target: 'Hdd', enabled: 'Continuous' });
    expect(after.counters.requests_action - before.counters.requests_action).toBe(1);
  });

  it('a breaker that opens during an action delays it until the BMC is back within the deadline', async () => {
    const before = await bmc(4);
    await fault(4, { black_hole: true });
    setTimeout(() => void fault(4, { black_hole: false }), 2500);
    const t0 = Date.now();
    expect(await power().setPowerState(nodes[4]!, 'power on', ctx, 0)).toBe('power on');
    expect(Date.now() - t0).toBeGreaterThan(2000);
    expect((await bmc(4)).machine.resets - before.machine.resets).toBe(1);
  }, 30_000);

  it('a BMC dead for the whole deadline fails the action with the whole story', async () => {
    await fault(5, { black_hole: true });
    const t0 = Date.now();
    const err = await power().setPowerState(nodes[5]!, 'power on', ctx, 0).then(() => undefined, (e: Error) => e);
    const took = Date.now() - t0;
    await fault(5, { black_hole: false });
    expect(err?.message).toMatch(/power action "power on" on BMC https:\/\/[^ ]+: tried \d+ times over [0-9.]+ s \(answers: [^)]*RF_TIMEOUT ×\d+[^)]*RF_CIRCUIT_OPEN ×\d+/);
    expect(took).toBeGreaterThan(5000);
    expect(took).toBeLessThan(15_000);
  }, 30_000);

  it('login answered 503 once: logged in on the next try, the read succeeds', async () => {
    await power().getPowerState(nodes[6]!, ctx); // a session exists
    const before = await bmc(6);
    await fault(6, { expire_sessions: true, script: [{ method: 'POST', path: 'SessionService/Sessions', status: 503, times: 1 }] });
    expect(['power on', 'power off']).toContain(await power().getPowerState(nodes[6]!, ctx));
    expect((await bmc(6)).counters.requests_login - before.counters.requests_login).toBe(2);
  });

  it('a 503 on the first service-root probe does not switch a session BMC to Basic auth', async () => {
    await fault(8, { script: [{ method: 'GET', status: 503, retry_after_s: 0, times: 1 }] });
    expect(['power on', 'power off']).toContain(await power().getPowerState(nodes[8]!, ctx));
    expect(['power on', 'power off']).toContain(await power().getPowerState(nodes[8]!, ctx));
    const b = await bmc(8);
    expect(b.counters.scripted_faults).toBe(1);
    expect(b.counters.sessions_created).toBe(1); // a session, not Basic on every request
  });

  it('refused credentials are never retried: one login attempt, and the next call fails without another', async () => {
    const bad = await c.store.updateNode(nodes[7]!.id, { driver_info: { ...nodes[7]!.driver_info, redfish_password: 'wrong-password' } });
    const before = await bmc(7);
    await expect(power().getPowerState(bad!, ctx)).rejects.toThrow(/RF_AUTH/);
    await expect(power().getPowerState(bad!, ctx)).rejects.toThrow(/RF_AUTH/);
    expect((await bmc(7)).counters.requests_login - before.counters.requests_login).toBe(1);
  });
});

describe('an open breaker longer than the outage', () => {
  let sim: SimProc;
  let c: Conductor;
  let nodes: Node[];
  beforeAll(async () => {
    sim = await startSim(['--bmcs', '2', '--profile', 'realistic', '--profile-override', JSON.stringify(FAST), '--initial-power', 'off']);
    // The breaker stays open 60 s — longer than the whole 10 s deadline, as the 30 s default is
    // longer than a flapping BMC's 20 s outage.
    ({ c, nodes } = await conductorFor(sim.manifest, { redfish: { timeout_ms: 800, connect_timeout_ms: 800, breaker_threshold: 1, breaker_open_ms: 60_000, operation_deadline_s: 10 } }));
  });
  afterAll(async () => {
    await c?.stop();
    await sim?.stop();
  });

  it('does not end the operation early: it probes again and the action lands once the BMC is back', async () => {
    const before = (await admin(sim, 'GET', '/bmcs/1')).json.machine.resets as number;
    await admin(sim, 'POST', '/bmcs/1/faults', { black_hole: true });
    setTimeout(() => void admin(sim, 'POST', '/bmcs/1/faults', { black_hole: false }), 3000);
    const t0 = Date.now();
    expect(await c.drivers.get('redfish').power.setPowerState(nodes[1]!, 'power on', ctx, 0)).toBe('power on');
    expect(Date.now() - t0).toBeGreaterThan(2500);
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(((await admin(sim, 'GET', '/bmcs/1')).json.machine.resets as number) - before).toBe(1);
  }, 30_000);
});
