/**
 * BMC sessions across restarts: starts the BMC worker pool, persists every session it opens or
 * closes (sealed, in bmc_sessions), adopts the sessions our previous run left on BMCs we still
 * manage (no new login), logs out of those on BMCs no node uses any more, and releases a BMC's
 * client when its last node is deleted or re-addressed. One session per BMC stays true across a
 * conductor restart.
 */
import type { Logger } from 'pino';
import type { Node, Store } from './db/store.js';
import type { ConductorConfig } from './config.js';
import { BmcPool } from './redfish/pool.js';
import { RedfishClient, type SessionEvent } from './redfish/client.js';
import { parseRedfishDriverInfo, type RedfishTarget } from './redfish/driver-info.js';
import { openFileLimit } from '../shared/fd-limits.js';
import { ConfigError } from '../shared/errors.js';

/** The BMC session key of a redfish node, or undefined (other driver, invalid driver_info). */
export function bmcKeyOf(node: Node): string | undefined {
  if (node.driver !== 'redfish') return undefined;
  try {
    return parseRedfishDriverInfo(node.driver_info, node.uuid).key;
  } catch {
    return undefined;
  }
}

export class BmcSessions {
  private p: BmcPool | undefined;

  constructor(
    private readonly store: Store,
    private readonly host: string,
    private readonly cfg: ConductorConfig['redfish'],
    private readonly log: Logger,
  ) {}

  /** The pool once started. */
  get pool(): BmcPool | undefined {
    return this.p;
  }

  /** The started pool (drivers call this lazily; before start it is a programming error). */
  require(): BmcPool {
    if (!this.p) throw new Error('BMC pool not started');
    return this.p;
  }

  /**
   * Starts the BMC worker threads and deals with the persisted sessions: those on BMCs this
   * conductor owns are adopted (whoever's name is on the row: our previous run, a peer, a dead
   * conductor; no login), and our previous run's sessions on BMCs no node uses are logged out.
   * Sessions on BMCs another conductor owns are left for it. `take` records adopted sessions as ours.
   */
  /** Each worker thread's share of the BMC socket budget (config.ts redfish.max_bmc_sockets). */
  private socketBudgetPerThread(): number {
    const r = this.cfg;
    const limit = openFileLimit();
    const reserve = limit ? r.fd_reserve || Math.max(64, Math.floor(limit / 4)) : 0;
    let total = r.max_bmc_sockets;
    if (!total && limit) total = limit - reserve;
    if (!total) return 0;
    // Set by hand past what the limit leaves: allowed (the operator may raise the limit before the
    // fleet grows), but said at start, because then BMC sockets can take the API's descriptors.
    if (limit && total > limit - reserve)
      this.log.warn({ max_bmc_sockets: total, fd_limit: limit, fd_reserve: reserve }, 'redfish.max_bmc_sockets is above what the open-files limit leaves after redfish.fd_reserve: BMC sockets can take the descriptors the API, agents and database need');
    const perThread = Math.floor(total / r.pool_size);
    if (perThread < 8) throw new ConfigError(`invalid configuration: only ${total} descriptors are left for BMC sockets (open-files limit ${limit ?? 'unknown'}, redfish.fd_reserve ${r.fd_reserve || 'auto'}) — raise the limit (systemd LimitNOFILE) or lower redfish.pool_size`, 'redfish.max_bmc_sockets');
    this.log.info({ fd_limit: limit, bmc_sockets: perThread * r.pool_size, per_thread: perThread }, 'BMC socket budget');
    return perThread;
  }

  async start(owns: (n: Node) => boolean, take: (keys: string[]) => Promise<void>): Promise<void> {
    const r = this.cfg;
    this.p = new BmcPool(
      r.pool_size,
      { timeoutMs: r.timeout_ms, connectTimeoutMs: r.connect_timeout_ms, maxInflight: r.max_inflight_per_bmc, breakerThreshold: r.breaker_threshold, breakerOpenMs: r.breaker_open_ms, operationDeadlineMs: r.operation_deadline_s * 1000, keepAliveMs: r.keep_alive_s * 1000, socketBudget: this.socketBudgetPerThread(), sweepWindow: r.sweep_window },
      (events) => this.persist(events),
      (shard) => this.adoptForShard(shard, owns, take),
    );
    await this.p.start();
    const { mine, all } = await this.split(owns);
    const orphans = (await this.store.listBmcSessions(this.host)).filter((s) => !all.has(s.bmc_key));
    // Sessions on BMCs we no longer manage: log them out so nothing is left on the BMC.
    await Promise.all(
      orphans.map(async (s) => {
        const [origin, username] = s.bmc_key.split('|');
        const c = new RedfishClient({ key: s.bmc_key, origin: origin!, rootPrefix: '/redfish/v1', username: username ?? '', password: '', systemId: null, verify: false, serverName: null, authType: 'session' }, { timeoutMs: 5000 });
        c.adoptSession({ key: s.bmc_key, uri: s.session_uri, token: s.token, createdAt: 0 });
        await c.logout();
        await c.close();
        await this.store.deleteBmcSession(s.bmc_key);
      }),
    );
    const adopted = await this.adoptOwned(mine, take);
    if (adopted || orphans.length) this.log.info({ adopted, orphans_logged_out: orphans.length }, 'BMC sessions persisted before this start');
  }

