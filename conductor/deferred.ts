/**
 * Deferred actions: nothing in the conductor sleeps while it holds a node. Anything that waits — a
 * BMC power transition, the agent calling back, a `wait` step's timer, a fast-track lease — is a
 * row in `deferred_actions` with a due time. This scheduler claims due rows (an atomic state
 * change, so two conductors never run one row), takes the node lock (a locked node puts the row
 * back without spending a retry), runs the registered handler, and records the outcome. A
 * conductor restart re-queues the rows it was running; every waiting row simply runs when due.
 */
import type { Logger } from 'pino';
import type { DeferredAction, Json, Store } from './db/store.js';
import { NodeLockedError, errorMessage } from '../shared/errors.js';
import { isTransientDbError, withDbRetry } from './db/retry.js';
import { Backoff, sleep } from '../shared/backoff.js';
import type { Task, TaskManager } from './task-manager.js';

/** A handler may ask to run again later (polling) by returning `{ again: Date }`. */
export type DeferredHandler = (task: Task, args: Json, action: DeferredAction) => Promise<void | { again: Date }>;

export interface DeferredOptions {
  /** Actions run at once. @default 64 */
  concurrency?: number;
  /** Longest sleep between scans (new due rows wake it earlier). @default 1000 */
  maxIdleMs?: number;
  /** Called when an action ran out of retries. */
  onFailed?: (action: DeferredAction, err: unknown, task: Task) => Promise<void>;
  /** Is the action's node this conductor's (its hash-ring owner)? Every action when absent. */
  owns?: (action: DeferredAction) => Promise<boolean>;
}

export class DeferredScheduler {
  private readonly handlers = new Map<string, DeferredHandler>();
  private readonly running = new Set<Promise<void>>();
  private timer: NodeJS.Timeout | undefined;
  private scanning = false;
  private rescan = false;
  private stopped = true;
  readonly counters = { launched: 0, completed: 0, failed: 0, retried: 0, lock_busy: 0 };

  constructor(
    private readonly store: Store,
    private readonly tasks: TaskManager,
    private readonly host: string,
    private readonly log: Logger,
    private readonly o: DeferredOptions = {},
  ) {}

  register(call: string, handler: DeferredHandler): void {
    this.handlers.set(call, handler);
  }

  /** Durable: the row exists before this returns. Due now → the scheduler wakes at once. */
  async schedule(nodeId: number, call: string, args: Json = {}, at: Date = new Date(), createdBy: string | null = null): Promise<DeferredAction> {
    if (!this.handlers.has(call)) throw new Error(`no deferred handler for ${call}`);
    const a = await this.store.createDeferred({ node_id: nodeId, call, arguments: args, start_after: at, created_by: createdBy });
    if (!this.stopped) {
      if (at.getTime() <= Date.now()) this.wake();
      else this.arm(at.getTime() - Date.now());
    }
    return a;
  }

  get inFlight(): number {
    return this.running.size;
  }

  /** Requeues what a previous run left RUNNING (retried while the database is busy or away), then runs. */
  async start(): Promise<void> {
    this.stopped = false;
    const backoff = new Backoff({ initialMs: 200, maxMs: 10_000 });
    for (;;) {
      try {
        const requeued = await this.store.requeueDeferred(this.host);
        if (requeued) this.log.warn({ requeued }, 'deferred actions interrupted by a restart are queued again');
        break;
      } catch (err) {
        if (this.stopped) return;
        const delay = backoff.next();
        this.log.error({ err, retry_in_ms: delay }, 'deferred scheduler could not requeue interrupted actions; retrying');
        await sleep(delay);
      }
    }
    this.wake();
  }

  /** A bookkeeping write on a row: retried while the database is busy or away. */
  private write(what: string, fn: () => Promise<unknown>): Promise<unknown> {
    return withDbRetry(fn, { what: `deferred ${what}`, log: this.log });
  }

