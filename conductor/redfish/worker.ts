/**
 * The piscina worker of the BMC fleet engine. Each worker owns a stable shard of BMCs: their
 * RedfishClients (keep-alive sockets, sessions, ETag caches, breakers) live here for the life of
 * the worker, so a BMC sees exactly one session from the whole conductor. Results cross back as
 * plain data; session changes are returned for the main thread to persist.
 */
import v8 from 'node:v8';
import { workerData } from 'node:worker_threads';
import { PerformanceObserver, constants } from 'node:perf_hooks';
import { operationRetries } from './retry-policy.js';
import { socketBudget } from './socket-budget.js';
import { RedfishClient, type ClientStats, type SessionEvent, type SessionRecord } from './client.js';
import { NO_TARGET, RedfishError, type OpError } from './errors.js';
import type { RedfishTarget } from './driver-info.js';
import type { RedfishClientOptions } from './client-types.js';
import * as ops from './ops.js';
import { runBatch, type BatchOutcome, type BatchRunOptions } from './batch-run.js';

const clients = new Map<string, RedfishClient>();

/** Garbage-collection pauses of this thread by kind (ms), for /metrics: the BMC threads' hidden cost. */
const gcMs = { minor: 0, major: 0, incremental: 0, weak: 0 };
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    const k = (e as unknown as { detail?: { kind?: number } }).detail?.kind ?? 0;
    const c = k === constants.NODE_PERFORMANCE_GC_MINOR ? 'minor' : k === constants.NODE_PERFORMANCE_GC_MAJOR ? 'major' : k === constants.NODE_PERFORMANCE_GC_INCREMENTAL ? 'incremental' : 'weak';
    gcMs[c] += e.duration;
  }
}).observe({ entryTypes: ['gc'] });
/**
 * Client options and the descriptor budget come with the thread (piscina's workerData), not in a
 * task: a thread piscina starts in place of one that died is configured like the first was.
 */
const clientOpts: RedfishClientOptions = (workerData as { options?: RedfishClientOptions } | null)?.options ?? {};
socketBudget.configure(clientOpts.socketBudget);

function client(t: RedfishTarget): RedfishClient {
  let c = clients.get(t.key);
  if (!c) {
    c = new RedfishClient(t, clientOpts);
    clients.set(t.key, c);
  } else c.updateTarget(t);
  return c;
}

/**
 * Each node's target as last sent, so a sweep sends `{ uuid }` for nodes whose target this thread
 * already has (pool.ts): the targets — a CA certificate each — were cloned in and thrown away on
 * every sweep, which at 10,000 BMCs was a good part of the workers' garbage. CA text is interned.
 */
const targets = new Map<string, RedfishTarget>();
const caText = new Map<string, string>();

function remember(n: NodeRef): RedfishTarget {
  const t = n.target;
  if (typeof t.verify === 'string') {
    const known = caText.get(t.verify);
    if (known) t.verify = known;
    else caText.set(t.verify, t.verify);
  }
  targets.set(n.uuid, t);
  return t;
}

export interface NodeRef {
  uuid: string;
  target: RedfishTarget;
}

/**
 * A node in a batch: its full ref, or only its uuid when this thread has its target. In a sweep,
 * `p` (and `h`, when health is compared) are the node's recorded power state and health: a read
 * that matches them is only counted, not sent back (a steady fleet's sweep returns nothing per node).
 */
export type BatchRef = (NodeRef | { uuid: string; target?: undefined }) & { p?: string; h?: string | null };

function toOpError(err: unknown): OpError {
  if (err instanceof RedfishError) return { code: err.code, message: err.message, status: err.status };
  return { code: 'RF_INTERNAL', message: (err as Error)?.message ?? String(err) };
}

/**
 * Every client's pending session changes (the main thread persists whatever a result carries).
 * A check per client, not a set of the batch's keys built per sweep.
 */
function drainSessionEvents(): SessionEvent[] {
  const out: SessionEvent[] = [];
  for (const c of clients.values()) {
    const e = c.takeSessionEvents();
    if (e.length) out.push(...e);
  }
  return out;
}

/**
 * The last batch of each op as sent with its number: the pool sends a steady sweep as that number
 * alone when its refs are the same objects as last time (pool.ts), so 5,000 refs are neither
 * cloned in nor collected here per sweep. Undefined when this thread does not have that batch
 * (it was started since, or another batch came in between): the pool then sends the refs.
 */
