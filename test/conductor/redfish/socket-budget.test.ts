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

/** A test-side bound on every API call: a conductor that stops answering fails the test, not hangs it. */
const CALL_TIMEOUT_MS = 20_000;
const SETTLE_MS = 60_000;

/**
 * Enrols the fleet, manages it all while 8 clients list nodes, and reports what happened. With
 * `untilEmfile` (the control) it returns as soon as the conductor has logged EMFILE: that is all
 * the control has to show, and a conductor out of descriptors is not something to wait on. A
 * failure says which phase it was in, whether the conductor was still running, and its last
 * warnings, so a CI log tells what happened.
 */
async function manageUnderLimit(sim: SimProc, env: Record<string, string>, untilEmfile = false): Promise<Outcome> {
  const dir = tmpDir('ironfleet-fd-');
  const c = await startConductorProcess({ dir, fdLimit: FD_LIMIT, env: { IRONFLEET_REDFISH__POOL_SIZE: '2', IRONFLEET_POWER_SYNC__INTERVAL_S: '0', ...env } });
  conductors.push(c);
  const api = new ApiClient({ url: c.apiUrl, timeoutMs: CALL_TIMEOUT_MS });
  const sawEmfile = () => untilEmfile && /EMFILE/.test(c.logs());
  let phase = 'enrol';
  let listing = false;
  let apiErrors = 0;
  let readers: Array<Promise<void>> = [];
  try {
    const uuids: string[] = [];
    await forEachLimit(sim.manifest.bmcs, 8, async (b) => {
      const n = await api.post<{ uuid: string }>('/v1/nodes', {
        driver: 'redfish',
        name: b.name,
        driver_info: { redfish_address: b.address, redfish_username: b.username, redfish_password: b.password, redfish_system_id: b.system_id, redfish_verify_ca: sim.manifest.ca_file, redfish_tls_server_name: sim.manifest.tls_server_name },
      });
      uuids.push(n.uuid);
    });
    listing = true;
    readers = Array.from({ length: 8 }, async () => {
      for (let i = 0; listing && i < 2000; i++) {
        await api.get('/v1/nodes?limit=50&fields=uuid,provision_state').catch(() => apiErrors++);
      }
    });
    phase = 'manage';
    await forEachLimit(uuids, 16, (u) => api.put(`/v1/nodes/${u}/states/provision`, { target: 'manage' }).then(() => undefined));
    phase = 'settle';
    const rows = await waitFor(
      async () => {
        if (sawEmfile()) return [];
        const { nodes } = await api.get<{ nodes: Array<{ provision_state: string; last_error: string | null }> }>('/v1/nodes?limit=1000&fields=provision_state,last_error');
        const settled = nodes.filter((n) => n.provision_state === 'manageable' || (n.provision_state === 'enroll' && n.last_error));
        return settled.length === nodes.length ? nodes : undefined;
      },
      SETTLE_MS,
      'every manage settled',
    );
    listing = false;
    await Promise.all(readers);
    phase = 'metrics';
    return {
      manageable: rows.filter((n) => n.provision_state === 'manageable').length,
      emfile: rows.filter((n) => /EMFILE/.test(n.last_error ?? '')).length,
      apiErrors,
      metrics: untilEmfile ? '' : await (await fetch(`${c.apiUrl}/metrics`, { signal: AbortSignal.timeout(CALL_TIMEOUT_MS) })).text(),
      logs: c.logs(),
    };
  } catch (err) {
    if (sawEmfile()) return { manageable: 0, emfile: 0, apiErrors, metrics: '', logs: c.logs() };
    const state = c.child.exitCode === null && c.child.signalCode === null ? 'still running' : `exited (${c.child.exitCode ?? c.child.signalCode})`;
    const warnings = c.logs().split('\n').filter((l) => /"level":(40|50|60)/.test(l)).slice(-5).join('\n');
    (err as Error).message = `${(err as Error).message} [phase ${phase}; conductor ${state}; log ${c.logFile}; its last warnings:\n${warnings}]`;
    throw err;
  } finally {
    listing = false;
    await Promise.all(readers);
  }
}

const metric = (text: string, name: string) => Number(text.match(new RegExp(`^${name.replace(/[{}"]/g, (ch) => `\\${ch}`)} (\\d+)`, 'm'))?.[1] ?? NaN);

describe('BMC socket budget under a low open-files limit', () => {
  it(`${BMCS} BMCs under ulimit -n ${FD_LIMIT}: all manage, no EMFILE, the API answers, the budget holds`, { timeout: 120_000 }, async () => {
    const sim = await startSim(['--bmcs', String(BMCS), '--profile', 'realistic', '--profile-override', FAST]);
    sims.push(sim);
    const o = await manageUnderLimit(sim, {});
    expect(o.emfile).toBe(0);
    expect(o.manageable).toBe(BMCS);
    expect(o.apiErrors).toBe(0);
    expect(o.logs).not.toMatch(/EMFILE/);
    expect(o.logs).not.toMatch(/max_bmc_sockets is above/);
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

  it('the control: with the budget set past the limit, the same fleet runs into EMFILE', { timeout: 120_000 }, async () => {
    const sim = await startSim(['--bmcs', String(BMCS), '--profile', 'realistic', '--profile-override', FAST]);
    sims.push(sim);
    // A short operation deadline, so a manage that hit EMFILE fails with it instead of retrying past it.
    // It breaks one way or another: EMFILE in the conductor's log or a node's last_error, or the API
    // resetting its clients (libuv closes connections it cannot accept for want of a descriptor).
    const broke = await manageUnderLimit(sim, { IRONFLEET_REDFISH__MAX_BMC_SOCKETS: '100000', IRONFLEET_REDFISH__OPERATION_DEADLINE_S: '3' }, true).then(
      (o) => o.emfile + (o.logs.match(/EMFILE/g)?.length ?? 0) + o.apiErrors,
      (err: Error) => (/ECONNRESET|EMFILE|socket hang up|other side closed/.test(err.message) ? 1 : Promise.reject(err)),
    );
    expect(broke).toBeGreaterThan(0);
    // The conductor said so at start (in words that do not themselves match EMFILE above).
    expect(conductors.at(-1)!.logs()).toMatch(/"max_bmc_sockets":100000,"fd_limit":400,"fd_reserve":100.*redfish.max_bmc_sockets is above what the open-files limit leaves/);
  });
});
