/**
 * The conductor: wires the parts together and owns their lifecycle — open (database, secrets,
 * crash recovery, BMC sessions), run (agent endpoint, background loops), drain, stop — as an
 * explicit state. The work itself lives in the parts it builds from narrow dependencies:
 * provisioning actions (provisioning.ts), node record changes (node-admin.ts), the flow engine
 * (flows.ts) over the hardware types' steps, deferred actions, power sync, sensors, firmware
 * monitoring and BMC sessions. The API calls the conductor's methods, never a driver.
 */
import path from 'node:path';
import type { Logger } from 'pino';
import type { ConductorConfig } from './config.js';
import { openDatabase, parseDatabaseUrl } from './db/database.js';
import { SecretBox } from './secret-box.js';
import { Store, type AgentCommand, type Node, type NodeCreate } from './db/store.js';
import { TaskManager } from './task-manager.js';
import { AgentHub } from './agent-hub.js';
import { DriverRegistry } from './drivers/registry.js';
import type { PowerTarget } from './drivers/base.js';
import { redfishHardware } from './drivers/redfish.js';
import { NodeOps, type Severity } from './node-ops.js';
import { ConductorMetrics } from './metrics.js';
import type { BmcPool } from './redfish/pool.js';
import type { RedfishTarget } from './redfish/driver-info.js';
import { BmcSessions, bmcKeyOf } from './bmc-sessions.js';
import { PowerSync } from './power-sync.js';
import { SensorCollector } from './sensors.js';
import { DeferredScheduler } from './deferred.js';
import { FlowEngine } from './flows.js';
import { previewSteps, type FlowSettings } from './flow-plan.js';
import { FastTrackLease } from './fast-track.js';
import { FirmwareMonitor } from './firmware-monitor.js';
import { Provisioning, type UserSteps } from './provisioning.js';
import { NodeAdmin } from './node-admin.js';
import { recoverAtStart, purgeFinished } from './recovery.js';
import { flowSettings } from './flow-settings.js';
import { FLOW_ACTIVE_STATES, isProvisionState, type FlowKind } from './states.js';
import { InvalidStateError, errorMessage } from '../shared/errors.js';
import { AGENT_VERSION } from '../shared/commands.js';
import { ClusterStore } from './db/cluster-store.js';
import { Membership } from './cluster/membership.js';
import { Takeover } from './cluster/takeover.js';

export type { Severity };

/**
 * Lifecycle (as Temporal's worker): `running` takes work; `draining` finishes what it holds and
 * takes nothing new; `stopping` closes streams and sessions; `stopped` is final.
 */
export type ConductorState = 'running' | 'draining' | 'stopping' | 'stopped';

/** The key file sealing secrets at rest: configured, else next to a SQLite database, else /var/lib/ironfleet. */
export function secretsKeyFile(cfg: ConductorConfig): string {
  if (cfg.security.secrets_key_file) return cfg.security.secrets_key_file;
  const { dialect, target } = parseDatabaseUrl(cfg.database.url);
  return dialect === 'sqlite' && target !== ':memory:' ? path.join(path.dirname(target), 'secrets.key') : '/var/lib/ironfleet/secrets.key';
}

export class Conductor {
  readonly tasks: TaskManager;
  readonly hub: AgentHub;
  readonly drivers = new DriverRegistry();
  readonly metrics: ConductorMetrics;
  readonly ops: NodeOps;
  readonly bmc: BmcSessions;
  readonly powerSync: PowerSync;
  readonly sensors: SensorCollector;
  readonly deferred: DeferredScheduler;
  readonly lease: FastTrackLease;
  readonly flows: FlowEngine;
  readonly firmware: FirmwareMonitor;
  readonly provisioning: Provisioning;
  readonly admin: NodeAdmin;
  /** The conductors sharing this database and the hash ring that says which nodes are whose. */
  readonly membership: Membership;
  readonly cluster: ClusterStore;
  private readonly takeover: Takeover;
  /** The flow settings, compiled once from the config. */
  private readonly flowSettings: FlowSettings;
  private lifecycle: ConductorState = 'running';
  private retentionTimer: NodeJS.Timeout | undefined;

