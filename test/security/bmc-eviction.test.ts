/**
 * A deleted node's BMC is let go: its Redfish session is logged out on the BMC (a real simulator
 * process counts it), the worker thread drops the client with its credentials, and the persisted
 * session row goes. BMCs still used by other nodes keep theirs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { admin, startSim, type SimProc } from '../sim/helpers.js';
import { conductorFor } from '../conductor/redfish/helpers.js';
import type { Conductor } from '../../conductor/manager.js';
import type { Node } from '../../conductor/db/store.js';

const FAST = { latency_ms: { get: [5, 10], login: [20, 40], action: [5, 10] }, power_delay_ms: [50, 100], flapping_fraction: 0, storm_fraction: 0, slow_fraction: 0, health_changes_per_hour: 0 };

describe('BMC clients of deleted nodes', () => {
  let sim: SimProc;
  let c: Conductor;
  let nodes: Node[];
  beforeAll(async () => {
    sim = await startSim(['--bmcs', '3', '--profile', 'realistic', '--profile-override', JSON.stringify(FAST)]);
    ({ c, nodes } = await conductorFor(sim.manifest));
  });
  afterAll(async () => {
    await c?.stop();
    await sim?.stop();
  });

  it('deleting a node logs its BMC session out and evicts the client from the worker thread', async () => {
    expect((await c.powerSync.sweep()).ok).toBe(3);
    expect((await admin(sim, 'GET', '/stats')).json.fleet.sessions_live).toBe(3);
    expect((await c.pool!.stats()).clients).toBe(3);
    await c.deleteNode(nodes[0]!);
    const fleet = (await admin(sim, 'GET', '/stats')).json.fleet;
    expect(fleet.sessions_live).toBe(2);
    expect(fleet.sessions_deleted).toBe(1);
    const stats = await c.pool!.stats();
    expect(stats.clients).toBe(2);
    expect(stats.sessions).toBe(2);
    expect((await c.store.listBmcSessions('rf-test')).length).toBe(2);
    // The others are untouched: the next sweep logs in nowhere.
    const created = fleet.sessions_created;
    expect((await c.powerSync.sweep()).ok).toBe(2);
    expect((await admin(sim, 'GET', '/stats')).json.fleet.sessions_created).toBe(created);
  });
});
