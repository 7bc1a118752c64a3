/**
 * The deferred scheduler constructed directly over a real SQLite store and task manager: claims
 * (two schedulers on one database never run a row twice), a node locked by someone else (the row
 * waits, no retry spent), retries and running out of them, polling, and a crash's RUNNING rows
 * requeued by the next start.
 */
import { afterEach, describe, expect, it } from 'vitest';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { openDatabase } from '../../conductor/db/database.js';
import { Store } from '../../conductor/db/store.js';
import { TaskManager } from '../../conductor/task-manager.js';
import { DeferredScheduler, type DeferredOptions } from '../../conductor/deferred.js';
import { createLogger } from '../../shared/logger.js';
import { tmpDir, waitFor } from '../helpers.js';

const log = createLogger({ level: 'silent' });
const open: Array<DeferredScheduler> = [];
const stores: Store[] = [];

async function db(): Promise<{ store: Store; url: string }> {
  const url = `sqlite://${path.join(tmpDir('ironfleet-deferred-'), 'd.db')}`;
  const store = new Store(await openDatabase(url));
  stores.push(store);
  return { store, url };
}

function scheduler(store: Store, host: string, o: DeferredOptions = {}): { s: DeferredScheduler; tasks: TaskManager } {
  const tasks = new TaskManager(store, host, { retries: 0, retryIntervalMs: 10 });
  const s = new DeferredScheduler(store, tasks, host, log, { maxIdleMs: 50, ...o });
  open.push(s);
  return { s, tasks };
}

const node = (store: Store) => store.createNode({ uuid: randomUUID(), driver: 'fake-hardware', provision_state: 'manageable' });

afterEach(async () => {
  for (const s of open.splice(0)) await s.stop(2000);
  for (const st of stores.splice(0)) await st.close();
});

describe('DeferredScheduler (constructed directly)', () => {
  it('runs each due row once under the node lock, even with two schedulers claiming from one database', async () => {
    const { store, url } = await db();
    const other = new Store(await openDatabase(url));
    stores.push(other);
    const runs = new Map<string, number>();
    const lockedBy = new Set<string | null>();
    for (const [st, host] of [[store, 'c1'], [other, 'c2']] as const) {
      const { s } = scheduler(st, host);
      s.register('test.count', async (task, _args, a) => {
        lockedBy.add(task.node.reservation);
        runs.set(a.uuid, (runs.get(a.uuid) ?? 0) + 1);
        await new Promise((r) => setTimeout(r, 5));
      });
      await s.start();
    }
    const nodes = await Promise.all(Array.from({ length: 20 }, () => node(store)));
    const rows = await Promise.all(nodes.map((n) => store.createDeferred({ node_id: n.id, call: 'test.count', start_after: new Date() })));
    await waitFor(async () => (await store.listDeferred({ states: ['COMPLETED'] })).length === 20, 10_000, 'all completed');
    expect(rows.every((r) => runs.get(r.uuid) === 1)).toBe(true);
    expect([...lockedBy].every((h) => h === 'c1' || h === 'c2')).toBe(true); // the handler ran holding the lock
    expect((await store.listNodes({})).every((n) => n.reservation === null)).toBe(true); // and let it go
  });

  it('a node locked by someone else: the row waits without spending a retry, then runs once the lock is gone', async () => {
    const { store } = await db();
    const { s } = scheduler(store, 'c1');
    let ran = 0;
    s.register('test.once', async () => void ran++);
    await s.start();
    const n = await node(store);
    await store.reserveNode(n.id, 'someone-else');
    const row = await s.schedule(n.id, 'test.once');
    await waitFor(() => s.counters.lock_busy >= 2, 5000, 'found the node locked twice');
    expect(ran).toBe(0);
    const waiting = (await store.listDeferred({ nodeId: n.id }))[0]!;
    expect(waiting.state).toBe('CREATED');
    expect(waiting.retry_remaining).toBe(row.retry_remaining);
    await store.releaseNode(n.id, 'someone-else');
    await waitFor(() => ran === 1, 5000, 'ran after release');
  });

  it('a failing handler is retried with backoff; out of retries the row fails and onFailed hears why', async () => {
    const { store } = await db();
    const failed: string[] = [];
    const { s } = scheduler(store, 'c1', { onFailed: async (_a, err) => void failed.push((err as Error).message) });
    let attempts = 0;
    s.register('test.flaky', async () => {
      if (++attempts < 3) throw new Error(`flaky ${attempts}`);
    });
    s.register('test.broken', async () => {
      throw new Error('always broken');
    });
    await s.start();
    const n = await node(store);
    const flaky = await store.createDeferred({ node_id: n.id, call: 'test.flaky', start_after: new Date(), retry_remaining: 3 });
    await waitFor(async () => (await store.listDeferred({ nodeId: n.id, states: ['COMPLETED'] })).length === 1, 15_000, 'flaky completed');
    const done = (await store.listDeferred({ nodeId: n.id })).find((r) => r.uuid === flaky.uuid)!;
    expect(attempts).toBe(3);
    expect(done.retry_remaining).toBe(1);

    const m = await node(store);
    await store.createDeferred({ node_id: m.id, call: 'test.broken', start_after: new Date(), retry_remaining: 0 });
    await waitFor(() => failed.length === 1, 5000, 'onFailed');
    expect(failed[0]).toBe('always broken');
    const row = (await store.listDeferred({ nodeId: m.id }))[0]!;
    expect(row).toMatchObject({ state: 'FAILED', result: 'always broken' });
  });

  it('a handler that polls runs again on the same row until it is done', async () => {
    const { store } = await db();
    const { s } = scheduler(store, 'c1');
    let polls = 0;
    s.register('test.poll', async () => (++polls < 3 ? { again: new Date(Date.now() + 50) } : undefined));
    await s.start();
    const n = await node(store);
    await s.schedule(n.id, 'test.poll');
    await waitFor(() => polls === 3, 5000, 'three polls');
    await waitFor(async () => (await store.listDeferred({ nodeId: n.id, states: ['COMPLETED'] })).length === 1, 5000, 'completed');
    expect(await store.listDeferred({ nodeId: n.id })).toHaveLength(1);
  });

  it('rows a crashed run left RUNNING are requeued by the next start and run', async () => {
    const { store } = await db();
    const n = await node(store);
    const row = await store.createDeferred({ node_id: n.id, call: 'test.resume', start_after: new Date() });
    expect(await store.claimDeferred(row.uuid, 'c1')).toBe(true); // claimed, then the process "died"
    expect((await store.listDeferred({ nodeId: n.id }))[0]!.state).toBe('RUNNING');
    const { s } = scheduler(store, 'c1');
    let ran = 0;
    s.register('test.resume', async () => void ran++);
    await s.start();
    await waitFor(() => ran === 1, 5000, 'requeued row ran');
    await waitFor(async () => (await store.listDeferred({ nodeId: n.id }))[0]!.state === 'COMPLETED', 5000, 'completed');
  });
});