  private constructor(
    readonly cfg: ConductorConfig,
    readonly store: Store,
    readonly log: Logger,
  ) {
    const c = cfg.conductor;
    const child = (component: string) => log.child({ component });
    this.tasks = new TaskManager(store, cfg.host, { retries: c.node_locked_retry_attempts, retryIntervalMs: c.node_locked_retry_interval_ms });
    this.hub = new AgentHub(store, cfg, child('agent-hub'));
    this.bmc = new BmcSessions(store, cfg.host, cfg.redfish, child('bmc-sessions'));
    this.drivers.register(redfishHardware(() => this.bmc.require()));
    this.metrics = new ConductorMetrics({ agents: this.hub, bmc: () => this.bmc.pool });
    this.ops = new NodeOps({ store, drivers: this.drivers, agents: this.hub, host: cfg.host, historyMaxEntries: c.node_history_max_entries, log: child('flows') });
    this.cluster = new ClusterStore(store.db, store.dialect);
    this.membership = new Membership(
      this.cluster,
      { host: cfg.host, group: cfg.conductor_group, version: AGENT_VERSION, heartbeatIntervalS: c.heartbeat_interval_s, heartbeatTimeoutS: c.heartbeat_timeout_s, single: store.dialect === 'sqlite' },
      child('membership'),
    );
    const owns = (n: Node) => this.membership.owns(n);
    // Agents reaching a conductor that does not own their node are sent to the owner (Welcome.redirect_to).
    this.hub.routing = {
      redirect: (n) => {
        const owner = this.membership.ownerOf(n);
        return owner && owner !== cfg.host ? (this.membership.record(owner)?.agent_address ?? undefined) : undefined;
      },
      conductors: () => this.membership.members().flatMap((r) => (this.membership.isMember(r.hostname) && r.agent_address ? [r.agent_address] : [])),
    };
    this.deferred = new DeferredScheduler(store, this.tasks, cfg.host, child('deferred'), {
      concurrency: c.deferred_concurrency,
      owns: async (a) => {
        const n = await store.getNodeById(a.node_id);
        return !n || owns(n);
      },
      onFailed: async (a, err, task) => {
        if (!a.call.startsWith('flow.')) return;
        const st = task.node.provision_state;
        if (isProvisionState(st) && FLOW_ACTIVE_STATES.has(st)) await this.ops.fail(task, 'fail', `${a.call} failed after retries: ${errorMessage(err)}`);
      },
    });
    this.lease = new FastTrackLease({ ops: this.ops, agents: this.hub, deferred: this.deferred, enabled: c.fast_track, timeoutS: c.fast_track_timeout_s });
    const settings = (this.flowSettings = flowSettings(cfg));
    this.flows = new FlowEngine({ store, ops: this.ops, agents: this.hub, deferred: this.deferred, drivers: this.drivers, lease: this.lease, settings, log: child('flows'), isStopping: () => this.isStopping });
    this.provisioning = new Provisioning({
      store, tasks: this.tasks, ops: this.ops, agents: this.hub, drivers: this.drivers, flows: this.flows, lease: this.lease, limits: c, log: child('provisioning'),
      assertAccepting: (node) => {
        if (this.isStopping) throw new InvalidStateError('Conductor is shutting down; retry on another conductor.', node.uuid, node.provision_state);
      },
    });
    this.admin = new NodeAdmin({ store, tasks: this.tasks, ops: this.ops, agents: this.hub, drivers: this.drivers, bmcKeyOf, forgetBmcIfUnused: (key) => this.bmc.forgetIfUnused(key) });
    this.powerSync = new PowerSync({
      store, drivers: this.drivers, cfg: cfg.power_sync, log: child('power-sync'),
      history: (node, ev, type, sev) => this.ops.history(node, ev, type, sev),
      setPowerState: (node, target) => this.provisioning.setPowerState(node, target),
      owns,
      ownershipGeneration: () => this.membership.generation,
    });
    this.sensors = new SensorCollector({ store, drivers: this.drivers, owns, log: child('sensors'), cfg: { ...cfg.sensors, deadline_ms: cfg.power_sync.sweep_deadline_ms } });
    this.firmware = new FirmwareMonitor({ store, tasks: this.tasks, ops: this.ops, drivers: this.drivers, pollIntervalMs: cfg.firmware.poll_interval_ms, owns, log: child('firmware') });
    this.takeover = new Takeover({
      membership: this.membership, cluster: this.cluster, store, ops: this.ops, log: child('takeover'),
      releaseSessions: async () => {
        await this.bmc.releaseLost(owns);
        // Agents of nodes another conductor owns now reconnect (and are redirected there).
        for (const id of [...this.hub.sessions.keys()]) {
          const n = await store.getNodeById(id);
          if (n && !owns(n)) this.hub.disconnect(id, `node now owned by conductor ${this.membership.ownerOf(n)}; reconnect there`);
        }
      },
      wake: () => {
        this.deferred.wake();
        this.powerSync.sweepSoon();
      },
      resume: async (node, dead) => {
        if (!this.flows.canResumeOrphaned(node)) return false;
        await this.tasks.spawn(node.id, 'resume a flow after takeover', async () => undefined, (task) => this.flows.resumeOrphaned(task, dead), (err) => this.log.error({ err, node: node.uuid }, 'resuming an orphaned flow failed'));
        return true;
      },
    });
  }

