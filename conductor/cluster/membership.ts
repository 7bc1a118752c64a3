/**
 * Conductor membership and node ownership. Every conductor registers in the `conductors` table
 * and heartbeats every `heartbeat_interval_s`; one whose heartbeat is older than
 * `heartbeat_timeout_s` (on the database's clock) is offline. The live, online conductors of a
 * conductor group form that group's hash ring, and a node belongs to exactly one of them. Each
 * tick re-reads the table; a changed member set rebuilds the rings and emits `changed` with who
 * joined and who left, so the conductor can take over (takeover.ts) and move BMC sessions.
 *
 * Ownership is keyed by the node's BMC (its Redfish address and user) rather than its uuid, so
 * every system behind one BMC (a sushy-tools style single address) has one owner: one session.
 *
 * Fencing: a conductor that cannot heartbeat for the timeout stops owning anything (its peers
 * have taken its nodes by then) until a heartbeat succeeds again.
 */
import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import type { ClusterStore, ConductorRecord } from '../db/cluster-store.js';
import { ConfigError } from '../../shared/errors.js';
import { HashRing } from './hash-ring.js';

/** The conductor-to-conductor protocol (forwarding, session handover, takeover rules). */
export const CLUSTER_PROTOCOL = 1;

export interface MembershipOptions {
  host: string;
  group: string;
  version: string;
  heartbeatIntervalS: number;
  heartbeatTimeoutS: number;
  /** SQLite: one conductor only (checked through the table at join). */
  single: boolean;
}

export interface MembershipChange {
  joined: string[];
  left: string[];
}

/** What ownership needs to know of a node. */
export interface Ownable {
  uuid: string;
  conductor_group: string;
  driver: string;
  driver_info: Record<string, unknown>;
}

