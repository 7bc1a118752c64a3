import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { openDatabase } from '../../conductor/db/database.js';
import { Store } from '../../conductor/db/store.js';
import { TaskManager } from '../../conductor/task-manager.js';
import { NodeLockedError } from '../../shared/errors.js';
import { tmpDir } from '../helpers.js';

describe('TaskManager (per-node lock)', () => {
  let store: Store;
  beforeAll(async () => {
    store = new Store(await openDatabase(`sqlite://${path.join(tmpDir(), 'tm.db')}`));
  });
  afterAll(() => store.close());

  it('serialises actions on one node: the second waits (retries) and runs after the first', async () => {
    const n = await store.createNode({ uuid: randomUUID(), driver: 'fake-hardware', provision_state: 'enroll' });
    const a = new TaskManager(store, 'conductor-a', { retries: 20, retryIntervalMs: 20 });
    const b = new TaskManager(store, 'conductor-b', { retries: 20, retryIntervalMs: 20 });
    const order: string[] = [];
    await Promise.all([
      a.withLock(n.id, 'first', async () => {
        order.push('a-start');
        await new Promise((r) => setTimeout(r, 150));
        order.push('a-end');
      }),
      new Promise((r) => setTimeout(r, 20)).then(() => b.withLock(n.id, 'second', async () => void order.push('b'))),
    ]);
    expect(order).toEqual(['a-start', 'a-end', 'b']);
    expect((await store.getNodeById(n.id))!.reservation).toBeNull();
  });

  it('fails fast with NodeLocked naming the holder when retries are exhausted; releases on error', async () => {
    const n = await store.createNode({ uuid: randomUUID(), driver: 'fake-hardware', provision_state: 'enroll' });
    const a = new TaskManager(store, 'holder-a', { retries: 0, retryIntervalMs: 10 });
    const b = new TaskManager(store, 'holder-b', { retries: 1, retryIntervalMs: 10 });
    const t = await a.acquire(n.id, 'long');
    await expect(b.acquire(n.id, 'x')).rejects.toThrow(NodeLockedError);
    await expect(b.acquire(n.id, 'x')).rejects.toThrow(/holder-a/);
    await t.release();
    await expect(b.withLock(n.id, 'boom', async () => { throw new Error('boom'); })).rejects.toThrow('boom');
    expect((await store.getNodeById(n.id))!.reservation).toBeNull();
  });

  it('spawn: a failing prepare releases the lock and reaches the caller; work runs holding the lock in the background; drain waits for it', async () => {
    const n = await store.createNode({ uuid: randomUUID(), driver: 'fake-hardware', provision_state: 'enroll' });
    const tm = new TaskManager(store, 'conductor-s', { retries: 0, retryIntervalMs: 10 });
    await expect(tm.spawn(n.id, 'refused', async () => { throw new Error('bad request'); }, async () => {}, () => {})).rejects.toThrow('bad request');
    expect((await store.getNodeById(n.id))!.reservation).toBeNull();
    let during: string | null = null;
    const errors: unknown[] = [];
    let finish!: () => void;
    const gate = new Promise<void>((r) => (finish = r));
    await tm.spawn(n.id, 'work', async () => {}, async (task) => {
      during = (await task.refresh()).reservation;
      await gate;
      throw new Error('work failed late');
    }, (err) => errors.push(err));
    // Returned once prepared: the lock is still held by the background work.
    expect((await store.getNodeById(n.id))!.reservation).toBe('conductor-s');
    expect(tm.inFlight).toBe(1);
    expect(await tm.drain(100)).toBe(false);
    finish();
    expect(await tm.drain(5000)).toBe(true);
    expect(during).toBe('conductor-s');
    expect((errors[0] as Error).message).toBe('work failed late');
    expect((await store.getNodeById(n.id))!.reservation).toBeNull();
  });
});