  static async open(cfg: ConductorConfig, log: Logger): Promise<Conductor> {
    const db = await openDatabase(cfg.database.url, {
      poolSize: cfg.database.pool_size,
      busyTimeoutMs: cfg.database.busy_timeout_ms,
      onPoolError: (err) => log.warn({ err }, 'database connection lost; reconnecting on next use'),
    });
    let box: SecretBox;
    try {
      box = SecretBox.load(secretsKeyFile(cfg), { create: true });
    } catch (err) {
      await db.close();
      throw err;
    }
    const store = new Store(db, box);
    const sealed = await store.sealAtRest();
    if (sealed) log.warn({ rows: sealed }, 'sealed secrets that were stored in plaintext (written before sealing at rest existed)');
    const c = new Conductor(cfg, store, log);
    try {
      await c.membership.join();
    } catch (err) {
      await store.close();
      throw err;
    }
    const owns = (n: Node) => c.membership.owns(n);
    const take = (keys: string[]) => c.cluster.takeSessions(keys, cfg.host);
    await recoverAtStart(store, c.ops, cfg.host, log, owns);
    // Persisted sessions on BMCs this conductor owns (our previous run's, a peer's, a dead
    // conductor's) are adopted before the first sweep could log in again; so are those of BMCs a
    // ring change is about to hand us.
    await c.bmc.start(owns, take);
    c.membership.beforeSwap = (_change, next) => c.bmc.adopt(next, take).then(() => undefined);
    return c;
  }

  get state(): ConductorState {
    return this.lifecycle;
  }

  get isStopping(): boolean {
    return this.lifecycle !== 'running';
  }

  get pool(): BmcPool | undefined {
    return this.bmc.pool;
  }

  redfishTargets(): Promise<Map<string, RedfishTarget>> {
    return this.bmc.targets();
  }

  startAgentEndpoint(): Promise<number> {
    return this.hub.start();
  }

  /** Periodic work: deferred actions, power sync, sensors, firmware monitor, retention. */
  startBackground(): void {
    this.membership.on('changed', (change) => void this.takeover.onChange(change));
    this.membership.start();
    void this.deferred.start().catch((err) => this.log.error({ err }, 'deferred scheduler failed to start'));
    this.powerSync.start();
    this.sensors.start();
    this.firmware.start();
    // Retention: finished deferred actions and agent commands would otherwise grow for good.
    this.retentionTimer = setInterval(() => void this.purgeFinished(), Math.min(3_600_000, this.cfg.conductor.retention_days * 86_400_000)).unref();
  }

  purgeFinished(): Promise<{ deferred: number; commands: number }> {
    return purgeFinished(this.store, this.cfg.conductor.retention_days, this.log);
  }