/** All nodes of one BMC hash to the same place; other nodes by uuid. */
export function ownershipKey(n: Ownable): string {
  if (n.driver !== 'redfish') return n.uuid;
  // A frozen driver_info (the sweep listing's, reused until the stored text changes) maps to its
  // key once: sweeps asked this of every node every interval.
  const frozen = Object.isFrozen(n.driver_info);
  let k = frozen ? bmcKeys.get(n.driver_info) : undefined;
  if (k === undefined) {
    const origin = /^[a-z][a-z0-9+.-]*:\/\/[^/?#]+/i.exec(String(n.driver_info.redfish_address ?? ''))?.[0]?.toLowerCase();
    k = origin ? `${origin}|${String(n.driver_info.redfish_username ?? '')}` : '';
    if (frozen) bmcKeys.set(n.driver_info, k);
  }
  return k || n.uuid;
}

const bmcKeys = new WeakMap<object, string>();

export type MemberState = 'online' | 'draining' | 'offline';

export class Membership extends EventEmitter<{ changed: [MembershipChange] }> {
  readonly instance = randomUUID();
  private rings = new Map<string, HashRing>();
  /** Bumped each time the rings change: what was derived from ownership before is stale after. */
  private ringGeneration = 0;
  /** Nodes of a group no live conductor serves go to the ring of all live conductors (never orphaned). */
  private fallback = new HashRing([]);
  private records: ConductorRecord[] = [];
  private alive = new Set<string>();
  private state: MemberState = 'online';
  private lastBeat = 0;
  private timer: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  /** Runs with the next ring's ownership before it replaces the current one. */
  beforeSwap: ((change: MembershipChange, nextOwns: (n: Ownable) => boolean) => Promise<void>) | undefined;

  constructor(
    private readonly store: ClusterStore,
    private readonly o: MembershipOptions,
    private readonly log: Logger,
  ) {
    super();
  }

  get host(): string {
    return this.o.host;
  }

  /** Registers this conductor; refuses a second conductor on SQLite and a ring speaking another protocol. */
  async join(): Promise<void> {
    // A row under our own name is our previous life (crashed) unless its process still runs.
    const others = (await this.store.list()).filter((r) => this.isAlive(r) && (r.hostname !== this.o.host || this.processAlive(r)));
    if (this.o.single && others.length > 0) {
      const other = others[0]!;
      throw new ConfigError(
        `database.url: another conductor (${other.hostname}, pid ${other.pid}, started ${other.started_at}) is running on this SQLite database; SQLite supports one conductor — run several on PostgreSQL`,
        'database.url',
      );
    }
    const foreign = others.find((r) => r.protocol !== CLUSTER_PROTOCOL);
    if (foreign) {
      throw new ConfigError(
        `conductor: cannot join the ring: conductor ${foreign.hostname} (version ${foreign.version}) speaks cluster protocol ${foreign.protocol}, this one (version ${this.o.version}) speaks ${CLUSTER_PROTOCOL}; upgrade or stop one side`,
        'conductor',
      );
    }
    await this.store.register({
      hostname: this.o.host,
      conductor_group: this.o.group,
      api_url: null,
      agent_address: null,
      version: this.o.version,
      protocol: CLUSTER_PROTOCOL,
      instance: this.instance,
      pid: process.pid,
      started_at: new Date().toISOString(),
      state: 'online',
    });
    this.lastBeat = Date.now();
    await this.tick();
  }

  start(): void {
    this.timer = setInterval(() => void this.tick(), this.o.heartbeatIntervalS * 1000);
    this.timer.unref();
  }

  advertise(addresses: { api_url?: string; agent_address?: string }): Promise<void> {
    return this.store.advertise(this.o.host, this.instance, addresses);
  }

  /** Leave the ring (drain): peers take this conductor's nodes; it finishes what it holds. */
  async drain(): Promise<void> {
    this.state = 'draining';
    await this.tick();
  }

  /** Graceful stop: marked offline at once, so peers take over without waiting for the timeout. */
  async leave(): Promise<void> {
    clearInterval(this.timer);
    clearTimeout(this.expiryTimer);
    this.state = 'offline';
    await this.ticking;
    await this.store.setState(this.o.host, 'offline', this.instance).catch((err) => this.log.warn({ err }, 'could not mark this conductor offline'));
  }

  /** One heartbeat + membership read; emits `changed` when the live member set moved. */
  tick(): Promise<void> {
    this.ticking ??= this.doTick().finally(() => (this.ticking = undefined));
    return this.ticking;
  }

  private async doTick(): Promise<void> {
    try {
      if (this.state !== 'offline') {
        if (!(await this.store.heartbeat(this.o.host, this.instance, this.state))) {
          this.log.error({ host: this.o.host }, 'another process registered this conductor name; this one owns no nodes until it is restarted');
          this.lastBeat = 0;
        } else this.lastBeat = Date.now();
      }
      this.records = await this.store.list();
    } catch (err) {
      this.log.warn({ err }, 'conductor heartbeat failed; retrying');
    }
    this.watchExpiry();
    const fenced = Date.now() - this.lastBeat > this.o.heartbeatTimeoutS * 1000;
    const alive = new Set(this.records.filter((r) => this.isAlive(r) && r.state === 'online' && (r.hostname !== this.o.host || (!fenced && this.state === 'online'))).map((r) => r.hostname));
    const joined = [...alive].filter((h) => !this.alive.has(h));
    const left = [...this.alive].filter((h) => !alive.has(h));
    if (joined.length === 0 && left.length === 0) return;
    const groups = new Map<string, string[]>();
    for (const r of this.records) {
      if (!alive.has(r.hostname)) continue;
      const g = groups.get(r.conductor_group) ?? [];
      g.push(r.hostname);
      groups.set(r.conductor_group, g);
    }
    const rings = new Map([...groups].map(([g, members]) => [g, new HashRing(members)]));
    const fallback = new HashRing(alive);
    const nextOwns = (n: Ownable) => (rings.get(n.conductor_group) ?? fallback).ownerOf(ownershipKey(n)) === this.o.host;
    // Before the new ring takes effect: adopt what is about to become ours (no sweep can log in first).
    if (this.beforeSwap) await this.beforeSwap({ joined, left }, nextOwns).catch((err) => this.log.warn({ err }, 'preparing for a ring change failed'));
    this.alive = alive;
    this.rings = rings;
    this.fallback = fallback;
    this.ringGeneration++;
    this.log.info({ members: [...alive], joined, left }, 'conductor ring changed');
    this.emit('changed', { joined, left });
  }

  /**
   * A member whose heartbeat runs out before our next tick gets a tick of its own right then:
   * a dead conductor is noticed at timeout + ~50 ms, not up to one interval later.
   */
  private watchExpiry(): void {
    const timeoutMs = this.o.heartbeatTimeoutS * 1000;
    let soonest = Infinity;
    for (const r of this.records) if (r.hostname !== this.o.host && this.isAlive(r)) soonest = Math.min(soonest, timeoutMs - r.age_ms);
    clearTimeout(this.expiryTimer);
    if (soonest < this.o.heartbeatIntervalS * 1000 && this.state !== 'offline') {
      this.expiryTimer = setTimeout(() => void this.tick(), Math.max(20, soonest + 50));
      this.expiryTimer.unref();
    }
  }

  /** Alive: not offline, and its heartbeat (on the database's clock) younger than the timeout. */
  isAlive(r: ConductorRecord): boolean {
    return r.state !== 'offline' && r.age_ms < this.o.heartbeatTimeoutS * 1000;
  }

  /** Is the process a row of our own name names still running as a conductor (same machine)? */
  private processAlive(r: ConductorRecord): boolean {
    if (r.pid === process.pid) return false;
    try {
      return readFileSync(`/proc/${r.pid}/cmdline`, 'utf8').includes('conductor');
    } catch {
      return false;
    }
  }

  /** The conductor owning this node now, or undefined when its group has no live conductor. */
  ownerOf(n: Ownable): string | undefined {
    const ring = this.rings.get(n.conductor_group) ?? this.fallback;
    // One member owns everything: no key to derive (every sweep asks this of every node).
    return ring.members.length === 1 ? ring.members[0] : ring.ownerOf(ownershipKey(n));
  }

  /** Changes whenever ownerOf() may answer differently for some node (a sweep plan keys on it). */
  get generation(): number {
    return this.ringGeneration;
  }

  owns(n: Ownable): boolean {
    return this.ownerOf(n) === this.o.host;
  }

  /** Live members with their records (GET /v1/conductors, forwarding). */
  members(): ConductorRecord[] {
    return this.records;
  }

  /** Live online conductors other than this one. */
  peerCount(): number {
    return [...this.alive].filter((h) => h !== this.o.host).length;
  }

  isMember(host: string): boolean {
    return this.alive.has(host);
  }

  record(host: string): ConductorRecord | undefined {
    return this.records.find((r) => r.hostname === host);
  }
}
