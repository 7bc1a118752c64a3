/** The data layer, run against both backends: embedded SQLite and a real PostgreSQL server. */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { openDatabase } from '../../../conductor/db/database.js';
import { Store } from '../../../conductor/db/store.js';
import { ConflictError } from '../../../shared/errors.js';
import { freshPgDatabase, tmpDir } from '../../helpers.js';

const backends = [
  { name: 'sqlite', url: async () => `sqlite://${path.join(tmpDir(), 'store.db')}` },
  { name: 'postgres', url: async () => freshPgDatabase(inject('pgUrl')) },
];

describe.each(backends)('Store on $name', ({ url }) => {
  let store: Store;
  let dbUrl: string;
  beforeAll(async () => {
    dbUrl = await url();
    store = new Store(await openDatabase(dbUrl));
  });
  afterAll(async () => store.close());

  const mk = (name?: string) => store.createNode({ uuid: randomUUID(), name: name ?? null, driver: 'fake-hardware', provision_state: 'enroll', driver_info: { redfish_password: 'p' } });

  it('creates, finds by uuid or name, updates and deletes nodes; JSON and booleans round-trip', async () => {
    const n = await mk('alpha');
    expect(n.driver_info).toEqual({ redfish_password: 'p' });
    expect(n.maintenance).toBe(false);
    expect((await store.findNode('alpha'))!.uuid).toBe(n.uuid);
    expect((await store.findNode(n.uuid))!.name).toBe('alpha');
    const u = await store.updateNode(n.id, { maintenance: true, properties: { cpu_arch: 'x86_64' }, provision_state: 'verifying' });
    expect(u!.maintenance).toBe(true);
    expect(u!.properties).toEqual({ cpu_arch: 'x86_64' });
    expect(u!.provision_updated_at).not.toBeNull();
    await store.deleteNode(n.id);
    expect(await store.findNode('alpha')).toBeUndefined();
  });

  it('rejects duplicate names and MACs with a Conflict and writes nothing', async () => {
    const a = await mk('dup');
    await expect(mk('dup')).rejects.toBeInstanceOf(ConflictError);
    await store.createPort({ address: '52:54:00:00:00:01', node_id: a.id });
    await expect(store.createPort({ address: '52:54:00:00:00:01', node_id: a.id })).rejects.toBeInstanceOf(ConflictError);
    expect((await store.listPorts({ nodeId: a.id })).length).toBe(1);
  });

  it('compare-and-set update only applies when the guard still holds', async () => {
    const n = await mk();
    expect(await store.updateNode(n.id, { provision_state: 'verifying' }, { provision_state: 'manageable' })).toBeUndefined();
    expect((await store.getNodeById(n.id))!.provision_state).toBe('enroll');
    expect((await store.updateNode(n.id, { provision_state: 'verifying' }, { provision_state: 'enroll' }))!.provision_state).toBe('verifying');
  });

  it('node lock: of 20 concurrent reservations exactly one wins; release is holder-only', async () => {
    const n = await mk();
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => store.reserveNode(n.id, `c${i}`)));
    expect(results.filter(Boolean)).toHaveLength(1);
    const won = results.find(Boolean)!;
    const winner = `c${results.indexOf(won)}`;
    // The winner gets the locked row back (UPDATE … RETURNING), reservation included.
    expect(won.reservation).toBe(winner);
    expect(await store.releaseNode(n.id, 'someone-else')).toBe(false);
    expect(await store.releaseNode(n.id, winner)).toBe(true);
    expect((await store.reserveNode(n.id, 'c-next'))?.reservation).toBe('c-next');
    expect(await store.clearReservations('c-next')).toBe(1);
  });

  it('finds nodes by any of their MACs, case-insensitively', async () => {
    const n = await mk();
    await store.createPort({ address: '52:54:00:AA:00:02', node_id: n.id });
    expect((await store.findNodeByMacs(['00:11:22:33:44:55', '52:54:00:aa:00:02']))!.id).toBe(n.id);
    expect(await store.findNodeByMacs(['00:11:22:33:44:56'])).toBeUndefined();
  });

  it('keeps at most node_history_max_entries per node, newest last', async () => {
    const n = await mk();
    for (let i = 0; i < 8; i++) await store.addHistory({ node_id: n.id, conductor: 'c', event: `e${i}`, event_type: 't', severity: 'INFO', user: null }, 5);
    const h = await store.listHistory(n.id);
    expect(h.map((e) => e.event)).toEqual(['e3', 'e4', 'e5', 'e6', 'e7']);
  });

  it('agent token is issued once (compare-and-set) and can be wiped', async () => {
    const n = await mk();
    expect(await store.setAgentToken(n.id, 'hash1', 'boot1')).toBe(true);
    expect(await store.setAgentToken(n.id, 'hash2', 'boot1')).toBe(false);
    expect((await store.getNodeById(n.id))!.agent_token_hash).toBe('hash1');
    await store.clearAgentToken(n.id);
    expect((await store.getNodeById(n.id))!.agent_token_hash).toBeNull();
  });

  it('a finished agent command never changes again (first result wins)', async () => {
    const n = await mk();
    const id = randomUUID();
    await store.createCommand({ id, node_id: n.id, name: 'standby.sync', params: {} });
    expect(await store.updateCommand(id, { status: 'SUCCEEDED', result: { ok: 1 } })).toBe(true);
    expect(await store.updateCommand(id, { status: 'FAILED', error: { code: 'X', message: 'late' } })).toBe(false);
    const c = await store.getCommand(id);
    expect(c!.status).toBe('SUCCEEDED');
    expect(c!.result).toEqual({ ok: 1 });
  });

  it('inventory upserts; liveness batches update many nodes', async () => {
    const a = await mk();
    const b = await mk();
    await store.putInventory(a.id, { hostname: 'x' }, {});
    await store.putInventory(a.id, { hostname: 'y' }, { k: 1 });
    expect(await store.getInventory(a.id)).toEqual({ inventory: { hostname: 'y' }, plugin_data: { k: 1 } });
    const ts = new Date().toISOString();
    await store.setAgentSeen([{ id: a.id, seen: ts }, { id: b.id, seen: ts }]);
    expect((await store.getNodeById(b.id))!.agent_last_seen).toBe(ts);
  });

  it('the sweep listing reuses a node\'s parsed documents until they change, and finds nodes by an internal key', async () => {
    const n = await mk('sweepy');
    const list1 = await store.listNodesForSweep();
    const first = list1.find((x) => x.id === n.id)!;
    const list2 = await store.listNodesForSweep();
    const again = list2.find((x) => x.id === n.id)!;
    expect(again).toBe(first); // unchanged row: not re-read, the same frozen node
    expect(list2).toBe(list1); // no row moved: the very same (frozen) listing
    expect(Object.isFrozen(list2)).toBe(true);
    expect(Object.isFrozen(again) && Object.isFrozen(again.driver_info)).toBe(true);
    expect(again.instance_info).toEqual({});
    expect('row_version' in again).toBe(false);
    // Every column as getNodeById has it, but the three documents a sweep does not read.
    const full = (await store.getNodeById(n.id))!;
    expect({ ...again, properties: full.properties, instance_info: full.instance_info, extra: full.extra }).toEqual(full);
    // Writes that leave updated_at alone (a lock, agent liveness) still reach the next listing.
    await store.reserveNode(n.id, 'sweep-test');
    const locked = (await store.listNodesForSweep()).find((x) => x.id === n.id)!;
    expect(locked).not.toBe(first);
    expect(locked.reservation).toBe('sweep-test');
    expect(locked.driver_info).toBe(first.driver_info); // same text: the parsed document is kept
    await store.releaseNode(n.id, 'sweep-test');
    const seen = new Date().toISOString();
    await store.setAgentSeen([{ id: n.id, seen }]);
    const live = (await store.listNodesForSweep()).find((x) => x.id === n.id)!;
    expect(live.reservation).toBeNull();
    expect(live.agent_last_seen).toBe(seen);
    expect('row_version' in (await store.getNodeById(n.id))!).toBe(false);
    await store.updateNode(n.id, { driver_info: { redfish_password: 'q' }, power_state: 'power on' });
    const changed = (await store.listNodesForSweep()).find((x) => x.id === n.id)!;
    expect(changed.driver_info).not.toBe(first.driver_info);
    expect(changed.driver_info).toEqual({ redfish_password: 'q' });
    expect(changed.power_state).toBe('power on');
    expect(await store.listNodesWithInternal('firmware_update')).toEqual([]);
    await store.updateNode(n.id, { driver_internal_info: { firmware_update: { task_uri: '/t/1' } } });
    expect((await store.listNodesWithInternal('firmware_update')).map((x) => x.id)).toEqual([n.id]);
    const before = await store.listNodesForSweep();
    await store.deleteNode(n.id);
    const after = await store.listNodesForSweep();
    expect(after.some((x) => x.id === n.id)).toBe(false);
    expect(after).toHaveLength(before.length - 1); // a deletion alone (nothing re-read) is a new listing
  });

  it('the sweep listing sees every write from another connection (a peer conductor): an update alone, a delete with an insert, the newest row replaced', async () => {
    const peer = new Store(await openDatabase(dbUrl));
    try {
      const a = await mk();
      const b = await mk();
      const l1 = await store.listNodesForSweep();
      expect(await store.listNodesForSweep()).toBe(l1); // steady: the very same list
      await peer.updateNode(a.id, { power_state: 'power off' });
      const l2 = await store.listNodesForSweep();
      expect(l2).not.toBe(l1);
      expect(l2.find((x) => x.id === a.id)!.power_state).toBe('power off');
      expect(l2.find((x) => x.id === b.id)).toBe(l1.find((x) => x.id === b.id)); // untouched row: same object
      // One delete and one insert between two listings: the same count, a new row.
      await peer.deleteNode(b.id);
      const c = await peer.createNode({ uuid: randomUUID(), name: null, driver: 'fake-hardware', provision_state: 'enroll', driver_info: {} });
      const l3 = await store.listNodesForSweep();
      expect(l3).toHaveLength(l2.length);
      expect(l3.map((x) => x.id)).toContain(c.id);
      expect(l3.map((x) => x.id)).not.toContain(b.id);
      // The newest row deleted and another inserted, neither ever updated: ids are never reused.
      await peer.deleteNode(c.id);
      const d = await peer.createNode({ uuid: randomUUID(), name: null, driver: 'fake-hardware', provision_state: 'enroll', driver_info: {} });
      expect(d.id).toBeGreaterThan(c.id);
      const l4 = await store.listNodesForSweep();
      expect(l4.map((x) => x.uuid)).toContain(d.uuid);
      expect(l4.map((x) => x.uuid)).not.toContain(c.uuid);
      expect(await store.listNodesForSweep()).toBe(l4);
    } finally {
      await peer.close();
    }
  });

  it('lists with marker pagination and sorting', async () => {
    const names = ['pg-c', 'pg-a', 'pg-b'];
    for (const nm of names) await mk(nm);
    const page1 = await store.listNodes({ limit: 2, sortKey: 'name', sortDir: 'asc' });
    const page2 = await store.listNodes({ limit: 2, sortKey: 'name', sortDir: 'asc', markerId: page1[1]!.id });
    const everything = await store.listNodes({ sortKey: 'name', sortDir: 'asc' });
    // Walk all pages of 2: every node exactly once, in name order (unnamed nodes first).
    const seen: string[] = [];
    let marker: number | undefined;
    for (;;) {
      const page = await store.listNodes({ limit: 2, sortKey: 'name', sortDir: 'asc', markerId: marker });
      if (page.length === 0) break;
      seen.push(...page.map((n) => n.uuid));
      marker = page[page.length - 1]!.id;
    }
    expect(seen).toEqual(everything.map((n) => n.uuid));
    const named = everything.map((n) => n.name).filter((n): n is string => n !== null && n.startsWith('pg-'));
    expect(named).toEqual(['pg-a', 'pg-b', 'pg-c']);
    expect(page1.length + page2.length).toBe(4);
  });
});