  /** Stop launching; wait for running actions (they finish their current handler call). */
  async stop(timeoutMs = 60_000): Promise<boolean> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    const all = Promise.allSettled([...this.running]).then(() => true);
    return Promise.race([all, new Promise<boolean>((r) => setTimeout(() => r(false), timeoutMs).unref())]);
  }

  wake(): void {
    this.arm(0);
  }

  private arm(ms: number): void {
    if (this.stopped) return;
    const at = Date.now() + ms;
    if (this.timer && this.nextAt <= at) return;
    if (this.timer) clearTimeout(this.timer);
    this.nextAt = at;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.nextAt = Infinity;
      void this.scan();
    }, ms);
  }
  private nextAt = Infinity;

  private async scan(): Promise<void> {
    if (this.stopped) return;
    if (this.scanning) {
      this.rescan = true;
      return;
    }
    this.scanning = true;
    try {
      do {
        this.rescan = false;
        const free = (this.o.concurrency ?? 64) - this.running.size;
        if (free <= 0) break;
        // With several conductors, rows of nodes another conductor owns are left to it: read a
        // few times more than there is room for, so they cannot crowd out our own.
        const owns = this.o.owns;
        const due = await this.store.listDueDeferred(new Date(), owns ? free * 4 : free);
        let launched = 0;
        for (const a of due) {
          if (this.stopped || launched >= free) break;
          if (owns && !(await owns(a))) continue;
          if (!(await this.store.claimDeferred(a.uuid, this.host))) continue;
          launched++;
          const p = this.runOne(a)
            .catch((err) => {
              // Only a bookkeeping write that stayed failing lands here; the row is RUNNING and is
              // requeued by the next start (or by a later scan once it is due again).
              this.log.error({ err, node_id: a.node_id, call: a.call, action: a.uuid }, 'deferred action bookkeeping failed');
            })
            .finally(() => {
              this.running.delete(p);
              this.wake();
            });
          this.running.add(p);
        }
        if (launched === free) this.rescan = true;
      } while (this.rescan && !this.stopped && this.running.size < (this.o.concurrency ?? 64));
    } catch (err) {
      this.log.error({ err }, 'deferred scan failed; retrying on the next scan');
    } finally {
      this.scanning = false;
    }
    const next = await this.store.nextDeferredDue().catch(() => undefined);
    const idle = this.o.maxIdleMs ?? 1000;
    this.arm(next ? Math.min(idle, Math.max(0, next.getTime() - Date.now())) : idle);
  }

  private async runOne(a: DeferredAction): Promise<void> {
    const handler = this.handlers.get(a.call);
    if (!handler) {
      await this.write('fail', () => this.store.updateDeferred(a.uuid, { state: 'FAILED', result: `no handler for ${a.call} on ${this.host}` }));
      return;
    }
    let task: Task;
    try {
      task = await this.tasks.acquire(a.node_id, `deferred ${a.call}`, { retries: 0 });
    } catch (err) {
      // Someone holds the node: put the row back, no retry spent.
      this.counters.lock_busy++;
      // Someone holds the node, or the database is busy: put the row back. Anything else fails it.
      const busy = err instanceof NodeLockedError || isTransientDbError(err);
      await this.write('requeue', () => this.store.updateDeferred(a.uuid, { state: busy ? 'CREATED' : 'FAILED', conductor: null, start_after: new Date(Date.now() + 200), ...(busy ? {} : { result: errorMessage(err) }) }));
      return;
    }
    this.counters.launched++;
    try {
      const r = await handler(task, a.arguments, a);
      if (r && 'again' in r) {
        // Polling: the same row, due again later.
        await this.write('poll again', () => this.store.updateDeferred(a.uuid, { state: 'CREATED', start_after: r.again, conductor: null }));
        this.arm(Math.max(0, r.again.getTime() - Date.now()));
      } else {
        await this.write('complete', () => this.store.updateDeferred(a.uuid, { state: 'COMPLETED', result: 'ok' }));
        this.counters.completed++;
      }
    } catch (err) {
      const msg = errorMessage(err);
      if (isTransientDbError(err)) {
        // The database, not the action, failed: run it again without spending a retry.
        this.counters.retried++;
        this.log.warn({ node_id: a.node_id, call: a.call, err: msg }, 'deferred action hit a busy or unavailable database; will run again');
        await this.write('requeue', () => this.store.updateDeferred(a.uuid, { state: 'PENDING_RETRY', start_after: new Date(Date.now() + 1000), result: msg, conductor: null }));
      } else if (a.retry_remaining > 0) {
        this.counters.retried++;
        const delay = 1000 * 2 ** Math.max(0, 3 - a.retry_remaining);
        this.log.warn({ node_id: a.node_id, call: a.call, err: msg, retry_in_ms: delay }, 'deferred action failed; will retry');
        await this.write('retry', () => this.store.updateDeferred(a.uuid, { state: 'PENDING_RETRY', retry_remaining: a.retry_remaining - 1, start_after: new Date(Date.now() + delay), result: msg, conductor: null }));
      } else {
        this.counters.failed++;
        this.log.error({ node_id: a.node_id, call: a.call, err: msg }, 'deferred action failed');
        await this.write('fail', () => this.store.updateDeferred(a.uuid, { state: 'FAILED', result: msg }));
        await this.o.onFailed?.(a, err, task).catch((e) => this.log.error({ err: e }, 'deferred failure hook failed'));
      }
    } finally {
      await task.release();
    }
  }
}