const batches = new Map<BatchTask['op'], { seq: number; nodes: BatchRef[] }>();
/** Batches run from what this thread kept, and numbers it did not have (stats). */
const batchCounts = { batches_reused: 0, batches_resent: 0 };

function batchOf(task: BatchTask): BatchRef[] | undefined {
  if (task.nodes) {
    batches.set(task.op, { seq: task.seq, nodes: task.nodes });
    return task.nodes;
  }
  const b = batches.get(task.op);
  if (b?.seq !== task.seq) return void batchCounts.batches_resent++;
  batchCounts.batches_reused++;
  return b.nodes;
}

/** A batch op: its refs, or without them the number of the batch they were last sent with. */
export interface BatchTask {
  op: 'sweep' | 'sensors';
  seq: number;
  nodes?: BatchRef[];
  deadlineMs: number;
}

export type Task =
  | BatchTask
  | { op: 'power'; node: NodeRef; target: ops.PowerTarget; timeoutS?: number }
  | { op: 'power-get'; node: NodeRef }
  | { op: 'boot'; node: NodeRef; device: string; persistent: boolean }
  | { op: 'firmware-start'; node: NodeRef; imageUri: string; component: 'bios' | 'bmc' }
  | { op: 'firmware-task'; node: NodeRef; taskUri: string }
  | { op: 'firmware-versions'; node: NodeRef }
  | { op: 'export-sessions' }
  | { op: 'import-sessions'; sessions: Array<SessionRecord & { target?: RedfishTarget }> }
  | { op: 'stats' }
  | { op: 'forget'; keys: string[] }
  | { op: 'release'; keys: string[] }
  | { op: 'shutdown' };

export interface SweepItem {
  uuid: string;
  ok: boolean;
  power?: ops.IronicPower | null;
  health?: ops.Health | null;
  error?: OpError;
  ms: number;
}

/** A read slower than this (ms) leaves the sweep window (batch-run.ts): healthy BMCs answer in a few ms. */
const SLOW_MS = 250;

/** `fn` for every node of the batch under one deadline, through this thread's window (batch-run.ts). */
function perNode<T>(nodes: BatchRef[], deadlineMs: number, fn: (c: RedfishClient, t: RedfishTarget) => Promise<T>, keep?: BatchRunOptions<T>['keep']): Promise<Array<BatchOutcome<T>>> {
  return runBatch(
    nodes,
    { deadlineMs, window: clientOpts.sweepWindow || nodes.length, slowMs: SLOW_MS, keep },
    (i) => {
      const n = nodes[i]!;
      const t = n.target ? remember(n) : targets.get(n.uuid);
      if (!t) return { code: NO_TARGET, message: `no target for node ${n.uuid} in this thread` };
      return fn(client(t), t);
    },
    toOpError,
    (i) => {
      const origin = targets.get(nodes[i]!.uuid)?.origin ?? 'BMC';
      return toOpError(new RedfishError('RF_TIMEOUT', `no answer from ${origin} before the sweep deadline (${deadlineMs} ms)`, undefined, origin));
    },
  );
}

function dropTargets(keys: string[]): void {
  const gone = new Set(keys);
  for (const [uuid, t] of targets) if (gone.has(t.key)) targets.delete(uuid);
}

