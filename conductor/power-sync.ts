/**
 * Power-state sync and health monitoring (Ironic's _sync_power_states + node_cache_health): every
 * interval, one GET per node through the BMC pool (all shards in parallel), then compare with the
 * database. Out-of-band changes are recorded or pushed back (policy), health changes land in node
 * history, repeated failures put the node into maintenance ("power failure") and a later success
 * takes it out again. Nodes with an action in progress are skipped; a dead BMC costs at most one
 * deadline per sweep and never delays the others.
 */
import type { Logger } from 'pino';
import type { Node, Store } from './db/store.js';
import { SYNC_EXCLUDED_STATES, isProvisionState } from './states.js';
import type { DriverRegistry } from './drivers/registry.js';
import type { HardwareType, PowerSweepItem, PowerSweepKnown } from './drivers/base.js';
import type { ConductorConfig } from './config.js';
import type { Severity } from './node-ops.js';
import { channels, publish, type BmcReachabilityMessage, type SweepReport } from './events.js';

export type { SweepReport };
import { errorMessage } from '../shared/errors.js';
import { hasInternal } from './internal-info.js';

export interface PowerSyncDeps {
  store: Store;
  drivers: DriverRegistry;
  cfg: ConductorConfig['power_sync'];
  history(node: Pick<Node, 'id'>, event: string, eventType: string, severity: Severity): Promise<void>;
  /** Forces a node back to its recorded power state (force_power_state), as an API action would. */
  setPowerState(node: Node, target: 'power on' | 'power off'): Promise<void>;
  /** Is this node this conductor's to sweep (its hash-ring owner)? Every node when absent. */
  owns?(node: Node): boolean;
  /** Changes whenever owns() may answer differently (the hash ring changed); absent: never. */
  ownershipGeneration?(): number;
  log: Logger;
}

/**
 * What a sweep derives from the listing alone: the eligible nodes by hardware type (frozen arrays,
 * so drivers may cache by identity), by uuid, and how many were skipped. It holds while the listing
 * is the same frozen list and the ring did not change — a steady fleet's sweeps reuse it instead of
 * asking ten thousand nodes the same questions again. Failure counts are not in it: `known` reads
 * them live, and eligibility depends only on the (frozen) rows.
 */
interface SweepPlan {
  list: readonly Node[];
  ring: number;
  groups: Array<[HardwareType, readonly Node[]]>;
  byUuid: Map<string, Node>;
  skipped: number;
}

export const POWER_FAILURE_FAULT = 'power failure';


export class PowerSync {
  /** Consecutive failures per node uuid (Ironic's power_state_sync_count). */
  readonly failures = new Map<string, number>();
  private plan: SweepPlan | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<SweepReport> | undefined;
  private stopped = false;
  lastReport: SweepReport | undefined;
  readonly reports: SweepReport[] = [];

  private readonly log: Logger;

  constructor(private readonly d: PowerSyncDeps) {
    this.log = d.log;
  }

  private get cfg() {
    return this.d.cfg;
  }

  private syncedHardware(n: Node): HardwareType | undefined {
    const hw = this.d.drivers.has(n.driver) ? this.d.drivers.get(n.driver) : undefined;
    return hw?.power.sweep ? hw : undefined;
  }

  start(): void {
    if (this.cfg.interval_s <= 0) return;
    const loop = async () => {
      if (this.stopped) return;
      const t0 = Date.now();
      try {
        await this.sweep();
      } catch (err) {
        this.log.error({ err }, 'power sync sweep failed');
      }
      if (this.stopped) return;
      const spent = Date.now() - t0;
      if (spent > this.cfg.interval_s * 3000) this.log.warn({ spent_ms: spent, interval_s: this.cfg.interval_s }, 'power sync took more than 3x its interval');
      this.timer = setTimeout(() => void loop(), Math.max(0, this.cfg.interval_s * 1000 - spent));
      this.timer.unref();
    };
    this.loop = loop;
    this.timer = setTimeout(() => void loop(), 1000);
    this.timer.unref();
  }

  private loop: (() => Promise<void>) | undefined;

