/**
 * The BMC worker pool: N piscina pools of one thread each, one per shard. A BMC (origin, user) is
 * assigned to shard hash(key) % N for good, so its sockets and its single session stay warm in one
 * thread; every operation on that BMC — sweeps, sensor reads, API power actions — runs there.
 * Resizing hands live sessions over to their new owners instead of logging in again.
 */
import { fnv1a } from '../../shared/hash.js';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import type { SessionEvent, SessionRecord, RedfishClientOptions } from './client.js';
import type { RedfishTarget } from './driver-info.js';
import { NO_TARGET, type OpError } from './errors.js';
import type { BatchRef, NodeRef, SweepItem, Task } from './worker.js';

// Compiled next to this module; when this module runs from TypeScript sources (tests), use the build.
const WORKER = [new URL('./worker.js', import.meta.url), new URL('../../dist/conductor/redfish/worker.js', import.meta.url)]
  .map((u) => fileURLToPath(u))
  .find((f) => existsSync(f)) ?? fileURLToPath(new URL('./worker.js', import.meta.url));


export type { NodeRef, SweepItem, OpError };

/** A node's recorded power state and (when compared) health, for a sweep to count matching reads only. */
export interface SweepKnown {
  power: string;
  health?: string | null;
}

type WithNode = Extract<Task, { node: NodeRef }>;
/** A node operation without its node (distributes Omit over the union). */
export type NodeTask = WithNode extends infer T ? (T extends WithNode ? Omit<T, 'node'> : never) : never;

export class BmcOpError extends Error {
  constructor(readonly op: OpError) {
    super(op.message);
    this.name = 'BmcOpError';
  }
  get code(): string {
    return this.op.code;
  }
}

type BatchOp = 'sweep' | 'sensors';