export default async function run(task: Task): Promise<unknown> {
  switch (task.op) {
    case 'sweep': {
      const nodes = batchOf(task);
      if (!nodes) return { items: [], resend: true };
      // A read matching the node's recorded state is counted as it comes and not kept.
      let unchanged = 0;
      const changed = (i: number, ok: boolean, v: ops.PowerHealth | undefined): boolean => {
        const n = nodes[i]!;
        if (!ok || n.p === undefined || v?.power !== n.p || (n.h !== undefined && (v.health ?? null) !== n.h)) return true;
        unchanged++;
        return false;
      };
      const res = await perNode(nodes, task.deadlineMs, (c, t) => ops.readPowerHealth(c, t, 0), changed);
      const items: SweepItem[] = res.map((r) => ({ uuid: r.uuid, ok: r.ok, power: r.value?.power, health: r.value?.health, error: r.error, ms: r.ms }));
      return { items, unchanged, sessionEvents: drainSessionEvents() };
    }
    case 'sensors': {
      const nodes = batchOf(task);
      if (!nodes) return { items: [], resend: true };
      const res = await perNode(nodes, task.deadlineMs, ops.readSensors);
      return { items: res, sessionEvents: drainSessionEvents() };
    }
    case 'power':
    case 'power-get':
    case 'boot':
    case 'firmware-start':
    case 'firmware-task':
    case 'firmware-versions': {
      const t = remember(task.node);
      const c = client(t);
      try {
        let value: unknown;
        // One deadline per operation: transient BMC answers are ridden through until then.
        const retry: ops.OpRetry = { deadline: Date.now() + (clientOpts?.operationDeadlineMs ?? 60_000), traces: [] };
        if (task.op === 'power') value = await ops.setPower(c, t, task.target, task.timeoutS, retry);
        else if (task.op === 'power-get') value = await ops.readPowerHealthOp(c, t, retry);
        else if (task.op === 'boot') value = await ops.setBootDevice(c, t, task.device, task.persistent, retry);
        else if (task.op === 'firmware-start') value = await ops.startFirmwareUpdate(c, t, task.imageUri, task.component, retry);
        else if (task.op === 'firmware-task') value = await ops.readTask(c, t, task.taskUri, retry);
        else value = await ops.readFirmwareVersions(c, t, retry);
        const retried = retry.traces!.filter((x) => x.retried).map((x) => x.summary());
        return { ok: true, value, ...(retried.length ? { retried } : {}), sessionEvents: c.takeSessionEvents() };
      } catch (err) {
        return { ok: false, error: toOpError(err), sessionEvents: c.takeSessionEvents() };
      }
    }
    case 'export-sessions': {
      // Hand every live session over (pool resize): no DELETE, the new owner adopts it.
      const out: SessionRecord[] = [];
      for (const c of clients.values()) {
        const s = c.releaseSession();
        if (s) out.push(s);
        c.takeSessionEvents();
        await c.close();
      }
      clients.clear();
      return out;
    }
    case 'import-sessions': {
      let adopted = 0;
      for (const s of task.sessions) {
        if (!s.target) continue;
        const c = client(s.target);
        // A client that already has its own session keeps it (adopting would orphan one on the BMC).
        if (c.hasSession) continue;
        c.adoptSession(s);
        adopted++;
      }
      return { adopted };
    }
    case 'stats': {
      const total: ClientStats & { clients: number; sessions: number; breakers_open: number } = {
        requests: 0, errors: 0, logins: 0, logins_failed: 0, relogins: 0, not_modified: 0, retries: 0, breaker_rejections: 0, clients: clients.size, sessions: 0, breakers_open: 0,
      };
      for (const c of clients.values()) {
        for (const k of Object.keys(c.stats) as Array<keyof ClientStats>) total[k] += c.stats[k];
        if (c.hasSession) total.sessions++;
        if (c.breakerOpen) total.breakers_open++;
      }
      // This thread's V8 heap (the pool sums shards): where a BMC's memory goes, beside its socket.
      const heap = v8.getHeapStatistics();
      // Operation retries by error code (retry-policy.ts), flat so the pool can sum shards.
      return { ...total, ...batchCounts, ...socketBudget.stats(), heap_used_bytes: heap.used_heap_size, heap_total_bytes: heap.total_heap_size, heap_external_bytes: heap.external_memory, ...Object.fromEntries(Object.entries(gcMs).map(([k, ms]) => [`gc_ms_${k}`, ms])), ...Object.fromEntries(Object.entries(operationRetries).map(([code, n]) => [`op_retry_${code}`, n])) };
    }
    case 'release': {
      dropTargets(task.keys);
      // Another conductor owns these BMCs now: drop the clients without logging out (the new
      // owner adopts the persisted session; one session per BMC, no new login).
      let released = 0;
      for (const k of task.keys) {
        const c = clients.get(k);
        if (!c) continue;
        clients.delete(k);
        if (c.releaseSession()) released++;
        c.takeSessionEvents();
        await c.close();
      }
      return { released };
    }
    case 'forget': {
      dropTargets(task.keys);
      // The BMC's last node was deleted (or moved to another BMC): log out, drop its sockets and
      // the credentials this thread kept for it.
      const events: SessionEvent[] = [];
      for (const k of task.keys) {
        const c = clients.get(k);
        if (!c) continue;
        clients.delete(k);
        await c.logout();
        events.push(...c.takeSessionEvents());
        await c.close();
      }
      return { sessionEvents: events };
    }
    case 'shutdown': {
      const events: SessionEvent[] = [];
      await Promise.all(
        [...clients.values()].map(async (c) => {
          await c.logout();
          events.push(...c.takeSessionEvents());
          await c.close();
        }),
      );
      clients.clear();
      return { sessionEvents: events };
    }
  }
}
