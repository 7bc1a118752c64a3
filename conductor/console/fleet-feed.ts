/**
 * The console's live view of the fleet: one compact row per node, kept current from the same
 * diagnostics channels that history and metrics follow (node rows as they are written, power
 * sync's reachability verdicts, agent connections and progress) — never by re-listing the fleet.
 *
 * Changes are coalesced: events only mark a node dirty; every tick (250 ms) the dirty set becomes
 * one numbered batch in a short log, and each connected browser (`FeedClient`) is handed the ids.
 * A rack powering on is therefore one batch per tick holding each node once, whatever the number
 * of writes behind it. The log is what lets a reconnecting browser resume from its last event id;
 * one too old to resume from is told to reload the snapshot.
 */
import type diagnostics_channel from 'node:diagnostics_channel';
import type { Node } from '../db/store-base.js';
import { channels, type AgentProgressMessage, type BmcReachabilityMessage, type NodeRowMessage } from '../events.js';
import { POWER_FAILURE_FAULT } from '../power-sync.js';
import { FeedClient, type FeedClientOptions, type SseSink } from './feed-client.js';
import { FleetPanels, type PanelSources } from './fleet-panels.js';
import { ROW_FIELDS, type FeedRow } from '../../shared/console-feed.js';

export { ROW_FIELDS, type FeedRow };

export interface FeedSources extends PanelSources {
  listNodes(): Promise<Node[]>;
  agents: PanelSources['agents'] & {
    isConnected(nodeId: number): boolean;
    on(ev: 'connected', fn: (node: Node) => void): unknown;
    on(ev: 'disconnected', fn: (nodeId: number) => void): unknown;
  };
  /** The conductor owning a node on the hash ring. */
  ownerOf(n: Node): string;
  /** Calls `fn` whenever the ring changed (owners move without a node write). */
  onRingChange(fn: () => void): void;
}

export interface FleetFeedOptions extends FeedClientOptions {
  tickMs: number;
  /** Batches kept for resuming (at one per tick: this many ticks back). */
  logBatches: number;
}

export const FEED_DEFAULTS: FleetFeedOptions = { tickMs: 250, logBatches: 2400, bytesPerSecond: 256 * 1024, maxBufferedBytes: 1024 * 1024 };

interface Batch {
  seq: number;
  ids: number[];
}

type Sub = [diagnostics_channel.Channel, (m: unknown) => void];

export class FleetFeed {
  private readonly rows = new Map<number, FeedRow>();
  private readonly idByUuid = new Map<string, number>();
  private readonly bmcByUuid = new Map<string, string>();
  /** Node id → when it first changed since the last tick (the lag a browser sees is measured from it). */
  private readonly dirty = new Map<number, number>();
  private readonly progress = new Map<number, AgentProgressMessage>();
  private readonly progressDirty = new Set<number>();
  /** Event ids are `<epoch>-<seq>`: a browser resuming against a restarted conductor (seq from 0 again) is told to reload. */
  readonly epoch = Date.now().toString(36);
  private readonly log: Batch[] = [];
  private readonly clients = new Set<FeedClient>();
  private readonly subs: Sub[] = [];
  private seq = 0;
  private timer: NodeJS.Timeout | undefined;
  private loaded: Promise<void> | undefined;
  /** Events that arrive while the first listing runs are applied on top of it (they are newer). */
  private pending: NodeRowMessage[] | null = [];
  readonly panels: FleetPanels;

  constructor(
    private readonly src: FeedSources,
    private readonly opts: FleetFeedOptions = FEED_DEFAULTS,
  ) {
    this.panels = new FleetPanels(src, () => this.rows.values());
    this.panels.writeRate = () => {
      const now = Date.now();
      let sum = 0;
      for (const p of this.progress.values()) if (now - Date.parse(String(p.progress.updated_at)) < 5_000) sum += Number(p.progress.rate_bytes_per_s) || 0;
      return sum;
    };
  }

  /** Subscribes, then reads the fleet once. Idempotent. */
  start(): Promise<void> {
    this.loaded ??= (async () => {
      this.on(channels.nodeRow, (m) => this.onRow(m as NodeRowMessage));
      this.on(channels.bmcReachability, (m) => this.onReachability(m as BmcReachabilityMessage));
      this.on(channels.agentProgress, (m) => this.onProgress(m as AgentProgressMessage));
      this.src.agents.on('connected', (n: Node) => this.setField(n.id, 8, 1));
      this.src.agents.on('disconnected', (id: number) => this.setField(id, 8, 0));
      this.panels.start();
      this.src.onRingChange(() => void this.reown());
      for (const n of await this.src.listNodes()) this.put(n);
      const queued = this.pending ?? [];
      this.pending = null;
      for (const m of queued) this.onRow(m);
      this.dirty.clear();
      this.timer = setInterval(() => this.tick(), this.opts.tickMs);
      this.timer.unref();
    })();
    return this.loaded;
  }

  close(): void {
    clearInterval(this.timer);
    for (const [ch, fn] of this.subs) ch.unsubscribe(fn);
    this.subs.length = 0;
    this.panels.stop();
    for (const c of this.clients) c.end();
    this.clients.clear();
  }

  /** The whole fleet as of `seq`; a stream opened with that id continues exactly from here. */
  async snapshot(): Promise<{ id: string; fields: typeof ROW_FIELDS; rows: FeedRow[]; panels: ReturnType<FleetPanels['history']> }> {
    await this.start();
    this.tick();
    return { id: `${this.epoch}-${this.seq}`, fields: ROW_FIELDS, rows: [...this.rows.values()], panels: this.panels.history() };
  }