/** The same ref objects in the same order (what the thread kept can stand for them). */
function sameRefs(a: readonly BatchRef[], b: readonly BatchRef[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export class BmcPool {
  private shards: Piscina[] = [];
  /** Per shard, the target objects it was sent (batches send only the uuid for those; see worker.ts). */
  private sent: Array<WeakSet<RedfishTarget>> = [];
  /**
   * Per shard and batch op, the refs last sent and their sequence number: a batch whose refs are
   * the very same objects goes as its number alone (the thread kept it), not 5,000 refs cloned again.
   */
  private lastBatch: Array<Map<BatchOp, { seq: number; refs: BatchRef[] }>> = [];
  private batchSeq = 0;
  private closed = false;
  /** Set when close() starts: no new work is handed to threads about to be destroyed. */
  private closing = false;

  /** Per shard, the adoption of persisted sessions running for a replacement thread (operations wait for it). */
  private adopting: Array<Promise<void> | undefined> = [];

  constructor(
    private size: number,
    private readonly clientOptions: RedfishClientOptions,
    private readonly onSessionEvents: (events: SessionEvent[]) => Promise<void>,
    /**
     * A shard's thread died and piscina started another: it holds no client and no session. The
     * owner gives it the persisted sessions of that shard's BMCs (importSessions) before any other
     * operation reaches it, so the BMCs see no new login and the old sessions are not orphaned.
     */
    private readonly onThreadReplaced?: (shard: number) => Promise<void>,
  ) {}

  get poolSize(): number {
    return this.shards.length;
  }

  async start(): Promise<void> {
    this.shards = Array.from({ length: this.size }, (_, i) => this.makeShard(i));
    this.adopting = this.shards.map(() => undefined);
    this.sent = this.shards.map(() => new WeakSet());
    this.lastBatch = this.shards.map(() => new Map());
  }

  private makeShard(i: number): Piscina {
    const shard = new Piscina({ filename: WORKER, minThreads: 1, maxThreads: 1, concurrentTasksPerWorker: 1024, idleTimeout: Number.MAX_SAFE_INTEGER, atomics: 'disabled', workerData: { options: this.clientOptions } });
    let created = 0;
    shard.on('workerCreate', () => {
      // The first thread is the shard's own; any later one replaces a thread that died.
      if (created++ === 0 || !this.onThreadReplaced || this.closing) return;
      const run: Promise<void> = this.onThreadReplaced(i)
        .catch(() => undefined)
        .finally(() => {
          if (this.adopting[i] === run) this.adopting[i] = undefined;
        });
      this.adopting[i] = run;
    });
    return shard;
  }

  shardOf(key: string): number {
    return fnv1a(key) % this.shards.length;
  }

  private async exec<T>(shard: number, task: Task): Promise<T> {
    if (this.closed || this.closing) throw new Error('BMC pool is closed');
    // Session import is what a replaced thread's adoption itself sends: it must not wait for it.
    const adopting = task.op === 'import-sessions' ? undefined : this.adopting[shard];
    if (adopting) await adopting;
    const out = (await this.shards[shard]!.run(task)) as T & { sessionEvents?: SessionEvent[] };
    if (out && typeof out === 'object' && Array.isArray(out.sessionEvents) && out.sessionEvents.length) await this.onSessionEvents(out.sessionEvents);
    return out;
  }

  /** A single-node operation on the node's owning shard; throws BmcOpError on failure. */
  async op<T>(node: NodeRef, task: NodeTask, onRetried?: (summaries: string[]) => void): Promise<T> {
    const res = await this.exec<{ ok: boolean; value?: T; error?: OpError; retried?: string[] }>(this.shardOf(node.target.key), { ...task, node } as Task);
    if (!res.ok) throw new BmcOpError(res.error!);
    if (res.retried?.length) onRetried?.(res.retried);
    return res.value as T;
  }

  private group(nodes: NodeRef[]): NodeRef[][] {
    const groups: NodeRef[][] = this.shards.map(() => []);
    for (const n of nodes) groups[this.shardOf(n.target.key)]!.push(n);
    return groups;
  }

  /**
   * One batch op per shard, all shards in parallel. A node whose target object the shard was sent
   * before goes as `{ uuid }` (with its recorded state `p`/`h` when `known` gives one); one the shard
   * answers NO_TARGET for (its thread restarted) is sent again in full. Refs identical to the
   * shard's last batch go as that batch's number; a thread that no longer has it asks for them.
   */
  private async batch<I extends { uuid: string; error?: OpError }>(op: BatchOp, nodes: NodeRef[], deadlineMs: number, known?: (n: NodeRef) => SweepKnown | undefined): Promise<{ items: I[]; unchanged: number }> {
    let unchanged = 0;
    const run = async (g: NodeRef[], i: number, full: boolean): Promise<I[]> => {
      const sent = this.sent[i]!;
      const refs: BatchRef[] = g.map((n) => {
        const k = known?.(n);
        if (!full && sent.has(n.target)) return this.quietRef(n, k);
        return k ? { uuid: n.uuid, target: n.target, p: k.power, h: k.health } : n;
      });
      const last = this.lastBatch[i]!;
      const prev = full ? undefined : last.get(op);
      const same = prev !== undefined && sameRefs(prev.refs, refs);
      const seq = same ? prev.seq : ++this.batchSeq;
      const out = await this.exec<{ items: I[]; unchanged?: number; resend?: true }>(i, same ? { op, seq, deadlineMs } : { op, seq, nodes: refs, deadlineMs });
      if (out.resend) {
        // The thread was replaced since (piscina restarts a dead one): send the refs themselves.
        last.delete(op);
        return run(g, i, full);
      }
      if (!same) for (const n of g) sent.add(n.target);
      // A retry of some nodes replaces the thread's batch: the next sweep sends its refs again.
      if (full) last.delete(op);
      else if (!same) last.set(op, { seq, refs });
      unchanged += out.unchanged ?? 0;
      const items = out.items;
      const missing = new Set(items.filter((x) => x.error?.code === NO_TARGET).map((x) => x.uuid));
      if (!missing.size || full) return items;
      const again = await run(g.filter((n) => missing.has(n.uuid)), i, true);
      return [...items.filter((x) => !missing.has(x.uuid)), ...again];
    };
    const parts = await Promise.all(this.group(nodes).map((g, i) => (g.length ? run(g, i, false) : [])));
    return { items: parts.flat(), unchanged };
  }

  /**
   * One power/health read per node, all shards in parallel. With `known` (a node's recorded power
   * state, and health when compared), a node read fine in that state is only counted (`unchanged`).
   */
  sweep(nodes: NodeRef[], deadlineMs: number, known?: (n: NodeRef) => SweepKnown | undefined): Promise<{ items: SweepItem[]; unchanged: number }> {
    return this.batch<SweepItem>('sweep', nodes, deadlineMs, known);
  }

  /** `{ uuid, p, h }` per recorded state object (the caller keeps one per unchanged node): built once, sent every sweep. */
  private readonly quietRefs = new WeakMap<SweepKnown, BatchRef>();
  /** `{ uuid }` per node ref, for nodes without a recorded state: the same object every batch. */
  private readonly bareRefs = new WeakMap<NodeRef, BatchRef>();

  private quietRef(n: NodeRef, k: SweepKnown | undefined): BatchRef {
    if (!k) {
      let b = this.bareRefs.get(n);
      if (!b) this.bareRefs.set(n, (b = { uuid: n.uuid }));
      return b;
    }
    let r = this.quietRefs.get(k);
    if (!r || r.uuid !== n.uuid) this.quietRefs.set(k, (r = k.health === undefined ? { uuid: n.uuid, p: k.power } : { uuid: n.uuid, p: k.power, h: k.health }));
    return r;
  }

  async sensors<T>(nodes: NodeRef[], deadlineMs: number): Promise<Array<{ uuid: string; ok: boolean; value?: T; error?: OpError }>> {
    return (await this.batch<{ uuid: string; ok: boolean; value?: T; error?: OpError }>('sensors', nodes, deadlineMs)).items;
  }

  /** Adopt sessions persisted by an earlier run (each to its owning shard). */
  async importSessions(sessions: Array<SessionRecord & { target: RedfishTarget }>): Promise<number> {
    const groups = this.shards.map(() => [] as Array<SessionRecord & { target: RedfishTarget }>);
    for (const s of sessions) groups[this.shardOf(s.key)]!.push(s);
    const res = await Promise.all(groups.map((g, i) => (g.length ? this.exec<{ adopted: number }>(i, { op: 'import-sessions', sessions: g }) : { adopted: 0 })));
    return res.reduce((a, r) => a + r.adopted, 0);
  }

  /** Change the number of shards; live sessions move to their new owners (no new logins). */
  async resize(n: number, targets: Map<string, RedfishTarget>): Promise<void> {
    if (n === this.shards.length) return;
    const exported = (await Promise.all(this.shards.map((s) => s.run({ op: 'export-sessions' } satisfies Task)))).flat() as SessionRecord[];
    await Promise.all(this.shards.map((s) => s.destroy()));
    this.size = n;
    await this.start();
    await this.importSessions(exported.filter((s) => targets.has(s.key)).map((s) => ({ ...s, target: targets.get(s.key)! })));
  }

  /** Log out of these BMCs and drop their clients (no node uses them any more). */
  async forget(keys: string[]): Promise<void> {
    const groups = this.shards.map(() => [] as string[]);
    for (const k of keys) groups[this.shardOf(k)]!.push(k);
    await Promise.all(groups.map((g, i) => (g.length ? this.exec(i, { op: 'forget', keys: g }) : undefined)));
  }

  /** Hands BMCs to another conductor: clients dropped without logout (the sessions stay valid). */
  async release(keys: string[]): Promise<number> {
    if (this.closed || this.closing) return 0;
    const groups = this.shards.map(() => [] as string[]);
    for (const k of keys) groups[this.shardOf(k)]!.push(k);
    const res = await Promise.all(groups.map((g, i) => (g.length ? this.exec<{ released: number }>(i, { op: 'release', keys: g }) : { released: 0 })));
    return res.reduce((a, r) => a + r.released, 0);
  }

  async stats(): Promise<Record<string, number>> {
    if (this.closed || this.closing) return {};
    const per = (await Promise.all(this.shards.map((s) => s.run({ op: 'stats' } satisfies Task)))) as Array<Record<string, number>>;
    const total: Record<string, number> = {};
    for (const p of per) for (const [k, v] of Object.entries(p)) total[k] = (total[k] ?? 0) + v;
    return total;
  }

  utilization(): number {
    if (this.shards.length === 0) return 0;
    return this.shards.reduce((a, s) => a + s.utilization, 0) / this.shards.length;
  }

  /** Log out of every BMC (no orphan sessions) and stop the threads. */
  async close(): Promise<void> {
    if (this.closed || this.closing) return;
    this.closing = true;
    const results = await Promise.allSettled(this.shards.map((s) => s.run({ op: 'shutdown' } satisfies Task)));
    for (const r of results) if (r.status === 'fulfilled') await this.onSessionEvents((r.value as { sessionEvents: SessionEvent[] }).sessionEvents);
    this.closed = true;
    await Promise.all(this.shards.map((s) => s.destroy()));
  }
}
