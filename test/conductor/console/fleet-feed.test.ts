/**
 * The console feed against a real store (SQLite file): node writes reach it through the store's
 * channel, a burst is coalesced (one row per node however many writes), a client's bytes per
 * second are bounded with the rest held as ids (not queued messages), a stalled socket gets
 * nothing, the event id only advances once nothing is outstanding, a reconnect resumes from its id
 * (and resends exactly what changed since), and an id from another epoch or older than the log is
 * told to reload.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { openDatabase } from '../../../conductor/db/database.js';
import { Store, type Node } from '../../../conductor/db/store.js';
import { FleetFeed } from '../../../conductor/console/fleet-feed.js';
import type { SseSink } from '../../../conductor/console/feed-client.js';
import { tmpDir } from '../../helpers.js';

interface Ev {
  id?: string;
  event: string;
  data: string;
}

class Sink implements SseSink {
  text = '';
  unsent = 0;
  ended = false;
  private closers: Array<() => void> = [];
  write(chunk: string): void {
    this.text += chunk;
  }
  buffered(): number {
    return this.unsent;
  }
  onClose(fn: () => void): void {
    this.closers.push(fn);
  }
  end(): void {
    this.ended = true;
    for (const f of this.closers) f();
  }
  events(): Ev[] {
    return this.text
      .split('\n\n')
      .filter((b) => b.trim() && !b.startsWith(':'))
      .map((b) => {
        const e: Ev = { event: '', data: '' };
        for (const l of b.split('\n')) {
          if (l.startsWith('id: ')) e.id = l.slice(4);
          if (l.startsWith('event: ')) e.event = l.slice(7);
          if (l.startsWith('data: ')) e.data = l.slice(6);
        }
        return e;
      });
  }
  rows(): unknown[] {
    return this.events().filter((e) => e.event === 'nodes').flatMap((e) => JSON.parse(e.data).rows as unknown[]);
  }
}

describe('FleetFeed', () => {
  let store: Store;
  const agents = Object.assign(new EventEmitter(), { isConnected: () => false, connectedCount: () => 0 });
  const nodes: Node[] = [];
  const feed = () => new FleetFeed({ listNodes: () => store.listNodes(), agents, bmc: () => undefined, ownerOf: () => 'c1', onRingChange: () => undefined }, { tickMs: 60_000, logBatches: 5, bytesPerSecond: 16 * 1024, maxBufferedBytes: 64 * 1024 });

  beforeAll(async () => {
    store = new Store(await openDatabase(`sqlite://${path.join(tmpDir('ironfleet-feed-'), 'feed.db')}`));
    for (let i = 0; i < 1000; i++) nodes.push(await store.createNode({ uuid: randomUUID(), name: `n-${String(i).padStart(4, '0')}`, driver: 'fake-hardware', provision_state: 'enroll', conductor_group: i % 2 ? 'rack-a' : 'rack-b' }));
  });
  afterAll(() => store.close());

  it('snapshot holds every node; a burst of writes to one node is one row in one batch', async () => {
    const f = feed();
    const snap = await f.snapshot();
    expect(snap.rows).toHaveLength(1000);
    expect(snap.fields[4]).toBe('provision');
    const sink = new Sink();
    await f.attach(sink, snap.id);
    for (let k = 0; k < 30; k++) await store.updateNode(nodes[0]!.id, { power_state: k % 2 ? 'power on' : 'power off', last_error: `k${k}` });
    f.tick();
    const batches = sink.events().filter((e) => e.event === 'nodes');
    expect(batches).toHaveLength(1);
    const rows = JSON.parse(batches[0]!.data).rows as unknown[][];
    expect(rows).toHaveLength(1);
    expect(rows[0]![5]).toBe('power on'); // the last write
    expect(batches[0]!.id).toBe(`${f.epoch}-${Number(snap.id.split('-')[1]) + 1}`);
    // A write that changes nothing the map shows (last_error) makes no batch.
    await store.updateNode(nodes[0]!.id, { last_error: 'another' });
    f.tick();
    expect(sink.events().filter((e) => e.event === 'nodes')).toHaveLength(1);
    f.close();
  });

  it('a storm larger than the budget: bounded bytes per flush, the rest held as ids, the id advances only when done', async () => {
    const f = feed();
    const snap = await f.snapshot();
    const sink = new Sink();
    await f.attach(sink, snap.id);
    const before = sink.text.length;
    for (const n of nodes) await store.updateNode(n.id, { maintenance: true, maintenance_reason: 'storm' });
    f.tick();
    const first = sink.events().filter((e) => e.event === 'nodes');
    expect(first).toHaveLength(1);
    expect(first[0]!.id).toBeUndefined(); // more to come: no id yet
    expect(sink.text.length - before).toBeLessThan(16 * 1024 + 512);
    expect(JSON.parse(first[0]!.data).more).toBeGreaterThan(0);
    // Later flushes, with time passing, deliver the rest; every node arrives exactly once.
    let now = Date.now();
    for (let k = 0; k < 40 && sink.rows().length < 1000; k++) {
      now += 1000;
      (f as unknown as { clients: Set<{ flush(n: number, p: unknown[]): void }> }).clients.forEach((c) => c.flush(now, []));
    }
    const rows = sink.rows() as unknown[][];
    expect(rows).toHaveLength(1000);
    expect(new Set(rows.map((r) => r[0])).size).toBe(1000);
    expect(rows.every((r) => r[6] === 1)).toBe(true);
    const last = sink.events().filter((e) => e.event === 'nodes').at(-1)!;
    expect(last.id).toMatch(new RegExp(`^${f.epoch}-\\d+$`));
    f.close();
  });

  it('a stalled socket is written nothing; resuming from an id resends what changed since; stale ids reload', async () => {
    const f = feed();
    const snap = await f.snapshot();
    const stalled = new Sink();
    await f.attach(stalled, snap.id);
    stalled.unsent = 10 * 1024 * 1024;
    const size = stalled.text.length;
    await store.updateNode(nodes[1]!.id, { provision_state: 'manageable' });
    await store.updateNode(nodes[2]!.id, { provision_state: 'manageable' });
    f.tick();
    expect(stalled.text.length).toBe(size);

    // Reconnect from the snapshot id: nodes 1 and 2 are resent.
    const back = new Sink();
    await f.attach(back, snap.id);
    f.tick();
    expect((back.rows() as unknown[][]).map((r) => r[0]).sort()).toEqual([nodes[1]!.id, nodes[2]!.id].sort());

    // Deleting a node: its id arrives as a number.
    const doomed = await store.createNode({ uuid: randomUUID(), name: 'doomed', driver: 'fake-hardware', provision_state: 'enroll' });
    f.tick();
    await store.deleteNode(doomed.id);
    f.tick();
    expect(back.rows()).toContain(doomed.id);

    // Another epoch, or older than the log (5 batches here): reset and end.
    const other = new Sink();
    await f.attach(other, 'zzzz-1');
    expect(other.events()[0]!.event).toBe('reset');
    expect(other.ended).toBe(true);
    for (let k = 0; k < 8; k++) {
      await store.updateNode(nodes[3]!.id, { power_state: k % 2 ? 'power on' : 'power off' });
      f.tick();
    }
    const old = new Sink();
    await f.attach(old, snap.id);
    expect(old.events()[0]!.event).toBe('reset');
    f.close();
  });
});
