/**
 * The BMC socket budget, provoked for real: a conductor process under `ulimit -n 400` manages a
 * 500-BMC simulator fleet (one address per BMC, HTTPS) while operators list nodes. With the budget
 * every node manages, no request sees EMFILE, the API answers every call, and /metrics shows the
 * budget holding (idle sockets evicted). The control: the same run with the budget set past the
 * limit hits EMFILE — so the first case is not passing by luck.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { startConductorProcess, tmpDir, waitFor, type ConductorProc } from '../../helpers.js';
import { startSim, type SimProc } from '../../sim/helpers.js';
import { ApiClient } from '../../../cli/api-client.js';
import { forEachLimit } from '../../../shared/pool.js';

// Why 400: the conductor's own start (parallel ES module loading) needs about 300 descriptors.
const BMCS = 500;
const FD_LIMIT = 400;
const FAST = JSON.stringify({ latency_ms: { get: [1, 5], login: [5, 10], action: [1, 5] }, power_delay_ms: [50, 100], flapping_fraction: 0, storm_fraction: 0, slow_fraction: 0, max_sessions: [8, 8] });

const sims: SimProc[] = [];
const conductors: ConductorProc[] = [];
afterAll(async () => {
  for (const c of conductors) await c.kill('SIGTERM');
  for (const s of sims) await s.stop();
});

interface Outcome {
  manageable: number;
  emfile: number;
  apiErrors: number;
  metrics: string;
  logs: string;
}

/** Enrols the fleet, manages it all while 8 clients list nodes, and reports what happened. */
async function manageUnderLimit(sim: SimProc, env: Record<string, string>): Promise<Outcome> {
  const dir = tmpDir('ironfleet-fd-');
  const c = await startConductorProcess({ dir, fdLimit: FD_LIMIT, env: { IRONFLEET_REDFISH__POOL_SIZE: '2', IRONFLEET_POWER_SYNC__INTERVAL_S: '0', ...env } });
  conductors.push(c);
  const api = new ApiClient({ url: c.apiUrl });
  const uuids: string[] = [];
  await forEachLimit(sim.manifest.bmcs, 8, async (b) => {
    const n = await api.post<{ uuid: string }>('/v1/nodes', {
      driver: 'redfish',
      name: b.name,
      driver_info: { redfish_address: b.address, redfish_username: b.username, redfish_password: b.password, redfish_system_id: b.system_id, redfish_verify_ca: sim.manifest.ca_file, redfish_tls_server_name: sim.manifest.tls_server_name },
    });
    uuids.push(n.uuid);
  });
  let listing = true;
  let apiErrors = 0;
  const readers = Array.from({ length: 8 }, async () => {
    for (let i = 0; listing && i < 2000; i++) {
      await api.get('/v1/nodes?limit=50&fields=uuid,provision_state').catch(() => apiErrors++);
    }
  });
  await forEachLimit(uuids, 16, (u) => api.put(`/v1/nodes/${u}/states/provision`, { target: 'manage' }).then(() => undefined));
  const rows = await waitFor(async () => {
    const { nodes } = await api.get<{ nodes: Array<{ provision_state: string; last_error: string | null }> }>('/v1/nodes?limit=1000&fields=provision_state,last_error');
    const settled = nodes.filter((n) => n.provision_state === 'manageable' || (n.provision_state === 'enroll' && n.last_error));
    return settled.length === nodes.length ? nodes : undefined;
  }, 120_000, 'every manage settled');
  listing = false;
  await Promise.all(readers);
  return {
    manageable: rows.filter((n) => n.provision_state === 'manageable').length,
    emfile: rows.filter((n) => /EMFILE/.test(n.last_error ?? '')).length,
    apiErrors,
    metrics: await (await fetch(`${c.apiUrl}/metrics`)).text(),
    logs: c.logs(),
  };
}

const metric = (text: string, name: string) => Number(text.match(new RegExp(`^${name.replace(/[{}"]/g, (ch) => `\\${ch}`)} (\\d+)`, 'm'))?.[1] ?? NaN);

describe('BMC socket budget under a low open-files limit', () => {
  it(`${BMCS} BMCs under ulimit -n ${FD_LIMIT}: all manage, no EMFILE, the API answers, the budget holds`, async () => {
    const sim = await startSim(['--bmcs', String(BMCS), '--profile', 'realistic', '--profile-override', FAST]);
    sims.push(sim);
    const o = await manageUnderLimit(sim, {});
    expect(o.emfile).toBe(0);
    expect(o.manageable).toBe(BMCS);
    expect(o.apiErrors).toBe(0);
    expect(o.logs).not.toMatch(/EMFILE/);
    const budget = metric(o.metrics, 'ironfleet_bmc_sockets{kind="budget"}');
    // auto: 400 − a quarter in reserve, split over 2 threads
    expect(budget).toBe(300);
    expect(metric(o.metrics, 'ironfleet_bmc_sockets{kind="open"}')).toBeLessThanOrEqual(budget);
    const evicted = metric(o.metrics, 'ironfleet_bmc_socket_budget_events_total{event="evicted"}');
    expect(evicted).toBeGreaterThan(0);
    // At most one socket closed per connect that waited: closing more (every idle BMC closing
    // another one before the first close landed) tore down thousands per sweep at 20,000 BMCs.
    expect(evicted).toBeLessThanOrEqual(metric(o.metrics, 'ironfleet_bmc_socket_budget_events_total{event="waited"}'));
    expect(metric(o.metrics, 'ironfleet_process_max_fds')).toBe(FD_LIMIT);
    expect(metric(o.metrics, 'ironfleet_process_open_fds')).toBeLessThan(FD_LIMIT);
  });

  it('the control: with the budget set past the limit, the same fleet runs into EMFILE', async () => {
    const sim = await startSim(['--bmcs', String(BMCS), '--profile', 'realistic', '--profile-override', FAST]);
    sims.push(sim);
    // A short operation deadline, so a manage that hit EMFILE fails with it instead of retrying past it.
    // It breaks one way or another: manage failing with EMFILE, or the API resetting its clients.
    const broke = await manageUnderLimit(sim, { IRONFLEET_REDFISH__MAX_BMC_SOCKETS: '100000', IRONFLEET_REDFISH__OPERATION_DEADLINE_S: '3' }).then(
      (o) => o.emfile + (o.logs.match(/EMFILE/g)?.length ?? 0) + o.apiErrors,
      (err: Error) => (/ECONNRESET|EMFILE|socket hang up|other side closed/.test(err.message) ? 1 : Promise.reject(err)),
    );
    expect(broke).toBeGreaterThan(0);
  });
});