  /** A sweep as soon as possible (after one in progress): newly owned nodes are swept at once. */
  sweepSoon(): void {
    const loop = this.loop;
    if (!loop || this.stopped) return;
    void (this.running ?? Promise.resolve()).catch(() => undefined).then(() => {
      if (this.stopped) return;
      if (this.timer) clearTimeout(this.timer);
      this.timer = setTimeout(() => void loop(), 0);
      this.timer.unref();
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running?.catch(() => {});
  }

  /**
   * What a node's reading is compared with in the BMC thread; undefined when the reading must come
   * back whatever it is: no power state recorded yet, failures being counted (a success clears
   * them), or maintenance set by power sync (a success lifts it).
   */
  private readonly known = (n: Node): PowerSweepKnown | undefined => {
    if (n.power_state !== 'power on' && n.power_state !== 'power off') return undefined;
    if (this.failures.has(n.uuid) || (n.maintenance && n.fault === POWER_FAILURE_FAULT)) return undefined;
    // Per node object: the sweep listing hands back the same frozen node while its row is unchanged.
    let k = this.knownOf.get(n);
    if (!k) this.knownOf.set(n, (k = this.cfg.health_monitoring ? { power: n.power_state, health: n.health } : { power: n.power_state }));
    return k;
  };

  private readonly knownOf = new WeakMap<Node, PowerSweepKnown>();

  /** Which nodes a sweep looks at, and why the others are skipped. */
  private eligible(n: Node): boolean {
    if (!this.syncedHardware(n)) return false;
    if (n.reservation || n.target_power_state) return false;
    if (isProvisionState(n.provision_state) && SYNC_EXCLUDED_STATES.has(n.provision_state)) return false;
    if (n.maintenance && n.fault !== POWER_FAILURE_FAULT) return false;
    if (hasInternal(n, 'firmware_update')) return false;
    return true;
  }

  /** The last plan when nothing it depends on moved, else a new one from this listing. */
  private planFor(list: readonly Node[]): SweepPlan {
    const ring = this.d.ownershipGeneration?.() ?? 0;
    const p = this.plan;
    if (p && p.list === list && Object.isFrozen(list) && p.ring === ring) return p;
    let skipped = 0;
    const byUuid = new Map<string, Node>();
    // Eligible nodes grouped by hardware type: each type sweeps its own nodes (all at once).
    const groups = new Map<HardwareType, Node[]>();
    for (const n of list) {
      // Another conductor's node is neither swept nor counted here (ownership hashed once per node).
      if (this.d.owns && !this.d.owns(n)) continue;
      if (!this.eligible(n)) {
        if (this.syncedHardware(n)) skipped++;
        continue;
      }
      const hw = this.syncedHardware(n)!;
      let g = groups.get(hw);
      if (!g) groups.set(hw, (g = []));
      g.push(n);
      byUuid.set(n.uuid, n);
    }
    const plan: SweepPlan = { list, ring, groups: [...groups].map(([hw, nodes]) => [hw, Object.freeze(nodes)]), byUuid, skipped };
    this.plan = plan;
    return plan;
  }

  /** Runs one sweep now (or joins the one in progress). */
  sweep(): Promise<SweepReport> {
    this.running ??= this.doSweep().finally(() => (this.running = undefined));
    return this.running;
  }

  private async doSweep(): Promise<SweepReport> {
    const t0 = Date.now();
    const report: SweepReport = {
      started_at: new Date(t0).toISOString(),
      duration_ms: 0,
      nodes: 0,
      skipped: 0,
      ok: 0,
      unchanged: 0,
      failed: 0,
      changed_power: 0,
      changed_health: 0,
      entered_maintenance: 0,
      recovered: 0,
      errors_by_code: {},
    };
    const store = this.d.store;
    const plan = this.planFor(await store.listNodesForSweep());
    report.skipped = plan.skipped;
    const byUuid = plan.byUuid;
    const results = await Promise.all(plan.groups.map(([hw, nodes]) => hw.power.sweep!(nodes as Node[], this.cfg.sweep_deadline_ms, this.known)));
    let invalidCount = 0;
    for (const { invalid } of results) {
      for (const { node: n, message } of invalid) {
        // Bad driver_info: a clear per-node error; the sweep goes on (never sent, so no item comes back).
        invalidCount++;
        report.failed++;
        report.errors_by_code.RF_CONFIG = (report.errors_by_code.RF_CONFIG ?? 0) + 1;
        const msg = `Power sync cannot reach the BMC: ${message}`;
        if (n.last_error !== msg) await store.updateNode(n.id, { last_error: msg }, { reservation: null });
      }
    }
    report.nodes = byUuid.size - invalidCount;
    for (const { unchanged } of results) {
      report.ok += unchanged ?? 0;
      report.unchanged += unchanged ?? 0;
    }
    for (const { items } of results) {
      for (const it of items) {
        const node = byUuid.get(it.uuid);
        if (!node) continue;
        try {
          await this.apply(node, it, report);
        } catch (err) {
          this.log.warn({ err, node: node.uuid }, 'power sync could not record a result');
        }
      }
    }
    report.duration_ms = Date.now() - t0;
    this.lastReport = report;
    this.reports.push(report);
    if (this.reports.length > 20) this.reports.shift();
    publish(channels.powerSweep, report);
    this.log.info({ ...report, errors_by_code: report.errors_by_code }, 'power sync sweep');
    return report;
  }

  private async apply(node: Node, it: PowerSweepItem, report: SweepReport): Promise<void> {
    const store = this.d.store;
    if (!it.ok) {
      report.failed++;
      const code = it.error?.code ?? 'RF_INTERNAL';
      report.errors_by_code[code] = (report.errors_by_code[code] ?? 0) + 1;
      // An open breaker answered for the BMC without asking it: the failure that opened it was
      // counted already. Counting the breaker too turned a flapping BMC's 20 s outage into three
      // strikes (two real ones, then the breaker's 30 s) and maintenance mid-lifecycle.
      if (code === 'RF_CIRCUIT_OPEN') return;
      const n = (this.failures.get(node.uuid) ?? 0) + 1;
      this.failures.set(node.uuid, n);
      if (n === 1) publish<BmcReachabilityMessage>(channels.bmcReachability, { node: node.uuid, ok: false, code });
      if (n >= this.cfg.max_retries && !node.maintenance) {
        const reason = `During sync_power_state, max retries exceeded for node ${node.uuid}, node state ${node.power_state} does not match expected state 'None'. Updating DB state to 'None'. Switching node to maintenance mode. Error: ${it.error?.message}`;
        const updated = await store.updateNode(node.id, { maintenance: true, fault: POWER_FAILURE_FAULT, maintenance_reason: reason, power_state: null, last_error: it.error?.message ?? null }, { reservation: null });
        if (updated) {
          report.entered_maintenance++;
          await this.d.history(node, `Power sync failed ${n} times (${code}); node put into maintenance: ${it.error?.message}`, 'monitoring', 'ERROR');
        }
      }
      return;
    }
    report.ok++;
    if (this.failures.delete(node.uuid)) publish<BmcReachabilityMessage>(channels.bmcReachability, { node: node.uuid, ok: true, code: null });
    const patch: Partial<Node> = {};
    const events: Array<[string, 'INFO' | 'WARNING']> = [];
    if (node.maintenance && node.fault === POWER_FAILURE_FAULT) {
      Object.assign(patch, { maintenance: false, fault: null, maintenance_reason: null });
      report.recovered++;
      events.push(['Power sync succeeded again; maintenance ("power failure") cleared', 'INFO']);
    }
    if (this.cfg.health_monitoring && it.health !== undefined && it.health !== node.health) {
      patch.health = it.health ?? null;
      report.changed_health++;
      events.push([`Hardware health changed from ${node.health ?? 'unknown'} to ${it.health ?? 'unknown'}`, it.health === 'OK' ? 'INFO' : 'WARNING']);
    }
    let force: 'power on' | 'power off' | undefined;
    if (it.power && it.power !== node.power_state) {
      report.changed_power++;
      if (node.power_state === null || !this.cfg.force_power_state) {
        patch.power_state = it.power;
        events.push([`Power state of the node changed out of band from ${node.power_state ?? 'None'} to ${it.power}; recorded`, node.power_state === null ? 'INFO' : 'WARNING']);
      } else {
        force = node.power_state as 'power on' | 'power off';
        events.push([`Power state of the node changed out of band to ${it.power}; forcing it back to ${node.power_state} (force_power_state)`, 'WARNING']);
      }
    }
    if (Object.keys(patch).length) {
      const updated = await store.updateNode(node.id, patch, { reservation: null });
      if (!updated) return; // an action took the node meanwhile: it owns the truth now
    }
    for (const [e, sev] of events) await this.d.history(node, e, 'monitoring', sev);
    if (force) {
      try {
        // The sweep's node is a read-only listing row: act on the node as stored.
        const full = await store.getNodeById(node.id);
        if (full) await this.d.setPowerState(full, force);
      } catch (err) {
        this.log.info({ node: node.uuid, err: errorMessage(err) }, 'could not force power state (node busy)');
      }
    }
  }
}