  /**
   * Graceful stop: take no new work, let running deferred actions and background actions finish
   * (bounded), then close agent streams and BMC sessions. Flows parked in wait states stay in the
   * database and resume on the next start. Returns whether everything finished in time.
   */
  async stop(timeoutMs = this.cfg.conductor.graceful_shutdown_timeout_s * 1000): Promise<boolean> {
    if (this.lifecycle === 'stopping' || this.lifecycle === 'stopped') return true;
    this.lifecycle = 'stopping';
    // Peers take this conductor's nodes now (it owns none while it finishes what it holds). Its own
    // reaction to that change is not needed (closing the pool hands over or logs out every session).
    this.membership.removeAllListeners('changed');
    await this.membership.drain().catch(() => undefined);
    await this.takeover.settled();
    this.firmware.stop();
    if (this.retentionTimer) clearInterval(this.retentionTimer);
    const t0 = Date.now();
    const deferredDone = await this.deferred.stop(timeoutMs);
    const inflightDone = await this.tasks.drain(timeoutMs - (Date.now() - t0));
    if (!deferredDone || !inflightDone) this.log.warn({ timeout_ms: timeoutMs }, 'graceful shutdown timed out; in-flight work is left to crash recovery');
    await this.powerSync.stop();
    await this.sensors.stop();
    // Live peers own this conductor's BMCs now: hand the sessions over rather than log out.
    await this.bmc.close(this.membership.peerCount() > 0);
    await this.hub.stop();
    this.metrics.close();
    await this.store.clearReservations(this.cfg.host);
    await this.membership.leave();
    await this.store.close();
    this.lifecycle = 'stopped';
    return deferredDone && inflightDone;
  }

  /** Drain: stop taking work and wait until this conductor holds no node locks (bounded). */
  async drain(timeoutMs = this.cfg.conductor.drain_shutdown_timeout_s * 1000): Promise<boolean> {
    if (this.lifecycle === 'running') this.lifecycle = 'draining';
    // Leave the ring: peers own (and sweep) this conductor's nodes; it finishes what it holds.
    await this.membership.drain().catch((err) => this.log.warn({ err }, 'could not mark this conductor draining'));
    const until = Date.now() + timeoutMs;
    while (Date.now() < until) {
      const held = (await this.store.listNodes({})).filter((n) => n.reservation === this.cfg.host).length;
      if (held === 0 && this.deferred.inFlight === 0) return true;
      await new Promise((r) => setTimeout(r, 1000));
    }
    return false;
  }

  // ---------------------------------------------------------------- what the API asks for

  history(node: Pick<Node, 'id'>, event: string, eventType: string, severity: Severity, user: string | null = null): Promise<void> {
    return this.ops.history(node, event, eventType, severity, user);
  }

  doProvisionAction(node: Node, verb: string, args: UserSteps = {}): Promise<void> {
    return this.provisioning.provision(node, verb, args);
  }

  setPowerState(node: Node, target: PowerTarget, timeoutS?: number): Promise<void> {
    return this.provisioning.setPowerState(node, target, timeoutS);
  }

  runAgentCommand(node: Node, name: string, params: unknown): Promise<AgentCommand> {
    return this.provisioning.runAgentCommand(node, name, params);
  }

  firmwareUpdate(node: Node, imageUrl: string, component: 'bios' | 'bmc'): Promise<void> {
    return this.firmware.update(node, imageUrl, component);
  }

  pollFirmwareTasks(): Promise<number> {
    return this.firmware.poll();
  }

  createNode(input: NodeCreate, user: string | null): Promise<Node> {
    return this.admin.create(input, user);
  }

  updateNode(node: Node, patched: Partial<Node>, what = 'fields', user: string | null = null): Promise<Node> {
    return this.admin.update(node, patched, what, user);
  }

  deleteNode(node: Node): Promise<void> {
    return this.admin.delete(node);
  }

  setTargetRaidConfig(node: Node, body: Record<string, unknown>): Promise<void> {
    return this.admin.setTargetRaidConfig(node, body);
  }

  setMaintenance(node: Node, reason: string | null | false, user: string | null): Promise<void> {
    return this.admin.setMaintenance(node, reason, user);
  }

  /** The steps a node would run (the steps API). */
  previewSteps(node: Node, kind: FlowKind): ReturnType<typeof previewSteps> {
    return previewSteps(this.drivers.get(node.driver), node, kind, this.flowSettings);
  }
}