  /** Every redfish node's BMC target, by session key. */
  async targets(): Promise<Map<string, RedfishTarget>> {
    return (await this.split(() => true)).mine;
  }

  /** Redfish targets by session key: those this conductor owns, and every one in use. */
  private async split(owns: (n: Node) => boolean): Promise<{ mine: Map<string, RedfishTarget>; all: Set<string> }> {
    const mine = new Map<string, RedfishTarget>();
    const all = new Set<string>();
    for (const n of await this.store.listNodes({ driver: 'redfish' })) {
      try {
        const t = parseRedfishDriverInfo(n.driver_info, n.uuid);
        all.add(t.key);
        if (owns(n)) mine.set(t.key, t);
      } catch {
        /* invalid driver_info: no session */
      }
    }
    return { mine, all };
  }

  /** Before ownership moves: adopts the persisted sessions of BMCs this conductor is about to own. */
  async adopt(owns: (n: Node) => boolean, take: (keys: string[]) => Promise<void>): Promise<number> {
    if (!this.p) return 0;
    const adopted = await this.adoptOwned((await this.split(owns)).mine, take);
    if (adopted) this.log.info({ adopted }, 'adopted the BMC sessions of nodes this conductor now owns (no login)');
    return adopted;
  }

  /**
   * Every persisted session on a BMC in `mine`, whoever's name is on the row — including our own:
   * a session we released earlier (its BMC moved away and back) is adopted again. The worker keeps
   * a client's own live session if it has one. Rows in another conductor's name become ours.
   */
  private async adoptOwned(mine: Map<string, RedfishTarget>, take: (keys: string[]) => Promise<void>): Promise<number> {
    const keys = [...mine.keys()];
    const rows = [];
    for (let i = 0; i < keys.length; i += 500) rows.push(...(await this.store.listBmcSessionsFor(keys.slice(i, i + 500))));
    if (rows.length === 0) return 0;
    const adopted = await this.p!.importSessions(rows.map((s) => ({ key: s.bmc_key, uri: s.session_uri, token: s.token, createdAt: Date.parse(s.created_at), target: mine.get(s.bmc_key)! })));
    const foreign = rows.filter((r) => r.conductor !== this.host);
    if (foreign.length) await take(foreign.map((r) => r.bmc_key));
    return adopted;
  }

  /** A replacement BMC thread gets the persisted sessions of its shard's BMCs (no login). */
  private async adoptForShard(shard: number, owns: (n: Node) => boolean, take: (keys: string[]) => Promise<void>): Promise<void> {
    const p = this.p!;
    try {
      const mine = new Map([...(await this.split(owns)).mine].filter(([key]) => p.shardOf(key) === shard));
      const adopted = await this.adoptOwned(mine, take);
      this.log.warn({ shard, adopted }, 'a BMC thread died and was replaced; it adopted the sessions of its BMCs');
    } catch (err) {
      // The pool lets the shard's operations go on regardless: its BMCs then log in afresh.
      this.log.warn({ err, shard }, 'a BMC thread died and was replaced; adopting its sessions failed, its BMCs will log in again');
    }
  }

  /** After ownership moved: BMCs this conductor no longer owns are released without logout. */
  async releaseLost(owns: (n: Node) => boolean): Promise<number> {
    if (!this.p) return 0;
    const { mine, all } = await this.split(owns);
    const released = await this.p.release([...all].filter((k) => !mine.has(k)));
    if (released) this.log.info({ released }, 'released the BMC sessions of nodes another conductor owns now (no logout)');
    return released;
  }

  private async persist(events: SessionEvent[]): Promise<void> {
    for (const e of events) {
      try {
        if (e.op === 'created') {
          await this.store.putBmcSession({ bmc_key: e.session.key, session_uri: e.session.uri, token: e.session.token, conductor: this.host, created_at: new Date(e.session.createdAt).toISOString() });
        } else {
          await this.store.deleteBmcSession(e.key, e.uri);
        }
      } catch (err) {
        this.log.warn({ err }, 'could not persist a BMC session change');
      }
    }
  }

  /** Logs out of a BMC and drops its client (and the credentials the worker thread held) once no node uses it. */
  async forgetIfUnused(key: string): Promise<void> {
    if (!this.p) return;
    if ((await this.targets()).has(key)) return;
    await this.p.forget([key]).catch((err) => this.log.warn({ err }, 'could not release the BMC client of a deleted node'));
  }

  /**
   * Stops the pool. With `handOver` (live peers will own these BMCs) the sessions are released,
   * not logged out: the peers adopt them from the table without a login. Otherwise every session
   * is logged out (nothing left on the BMCs).
   */
  async close(handOver = false): Promise<void> {
    if (handOver && this.p) {
      const { all } = await this.split(() => true);
      const released = await this.p.release([...all]).catch(() => 0);
      this.log.info({ released }, 'BMC sessions handed over to the conductors that own them now');
    }
    await this.p?.close();
  }
}
