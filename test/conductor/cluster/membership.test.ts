/**
 * Membership on a real PostgreSQL: ages on the database clock, a silent member leaves the ring at
 * its timeout (and its nodes become ours), a conductor whose row was taken over stops owning
 * anything (fencing), and a ring speaking another protocol refuses a new member, naming it.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { openDatabase } from '../../../conductor/db/database.js';
import { ClusterStore } from '../../../conductor/db/cluster-store.js';
import { Membership, type MembershipChange } from '../../../conductor/cluster/membership.js';
import { createLogger } from '../../../shared/logger.js';
import { freshPgDatabase, waitFor } from '../../helpers.js';

const log = createLogger({ level: 'silent' });
const row = (hostname: string, protocol = 1) => ({ hostname, conductor_group: '', api_url: null, agent_address: null, version: 't', protocol, instance: randomUUID(), pid: 999_999, started_at: new Date().toISOString(), state: 'online' });
const node = () => ({ uuid: randomUUID(), conductor_group: '', driver: 'fake-hardware', driver_info: {} });

describe('Membership (PostgreSQL)', () => {
  let cluster: ClusterStore;
  let close: () => Promise<void>;
  beforeAll(async () => {
    const opened = await openDatabase(await freshPgDatabase(inject('pgUrl')));
    close = () => opened.close();
    cluster = new ClusterStore(opened.db, opened.dialect);
  });
  afterAll(() => close());

  it('a silent member leaves the ring at its timeout; its nodes become ours', async () => {
    await cluster.register(row('peer'));
    const m = new Membership(cluster, { host: 'me', group: '', version: 't', heartbeatIntervalS: 0.3, heartbeatTimeoutS: 1, single: false }, log);
    const changes: MembershipChange[] = [];
    m.on('changed', (c) => changes.push(c));
    await m.join();
    m.start();
    const nodes = Array.from({ length: 200 }, node);
    expect(nodes.filter((n) => m.owns(n)).length).toBeLessThan(200);
    expect(nodes.filter((n) => m.owns(n)).length).toBeGreaterThan(0);
    await waitFor(() => changes.some((c) => c.left.includes('peer')) || undefined, 5_000, 'peer left');
    expect(nodes.every((n) => m.owns(n))).toBe(true);
    expect(m.peerCount()).toBe(0);
    await m.leave();
    expect((await cluster.list()).find((r) => r.hostname === 'me')?.state).toBe('offline');
  });

  it('fencing: a conductor whose row another process took owns nothing once its heartbeat is too old', async () => {
    const m = new Membership(cluster, { host: 'fenced', group: '', version: 't', heartbeatIntervalS: 0.3, heartbeatTimeoutS: 1, single: false }, log);
    await m.join();
    m.start();
    const n = node();
    expect(m.owns(n)).toBe(true);
    await cluster.register(row('fenced')); // same name, another instance
    await waitFor(() => !m.owns(n) || undefined, 5_000, 'fenced');
    await m.leave();
  });

  it('refuses to join a ring whose live members speak another protocol, naming them', async () => {
    await cluster.register(row('future', 99));
    const m = new Membership(cluster, { host: 'old', group: '', version: '0.1.0', heartbeatIntervalS: 1, heartbeatTimeoutS: 3, single: false }, log);
    await expect(m.join()).rejects.toThrow(/cannot join the ring: conductor future \(version t\) speaks cluster protocol 99, this one \(version 0\.1\.0\) speaks 1/);
  });
});
