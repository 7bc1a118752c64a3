/**
 * `ironfleet node enroll --redfish` as a user runs it: the CLI process walks a simulator process
 * serving every system behind one address (sushy-tools style) and enrols into a conductor process;
 * once with a SessionService over HTTPS, once against a Basic-auth-only service (no SessionService,
 * as stock sushy-tools). Re-running adds nothing; the enrolled nodes really manage; a wrong password
 * fails clearly without echoing it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { BIN, startConductorProcess, tmpDir, waitFor, type ConductorProc } from '../helpers.js';
import { admin, rf, startSim, type SimProc } from '../sim/helpers.js';
import { ApiClient } from '../../cli/api-client.js';

const run = promisify(execFile);
const FAST = JSON.stringify({ latency_ms: { get: [1, 5], login: [5, 10], action: [1, 5] }, power_delay_ms: [50, 100], flapping_fraction: 0, storm_fraction: 0, slow_fraction: 0 });
const BASIC_ONLY = JSON.stringify({ ...JSON.parse(FAST), session_service: false, basic_auth: true });

interface Report {
  systems: number;
  created: number;
  already_enrolled: number;
  ports_created: number;
}

async function enroll(conductor: ConductorProc, args: string[]): Promise<Report> {
  const { stdout } = await run(process.execPath, [BIN, 'node', 'enroll', '--url', conductor.apiUrl, ...args], { timeout: 120_000 });
  return JSON.parse(stdout.trim().split('\n').pop()!) as Report;
}

async function manageTwo(api: ApiClient): Promise<void> {
  const { nodes } = await api.get<{ nodes: Array<{ uuid: string }> }>('/v1/nodes?limit=2');
  for (const n of nodes) await api.put(`/v1/nodes/${n.uuid}/states/provision`, { target: 'manage' });
  for (const n of nodes) {
    await waitFor(async () => {
      const x = await api.get<{ provision_state: string; last_error: string | null }>(`/v1/nodes/${n.uuid}`);
      if (x.provision_state === 'enroll' && x.last_error) throw new Error(`manage failed: ${x.last_error}`);
      return x.provision_state === 'manageable';
    }, 30_000, 'manageable');
  }
}

describe('node enroll --redfish', () => {
  const sims: SimProc[] = [];
  const conductors: ConductorProc[] = [];
  afterAll(async () => {
    for (const c of conductors) await c.kill('SIGTERM');
    for (const s of sims) await s.stop();
  });

  describe('a single-address service with a SessionService (HTTPS)', () => {
    let sim: SimProc;
    let conductor: ConductorProc;
    beforeAll(async () => {
      sim = await startSim(['--bmcs', '12', '--profile', 'realistic', '--profile-override', FAST, '--single-address', '127.0.0.1:{port}']);
      sims.push(sim);
      conductor = await startConductorProcess({ dir: tmpDir('ironfleet-enroll-') });
      conductors.push(conductor);
    });

    it('creates one node per system with its ports, idempotently, and the nodes manage', async () => {
      const first = sim.manifest.bmcs[0]!;
      const args = ['--redfish', first.address, '--username', first.username, '--password', first.password, '--verify-ca', 'false'];
      const r1 = await enroll(conductor, args);
      expect(r1).toMatchObject({ systems: 12, created: 12, already_enrolled: 0, ports_created: 24 });
      const api = new ApiClient({ url: conductor.apiUrl });
      const { nodes } = await api.get<{ nodes: Array<{ uuid: string; name: string; driver_info: Record<string, string> }> }>('/v1/nodes?fields=uuid,name,driver_info');
      expect(nodes).toHaveLength(12);
      // name from the system, system id = the member's path, the password never shown back
      const byName = new Map(nodes.map((n) => [n.name, n]));
      const n3 = byName.get('system-3')!;
      expect(n3.driver_info.redfish_system_id).toBe(`/redfish/v1/Systems/${sim.manifest.bmcs[3]!.system_id.split('/').pop()}`);
      expect(n3.driver_info.redfish_address).toBe(first.address);
      expect(n3.driver_info.redfish_password).toBe('******');
      const { ports } = await api.get<{ ports: Array<{ address: string; node_uuid: string }> }>('/v1/ports?fields=address,node_uuid&limit=100');
      expect(ports.filter((p) => p.node_uuid === n3.uuid).map((p) => p.address).sort()).toEqual([...sim.manifest.bmcs[3]!.macs].sort());
      // The walk logged its one session out again.
      expect((await admin(sim, 'GET', '/stats')).json.fleet.sessions_live ?? 0).toBe(0);

      const r2 = await enroll(conductor, args);
      expect(r2).toMatchObject({ systems: 12, created: 0, already_enrolled: 12, ports_created: 0 });
      await manageTwo(api);
    });

    it('a wrong password fails with a clear error that does not echo it', async () => {
      const first = sim.manifest.bmcs[0]!;
      const err = await enroll(conductor, ['--redfish', first.address, '--username', first.username, '--password', 'n0t-the-Pa55word', '--verify-ca', 'false']).then(
        () => '',
        (e: { stderr: string; code: number }) => `${e.code} ${e.stderr}`,
      );
      expect(err).toMatch(/refused the credentials \(HTTP 401\)/);
      expect(err).not.toContain('n0t-the-Pa55word');
      expect(err).not.toContain(first.password);
    });
  });

  describe('a Basic-auth-only service (no SessionService, as stock sushy-tools)', () => {
    let sim: SimProc;
    let conductor: ConductorProc;
    beforeAll(async () => {
      sim = await startSim(['--bmcs', '8', '--profile', 'realistic', '--profile-override', BASIC_ONLY, '--single-address', '127.0.0.1:{port}', '--http']);
      sims.push(sim);
      conductor = await startConductorProcess({ dir: tmpDir('ironfleet-enroll-basic-') });
      conductors.push(conductor);
    });

    it('the simulator has no SessionService and answers Basic auth', async () => {
      const b = sim.manifest.bmcs[0]!;
      const root = await rf(b.address, 'GET', '/redfish/v1/');
      expect(root.json).not.toHaveProperty('SessionService');
      expect((await rf(b.address, 'POST', '/redfish/v1/SessionService/Sessions', { body: { UserName: b.username, Password: b.password } })).status).toBe(404);
      expect((await rf(b.address, 'GET', '/redfish/v1/Systems', { basic: [b.username, b.password] })).status).toBe(200);
    });

    it('enrols with Basic auth, idempotently, and the conductor manages the nodes without sessions', async () => {
      const b = sim.manifest.bmcs[0]!;
      const args = ['--redfish', b.address, '--username', b.username, '--password', b.password];
      expect(await enroll(conductor, args)).toMatchObject({ systems: 8, created: 8, ports_created: 16 });
      expect(await enroll(conductor, args)).toMatchObject({ systems: 8, created: 0, already_enrolled: 8, ports_created: 0 });
      await manageTwo(new ApiClient({ url: conductor.apiUrl }));
      // The conductor's one login attempt (404) taught it the service has no sessions: Basic since.
      const fleet = (await admin(sim, 'GET', '/stats')).json.fleet;
      expect(fleet.requests_login ?? 0).toBeLessThanOrEqual(1);
      expect(fleet.sessions_live ?? 0).toBe(0);
    });
  });
});
