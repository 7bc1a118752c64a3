/**
 * Sensors to /metrics, out-of-band firmware through the BMC task, pool resizing without new
 * logins, and enrolling a simulator fleet from its manifest with the CLI.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import path from 'node:path';
import type { Worker } from 'node:worker_threads';
import { promisify } from 'node:util';
import { admin, startSim, type SimProc } from '../../sim/helpers.js';
import { conductorFor } from './helpers.js';
import { BIN, startConductorProcess, tmpDir, waitFor } from '../../helpers.js';
import { buildApi } from '../../../conductor/api/server.js';
import { createLogger } from '../../../shared/logger.js';
import { ApiClient } from '../../../cli/api-client.js';
import type { Conductor } from '../../../conductor/manager.js';

const run = promisify(execFile);
const FAST = { latency_ms: { get: [5, 10], login: [20, 40], action: [5, 10] }, power_delay_ms: [50, 100], firmware_update_ms: [600, 600], flapping_fraction: 0, storm_fraction: 0, slow_fraction: 0, health_changes_per_hour: 0 };

describe('BMC fleet engine', () => {
  let sim: SimProc;
  let c: Conductor;
  beforeAll(async () => {
    sim = await startSim(['--bmcs', '6', '--profile', 'realistic', '--profile-override', JSON.stringify(FAST)]);
    ({ c } = await conductorFor(sim.manifest, { firmware: { poll_interval_ms: 200 } }));
  });
  afterAll(async () => {
    await c?.stop();
    await sim?.stop();
  });

  it('sensors (Thermal + Power) become per-node Prometheus series', async () => {
    const nodes = await c.store.listNodes();
    const r = await c.sensors.collect(nodes);
    expect(r).toMatchObject({ ok: 6, failed: 0 });
    const app = await buildApi(c, createLogger({ level: 'silent' }));
    const text = (await app.inject({ url: '/metrics' })).body;
    expect(text).toMatch(new RegExp(`ironfleet_node_temperature_celsius\\{node_uuid="${nodes[0]!.uuid}",node_name="sim-00000",sensor="CPU1 Temp"\\} \\d+`));
    expect(text).toMatch(/ironfleet_node_fan_rpm\{[^}]*sensor="System Board Fan1"\}/);
    expect(text).toMatch(/ironfleet_node_power_watts\{[^}]*node_name="sim-00005"\} \d+/);
    expect(text).toMatch(/ironfleet_sensor_reads_total\{outcome="ok"\} 6/);
    expect(text).toMatch(/ironfleet_bmc_sessions 6/);
    expect(text).toMatch(/ironfleet_bmc_pool_threads 2/);
    await app.close();
  });

  it('out-of-band firmware: SimpleUpdate, the task is polled to completion, versions recorded, no thread waits', async () => {
    const app = await buildApi(c, createLogger({ level: 'silent' }));
    c.startBackground();
    const node = (await c.store.listNodes())[1]!;
    const bad = await app.inject({ method: 'POST', url: `/v1/nodes/${node.uuid}/firmware/update`, payload: { image_url: 'ftp://nope' } });
    expect(bad.statusCode).toBe(400);
    const ok = await app.inject({ method: 'POST', url: `/v1/nodes/${node.uuid}/firmware/update`, payload: { image_url: 'http://fw.example/bios-3.1.4.bin', component: 'bios' } });
    expect(ok.statusCode, ok.body).toBe(202);
    const again = await app.inject({ method: 'POST', url: `/v1/nodes/${node.uuid}/firmware/update`, payload: { image_url: 'http://fw.example/bios-3.1.5.bin' } });
    expect(again.statusCode).toBe(400);
    // Power sync skips the node while the update runs.
    const sweep = await c.powerSync.sweep();
    expect(sweep.skipped).toBeGreaterThanOrEqual(1);
    await waitFor(async () => {
      const fw = (await app.inject({ url: `/v1/nodes/${node.uuid}/firmware` })).json().firmware;
      return fw[0].current_version === '3.1.4' && !fw[0].update_in_progress;
    }, 15_000, 'firmware completed');
    const h = await c.store.listHistory(node.id);
    expect(h.map((e) => e.event).join('\n')).toMatch(/Firmware update of bios completed; now 3\.1\.4/);
    expect((await admin(sim, 'GET', '/bmcs/1')).json.machine.bios_version).toBe('3.1.4');
    await app.close();
  });

  it('resizing the pool hands sessions to their new owners: no new logins', async () => {
    await c.powerSync.sweep();
    const before = (await admin(sim, 'GET', '/stats')).json.fleet.sessions_created;
    await c.pool!.resize(3, await c.redfishTargets());
    expect(c.pool!.poolSize).toBe(3);
    const r = await c.powerSync.sweep();
    expect(r.ok).toBe(6);
    const after = (await admin(sim, 'GET', '/stats')).json.fleet;
    expect(after.sessions_created).toBe(before);
    expect(after.sessions_live).toBe(6);
    expect((await c.pool!.stats()).sessions).toBe(6);
  });

  it('a BMC thread that dies is replaced, configured like the first and given its sessions; the next sweep sends it the targets it lost', async () => {
    const pool = c.pool!;
    const before = await pool.stats();
    expect(before.bmc_socket_budget).toBeGreaterThan(0);
    // Targets go once, then `{ uuid, p }` refs once; from the third sweep on a steady sweep goes to
    // each thread as the number of the batch it kept, not as refs again.
    for (let i = 0; i < 3; i++) expect((await c.powerSync.sweep()).ok).toBe(6);
    expect((await pool.stats()).batches_reused).toBeGreaterThan(before.batches_reused!);
    // The thread killed is the one owning the first BMC (BMC ports are random, so which shard owns
    // which BMC differs per run: shard 0 owned none of the six in about one run in 64).
    const owners = [...(await c.redfishTargets()).values()].map((t) => pool.shardOf(t.key));
    expect(owners).toHaveLength(6);
    const shard = (pool as unknown as { shards: Array<{ threads: Worker[] }> }).shards[owners[0]!]!;
    const victim = shard.threads[0]!;
    const logins = (await admin(sim, 'GET', '/stats')).json.fleet.sessions_created;
    const gone = new Promise((r) => victim.once('exit', r));
    await victim.terminate();
    await gone;
    await waitFor(() => (shard.threads.length === 1 && shard.threads[0] !== victim) || undefined, 10_000, 'a replacement thread');
    // The new thread has no batch and knows no target: it asks for the refs, answers RF_NO_TARGET
    // for the `{ uuid }` ones, and the pool sends those in full.
    const r = await c.powerSync.sweep();
    expect(r).toMatchObject({ nodes: 6, ok: 6, failed: 0 });
    expect((await pool.stats()).batches_resent).toBe(1);
    // It adopted its BMCs' persisted sessions before the sweep reached it: no BMC saw a new login.
    expect((await admin(sim, 'GET', '/stats')).json.fleet.sessions_created).toBe(logins);
    expect((await admin(sim, 'GET', '/stats')).json.fleet.sessions_live).toBe(6);
    // Configured from workerData: the replacement holds the same descriptor budget (a task-time
    // configure reached only the threads that existed then).
    expect((await pool.stats()).bmc_socket_budget).toBe(before.bmc_socket_budget);
  });
});

describe('ironfleet node enroll --from <simulator manifest>', () => {
  it('enrolls every BMC with its ports; the conductor then verifies them over Redfish', async () => {
    const sim = await startSim(['--bmcs', '5', '--profile', 'ideal']);
    const dir = tmpDir('ironfleet-enroll-');
    const proc = await startConductorProcess({ dir, env: { IRONFLEET_POWER_SYNC__INTERVAL_S: '0' } });
    try {
      const { stdout } = await run(process.execPath, [BIN, 'node', 'enroll', '--from', path.join(sim.dir, 'manifest.json'), '--url', proc.apiUrl]);
      expect(stdout).toMatch(/enrolled 5\/5/);
      const api = new ApiClient({ url: proc.apiUrl });
      const nodes = (await api.get<{ nodes: Array<{ name: string }> }>('/v1/nodes')).nodes;
      expect(nodes.map((n) => n.name).sort()).toEqual(sim.manifest.bmcs.map((b) => b.name).sort());
      const ports = (await api.get<{ ports: Array<{ address: string }> }>('/v1/ports')).ports;
      expect(ports).toHaveLength(10);
      const shown = await api.get<{ driver_info: Record<string, unknown> }>('/v1/nodes/sim-00003');
      expect(shown.driver_info.redfish_password).toBe('******');
      expect(shown.driver_info.redfish_verify_ca).toBe(path.join(sim.dir, 'sim-ca.pem'));
      await api.put('/v1/nodes/sim-00003/states/provision', { target: 'manage' });
      const n = await api.waitNode('sim-00003', (x) => x.provision_state === 'manageable' || Boolean(x.last_error), 20_000);
      expect(n.last_error).toBeNull();
      expect(n.power_state).toBe('power off');
      expect(proc.logs()).not.toContain(sim.manifest.bmcs[3]!.password);
    } finally {
      await proc.kill('SIGTERM');
      await sim.stop();
    }
  });
});