  row(id: number): FeedRow | undefined {
    return this.rows.get(id);
  }

  /** The latest progress of the command a node's agent is running, if any. */
  progressOf(id: number): AgentProgressMessage | undefined {
    return this.progress.get(id);
  }

  /**
   * Attaches a browser. `lastEventId`: the last event id it saw (after a snapshot or a reconnect);
   * one this feed cannot continue from (another epoch, older than the log) makes the client reload.
   */
  async attach(sink: SseSink, lastEventId: string | null): Promise<FeedClient> {
    await this.start();
    this.tick();
    const client = new FeedClient(sink, this.opts, this.epoch, (ids) => ids.map((id) => this.rows.get(id) ?? id));
    this.clients.add(client);
    sink.onClose(() => this.clients.delete(client));
    const m = lastEventId === null ? null : /^([0-9a-z]+)-(\d+)$/.exec(lastEventId);
    const since = m && m[1] === this.epoch ? Number(m[2]) : null;
    const first = this.log.length > 0 ? this.log[0]!.seq - 1 : this.seq;
    if (since === null || since > this.seq || since < first) client.reset();
    else client.resumeAt(this.seq, this.log.filter((b) => b.seq > since).flatMap((b) => b.ids));
    client.sendPanel(await this.panels.current());
    return client;
  }

  get clientCount(): number {
    return this.clients.size;
  }

  /** Folds the dirty set into one batch and lets every client send what its budget allows. */
  tick(): void {
    const now = Date.now();
    if (this.dirty.size > 0) {
      const batch: Batch = { seq: ++this.seq, ids: [...this.dirty.keys()] };
      let oldest = now;
      for (const t of this.dirty.values()) if (t < oldest) oldest = t;
      this.dirty.clear();
      this.log.push(batch);
      if (this.log.length > this.opts.logBatches) this.log.shift();
      for (const c of this.clients) c.add(batch.seq, batch.ids, oldest);
    }
    const progress: AgentProgressMessage[] = [];
    for (const id of this.progressDirty) {
      const p = this.progress.get(id);
      if (p) progress.push(p);
    }
    this.progressDirty.clear();
    for (const c of this.clients) c.flush(now, progress);
    if (this.panels.due(now) && this.clients.size > 0) {
      void this.panels.current().then((p) => {
        for (const c of this.clients) c.sendPanel(p);
      });
    }
  }

  // ---------------------------------------------------------------- events

  private on(ch: Sub[0], fn: Sub[1]): void {
    ch.subscribe(fn);
    this.subs.push([ch, fn]);
  }

  private onRow(m: NodeRowMessage): void {
    if (this.pending) {
      this.pending.push(m);
      return;
    }
    if ('deleted' in m) {
      const row = this.rows.get(m.deleted);
      if (!row) return;
      this.rows.delete(m.deleted);
      this.idByUuid.delete(row[1]);
      this.progress.delete(m.deleted);
      this.mark(m.deleted);
      return;
    }
    const before = this.rows.get(m.node.id);
    const after = this.toRow(m.node);
    if (before && before.every((v, i) => v === after[i])) return;
    this.put(m.node, after);
    this.mark(m.node.id);
  }

  /** The ring changed: every node's owner is read again (one listing per change, changes are rare). */
  private async reown(): Promise<void> {
    if (this.pending) return;
    for (const n of await this.src.listNodes().catch(() => [])) this.setField(n.id, 10, this.src.ownerOf(n));
  }

  private onReachability(m: BmcReachabilityMessage): void {
    const verdict = m.ok ? 'ok' : (m.code ?? 'RF_INTERNAL');
    this.bmcByUuid.set(m.node, verdict);
    const id = this.idByUuid.get(m.node);
    if (id !== undefined) this.setField(id, 9, this.rows.get(id)![9] === 'unreachable' && m.ok === false ? 'unreachable' : verdict);
  }

  private onProgress(m: AgentProgressMessage): void {
    this.progress.set(m.nodeId, m);
    this.progressDirty.add(m.nodeId);
  }

  private put(n: Node, row = this.toRow(n)): void {
    this.rows.set(n.id, row);
    this.idByUuid.set(n.uuid, n.id);
    // Progress belongs to a running command: a node that left the flow states has none.
    if (n.provision_state === 'active' || n.provision_state === 'available' || n.provision_state === 'manageable') this.progress.delete(n.id);
  }

  private toRow(n: Node): FeedRow {
    const bmc = n.maintenance && n.fault === POWER_FAILURE_FAULT ? 'unreachable' : (this.bmcByUuid.get(n.uuid) ?? (n.power_state ? 'ok' : 'unknown'));
    return [n.id, n.uuid, n.name, n.conductor_group, n.provision_state, n.power_state, n.maintenance ? 1 : 0, n.health, this.src.agents.isConnected(n.id) ? 1 : 0, bmc, this.src.ownerOf(n)];
  }

  /** One field of a node's row changed without a row write (agent stream, reachability, owner). */
  private setField(id: number, index: 8 | 9 | 10, value: FeedRow[8] | FeedRow[9] | FeedRow[10]): void {
    if (this.pending) return; // the listing that follows reads the same truth
    const row = this.rows.get(id);
    if (!row || row[index] === value) return;
    const next = [...row] as FeedRow;
    (next as unknown[])[index] = value;
    this.rows.set(id, next);
    this.mark(id);
  }

  private mark(id: number): void {
    if (!this.dirty.has(id)) this.dirty.set(id, Date.now());
  }
}
