/**
 * Per-node exclusive lock (Ironic's TaskManager): an atomic UPDATE on nodes.reservation, so two
 * actions never run on one node at once, across API requests, periodic work and conductors
 * sharing a database. Locks are released by the holder only; a conductor clears its own stale
 * locks at startup (crash recovery).
 */
import { NodeLockedError, NotFoundError } from '../shared/errors.js';
import { sleep } from '../shared/backoff.js';
import type { Node, Store } from './db/store.js';
import { withDbRetry } from './db/retry.js';

export interface Task {
  readonly node: Node;
  readonly purpose: string;
  /** Re-read the node (after writes made by this task). */
  refresh(): Promise<Node>;
  /** Adopt a node row this task just wrote (an UPDATE … RETURNING), instead of re-reading it. */
  replace(node: Node): void;
  release(): Promise<void>;
}

export interface LockOptions {
  /** Retry attempts while another holder has the node. 0 = fail fast. */
  retries?: number;
  retryIntervalMs?: number;
}

export class TaskManager {
  /** Locks this process holds: node id → purpose. */
  readonly held = new Map<number, string>();
  /** Background work started by spawn(), awaited by drain(). */
  private readonly inflight = new Set<Promise<unknown>>();

  constructor(
    private readonly store: Store,
    readonly holder: string,
    private readonly defaults: Required<LockOptions>,
  ) {}

  async acquire(nodeId: number, purpose: string, opts: LockOptions = {}): Promise<Task> {
    const retries = opts.retries ?? this.defaults.retries;
    const interval = opts.retryIntervalMs ?? this.defaults.retryIntervalMs;
    let locked: Node | undefined;
    for (let attempt = 0; ; attempt++) {
      locked = await this.store.reserveNode(nodeId, this.holder);
      if (locked) break;
      const current = await this.store.getNodeById(nodeId);
      if (!current) throw new NotFoundError('Node', String(nodeId));
      if (attempt >= retries) throw new NodeLockedError(current.uuid, current.reservation ?? 'unknown');
      await sleep(interval);
    }
    this.held.set(nodeId, purpose);
    let node: Node = locked;
    let released = false;
    const store = this.store;
    const held = this.held;
    const holder = this.holder;
    return {
      get node() {
        return node;
      },
      purpose,
      async refresh() {
        node = (await store.getNodeById(nodeId))!;
        return node;
      },
      replace(n: Node) {
        if (n.id === nodeId) node = n;
      },
      async release() {
        if (released) return;
        released = true;
        held.delete(nodeId);
        // A lock left behind blocks the node until a restart: ride out a busy or reconnecting DB.
        await withDbRetry(() => store.releaseNode(nodeId, holder), { what: `release lock of node ${nodeId}`, attempts: 12 });
      },
    };
  }

  /**
   * Ironic's spawn_after: take the lock, run `prepare` (state checks and the first writes; a throw
   * releases the lock and reaches the caller, so the API can answer a precise 4xx), then run `work`
   * in the background still holding the lock, and release it when `work` ends. Returns once
   * `prepare` succeeded (the API answers 202). `work` reports its own failures; one that escapes is
   * given to `onError`.
   */
  async spawn(nodeId: number, purpose: string, prepare: (task: Task) => Promise<void>, work: (task: Task) => Promise<void>, onError: (err: unknown) => void): Promise<void> {
    const task = await this.acquire(nodeId, purpose);
    try {
      await prepare(task);
    } catch (err) {
      await task.release();
      throw err;
    }
    this.track(
      (async () => {
        try {
          await work(task);
        } catch (err) {
          onError(err);
        } finally {
          await task.release();
        }
      })(),
    );
  }

  /** Keep a background promise until it settles (drain() waits for it). */
  track<T>(p: Promise<T>): Promise<T> {
    this.inflight.add(p);
    const done = () => this.inflight.delete(p);
    p.then(done, done);
    return p;
  }

  /** Background work still running. */
  get inFlight(): number {
    return this.inflight.size;
  }

  /** Wait (bounded) for background work; true when all of it finished. */
  async drain(timeoutMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((r) => {
      timer = setTimeout(() => r(false), Math.max(0, timeoutMs));
      timer.unref();
    });
    const done = await Promise.race([Promise.allSettled([...this.inflight]).then(() => true), timeout]);
    clearTimeout(timer);
    return done;
  }

  /** Acquire, run fn, always release. */
  async withLock<T>(nodeId: number, purpose: string, fn: (task: Task) => Promise<T>, opts: LockOptions = {}): Promise<T> {
    const task = await this.acquire(nodeId, purpose, opts);
    try {
      return await fn(task);
    } finally {
      await task.release();
    }
  }
}
