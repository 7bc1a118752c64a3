/**
 * The conductor: owns the node lock, the drivers and the agent hub, and runs every action that
 * touches hardware. The API calls into it (never a driver directly); each action takes the node
 * lock, moves the state machine, and runs its work asynchronously so the API answers 202.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { ConductorConfig } from './config.js';
import path from 'node:path';
import { openDatabase, parseDatabaseUrl } from './db/database.js';
import { SecretBox } from './secret-box.js';
import { Store, type AgentCommand, type Node } from './db/store.js';
import { TaskManager, type Task } from './task-manager.js';
import { AgentHub } from './agent-hub.js';
import { DriverRegistry } from './drivers/registry.js';
import type { DriverContext, PowerState, PowerTarget } from './drivers/base.js';
import {
  DELETE_ALLOWED_STATES,
  STUCK_STATES_TREATED_AS_FAIL,
  eventForVerb,
  isProvisionState,
  transition,
  type ProvisionEvent,
  type ProvisionState,
} from './states.js';
import { AgentNotConnectedError, ConcurrentActionLimitError, DriverError, InvalidInputError, InvalidStateError, NodeLockedError, errorMessage } from '../shared/errors.js';
import { COMMANDS, isCommandName } from '../shared/commands.js';
import { describeZodError } from '../shared/inventory.js';
import { ConductorMetrics } from './metrics.js';
import { BmcPool } from './redfish/pool.js';
import { RedfishClient, type SessionEvent } from './redfish/client.js';
import { parseRedfishDriverInfo, type RedfishTarget } from './redfish/driver-info.js';
import { nodeRef, redfishHardware } from './drivers/redfish.js';
import { PowerSync } from './power-sync.js';
import { SensorCollector } from './sensors.js';
import { DeferredScheduler } from './deferred.js';
import { FlowEngine, deployImageParams, userStepSchemaError } from './flows.js';

export type Severity = 'INFO' | 'WARNING' | 'ERROR';

/** The key file sealing secrets at rest: configured, else next to a SQLite database, else /var/lib/ironfleet. */
export function secretsKeyFile(cfg: ConductorConfig): string {
  if (cfg.security.secrets_key_file) return cfg.security.secrets_key_file;
  const { dialect, target } = parseDatabaseUrl(cfg.database.url);
  return dialect === 'sqlite' && target !== ':memory:' ? path.join(path.dirname(target), 'secrets.key') : '/var/lib/ironfleet/secrets.key';
}

/** Agent commands that change disks or firmware: through the API only in DESTRUCTIVE_COMMAND_STATES. */
const DESTRUCTIVE_COMMANDS: ReadonlySet<string> = new Set(['clean.erase_devices', 'clean.erase_devices_metadata', 'deploy.write_image', 'raid.create_configuration', 'raid.delete_configuration', 'firmware.update']);
const DESTRUCTIVE_COMMAND_STATES: ReadonlySet<string> = new Set(['enroll', 'manageable', 'available', 'inspect failed', 'clean failed']);

/** The BMC session key of a redfish node, or undefined (other driver, invalid driver_info). */
function bmcKeyOf(node: Node): string | undefined {
  if (node.driver !== 'redfish') return undefined;
  try {
    return parseRedfishDriverInfo(node.driver_info, node.uuid).key;
  } catch {
    return undefined;
  }
}

export class Conductor {
  readonly tasks: TaskManager;
  readonly hub: AgentHub;
  readonly drivers = new DriverRegistry();
  readonly metrics: ConductorMetrics;
  pool: BmcPool | undefined;
  readonly powerSync: PowerSync;
  readonly sensors: SensorCollector;
  readonly deferred: DeferredScheduler;
  readonly flows: FlowEngine;
  /** In-flight background actions, awaited on shutdown. */
  private readonly inflight = new Set<Promise<unknown>>();
  private stopping = false;

  private constructor(
    readonly cfg: ConductorConfig,
    readonly store: Store,
    readonly log: Logger,
  ) {
    this.tasks = new TaskManager(store, cfg.host, {
      retries: cfg.conductor.node_locked_retry_attempts,
      retryIntervalMs: cfg.conductor.node_locked_retry_interval_ms,
    });
    this.hub = new AgentHub(store, cfg, log.child({ component: 'agent-hub' }));
    this.hub.on('inventory', (node) => this.track(this.onInventory(node)));
    this.hub.on('command-finished', (cmd) => this.track(this.onCommandFinished(cmd)));
    this.metrics = new ConductorMetrics(this);
    this.drivers.register(redfishHardware(() => this.bmcPool()));
    this.powerSync = new PowerSync(this, () => this.bmcPool(), log.child({ component: 'power-sync' }));
    this.sensors = new SensorCollector(this, () => this.bmcPool(), log.child({ component: 'sensors' }));
    this.deferred = new DeferredScheduler(store, this.tasks, cfg.host, log.child({ component: 'deferred' }), {
      concurrency: cfg.conductor.deferred_concurrency,
      onFailed: async (a, err, task) => {
        if (!a.call.startsWith('flow.')) return;
        const msg = `${a.call} failed after retries: ${errorMessage(err)}`;
        const st = task.node.provision_state;
        if (['deploying', 'wait call-back', 'cleaning', 'clean wait', 'servicing', 'service wait'].includes(st)) await this.failNode(task, 'fail', msg);
      },
    });
    const c = cfg.conductor;
    this.flows = new FlowEngine(
      this,
      {
        fastTrack: c.fast_track,
        fastTrackTimeoutS: c.fast_track_timeout_s,
        callbackTimeoutS: c.deploy_callback_timeout_s,
        agentLostGraceS: cfg.agent.command_lost_grace_s,
        powerTimeoutS: c.power_state_change_timeout_s,
        automatedClean: c.automated_clean,
        eraseDevicesPriority: c.erase_devices_priority,
        eraseDevicesMetadataPriority: c.erase_devices_metadata_priority,
      },
      log.child({ component: 'flows' }),
    );
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
    await c.recover();
    await c.startBmcPool();
    return c;
  }

  bmcPool(): BmcPool {
    if (!this.pool) throw new Error('BMC pool not started');
    return this.pool;
  }

  /** Starts the BMC worker threads and adopts (or cleans up) sessions left by our previous run. */
  private async startBmcPool(): Promise<void> {
    const r = this.cfg.redfish;
    this.pool = new BmcPool(
      r.pool_size,
      { timeoutMs: r.timeout_ms, connectTimeoutMs: r.connect_timeout_ms, maxInflight: r.max_inflight_per_bmc, breakerThreshold: r.breaker_threshold, breakerOpenMs: r.breaker_open_ms },
      (events) => this.persistSessionEvents(events),
    );
    await this.pool.start();
    const rows = await this.store.listBmcSessions(this.cfg.host);
    if (rows.length === 0) return;
    const targets = await this.redfishTargets();
    const adopt = rows.filter((s) => targets.has(s.bmc_key));
    const orphans = rows.filter((s) => !targets.has(s.bmc_key));
    const adopted = await this.pool.importSessions(adopt.map((s) => ({ key: s.bmc_key, uri: s.session_uri, token: s.token, createdAt: Date.parse(s.created_at), target: targets.get(s.bmc_key)! })));
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
    this.log.info({ adopted, orphans_logged_out: orphans.length }, 'BMC sessions from the previous run');
  }

  /** Every redfish node's BMC target, by session key. */
  async redfishTargets(): Promise<Map<string, RedfishTarget>> {
    const out = new Map<string, RedfishTarget>();
    for (const n of await this.store.listNodes({ driver: 'redfish' })) {
      try {
        const t = parseRedfishDriverInfo(n.driver_info, n.uuid);
        out.set(t.key, t);
      } catch {
        /* invalid driver_info: nothing to adopt */
      }
    }
    return out;
  }

  private async persistSessionEvents(events: SessionEvent[]): Promise<void> {
    for (const e of events) {
      try {
        if (e.op === 'created') {
          await this.store.putBmcSession({ bmc_key: e.session.key, session_uri: e.session.uri, token: e.session.token, conductor: this.cfg.host, created_at: new Date(e.session.createdAt).toISOString() });
        } else {
          await this.store.deleteBmcSession(e.key, e.uri);
        }
      } catch (err) {
        this.log.warn({ err }, 'could not persist a BMC session change');
      }
    }
  }

  /** Periodic work: power sync, sensors. */
  startBackground(): void {
    void this.deferred.start().catch((err) => this.log.error({ err }, 'deferred scheduler failed to start'));
    this.powerSync.start();
    this.sensors.start();
    const poll = () => {
      this.firmwareTimer = setTimeout(async () => {
        await this.pollFirmwareTasks().catch((err) => this.log.warn({ err }, 'firmware monitor failed'));
        if (!this.stopping) poll();
      }, this.cfg.firmware.poll_interval_ms);
      this.firmwareTimer.unref();
    };
    poll();
    // Retention: finished deferred actions and agent commands would otherwise grow for good.
    this.retentionTimer = setInterval(() => void this.purgeFinished(), Math.min(3_600_000, this.cfg.conductor.retention_days * 86_400_000)).unref();
  }

  private firmwareTimer: NodeJS.Timeout | undefined;
  private retentionTimer: NodeJS.Timeout | undefined;

  /** Deletes finished deferred actions and agent commands older than conductor.retention_days. */
  async purgeFinished(): Promise<{ deferred: number; commands: number }> {
    const before = new Date(Date.now() - this.cfg.conductor.retention_days * 86_400_000);
    try {
      const deferred = await this.store.purgeDeferred(before);
      const commands = await this.store.purgeCommands(before);
      if (deferred || commands) this.log.info({ deferred, commands, before: before.toISOString() }, 'retention: purged finished rows');
      return { deferred, commands };
    } catch (err) {
      this.log.warn({ err }, 'retention purge failed; next pass retries');
      return { deferred: 0, commands: 0 };
    }
  }

  async startAgentEndpoint(): Promise<number> {
    return this.hub.start();
  }

  /**
   * Crash recovery at startup: release locks our previous life held, and fail nodes left in a
   * state whose work cannot be resumed (Ironic's STUCK_STATES_TREATED_AS_FAIL), with a clear
   * last_error. Agent commands that were in flight stay open: the agent reports their fate when it
   * reconnects.
   */
  private async recover(): Promise<void> {
    const cleared = await this.store.clearReservations(this.cfg.host);
    if (cleared > 0) this.log.warn({ cleared }, 'released node locks left by a previous run of this conductor');
    for (const state of STUCK_STATES_TREATED_AS_FAIL) {
      const stuck = await this.store.listNodes({ provisionState: state });
      for (const node of stuck) {
        if (node.reservation) continue; // another live conductor owns it
        const ev = transition(state, 'fail', node.target_provision_state as ProvisionState | null, node.uuid);
        const msg = `Conductor ${this.cfg.host} restarted while the node was ${state}; the operation was aborted.`;
        await this.store.updateNode(node.id, { provision_state: ev.to, target_provision_state: null, last_error: msg }, { provision_state: state });
        await this.history(node, msg, 'provisioning', 'ERROR');
        this.log.warn({ node: node.uuid, from: state, to: ev.to }, 'failed a node left mid-operation by a crash');
      }
    }
  }

  get isStopping(): boolean {
    return this.stopping;
  }

  /**
   * Graceful stop: take no new work, let running deferred actions and background actions finish
   * (bounded), then close agent streams and BMC sessions. Flows parked in wait states stay in the
   * database and resume on the next start. Returns whether everything finished in time.
   */
  async stop(timeoutMs = this.cfg.conductor.graceful_shutdown_timeout_s * 1000): Promise<boolean> {
    this.stopping = true;
    if (this.firmwareTimer) clearTimeout(this.firmwareTimer);
    if (this.retentionTimer) clearInterval(this.retentionTimer);
    const t0 = Date.now();
    const deferredDone = await this.deferred.stop(timeoutMs);
    const rest = Math.max(0, timeoutMs - (Date.now() - t0));
    const inflightDone = await Promise.race([Promise.allSettled([...this.inflight]).then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), rest).unref())]);
    if (!deferredDone || !inflightDone) this.log.warn({ timeout_ms: timeoutMs }, 'graceful shutdown timed out; in-flight work is left to crash recovery');
    await this.stopRest();
    return deferredDone && inflightDone;
  }

  /** Drain: stop taking work and wait until this conductor holds no node locks (bounded). */
  async drain(timeoutMs = this.cfg.conductor.drain_shutdown_timeout_s * 1000): Promise<boolean> {
    this.stopping = true;
    const until = Date.now() + timeoutMs;
    while (Date.now() < until) {
      const held = (await this.store.listNodes({})).filter((n) => n.reservation === this.cfg.host).length;
      if (held === 0 && this.deferred.inFlight === 0) return true;
      await new Promise((r) => setTimeout(r, 1000));
    }
    return false;
  }

  private async stopRest(): Promise<void> {
    await this.powerSync.stop();
    await this.sensors.stop();
    await this.pool?.close();
    await this.hub.stop();
    await this.store.clearReservations(this.cfg.host);
    await this.store.close();
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.inflight.add(p);
    const done = () => this.inflight.delete(p);
    p.then(done, done);
    return p;
  }

  async history(node: Pick<Node, 'id'>, event: string, eventType: string, severity: Severity, user: string | null = null): Promise<void> {
    await this.store.addHistory(
      { node_id: node.id, conductor: this.cfg.host, event, event_type: eventType, severity, user },
      this.cfg.conductor.node_history_max_entries,
    );
  }

  driverContextFor(task: Task, signal?: AbortSignal): DriverContext {
    return {
      signal,
      setInternalInfo: (patch) => this.patchInternal(task, patch),
    };
  }

  /**
   * Takes the lock, then runs `work` in the background holding it. Returns once the lock is held
   * and `prepare` (synchronous state checks + first writes) succeeded, so the API can answer 202
   * or a precise 4xx.
   */
  private async startAction(node: Node, purpose: string, prepare: (task: Task) => Promise<void>, work: (task: Task) => Promise<void>): Promise<void> {
    if (this.stopping) throw new InvalidStateError('Conductor is shutting down; retry on another conductor.', node.uuid, node.provision_state);
    const task = await this.tasks.acquire(node.id, purpose);
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
          this.log.error({ err, node: node.uuid, purpose }, 'action failed');
        } finally {
          await task.release();
        }
      })(),
    );
  }

  // ------------------------------------------------------------------ node changes (API)

  /** Applies a validated patch under the node lock; a BMC no node uses any more is logged out. */
  async updateNode(node: Node, patched: Partial<Node>): Promise<Node> {
    if (patched.driver !== undefined && patched.driver !== node.driver) this.drivers.get(patched.driver);
    const updated = await this.tasks.withLock(
      node.id,
      'node update',
      async (task) => {
        const fresh = await task.refresh();
        if (patched.driver !== undefined && patched.driver !== fresh.driver && !['enroll', 'manageable', 'available', 'inspect failed'].includes(fresh.provision_state) && !fresh.maintenance) {
          throw new InvalidStateError(`Cannot change the driver of node ${fresh.uuid} in state "${fresh.provision_state}".`, fresh.uuid, fresh.provision_state);
        }
        return (await this.store.updateNode(fresh.id, patched))!;
      },
      { retries: 0 },
    );
    const before = bmcKeyOf(node);
    if (before && before !== bmcKeyOf(updated)) await this.forgetBmcIfUnused(before);
    return updated;
  }

  /** Deletes a node (state already checked by the caller's rules here): its agent stream and BMC client go too. */
  async deleteNode(node: Node): Promise<void> {
    if (!node.maintenance && !(isProvisionState(node.provision_state) && DELETE_ALLOWED_STATES.has(node.provision_state))) {
      throw new InvalidStateError(
        `Can not delete node "${node.uuid}" while it is in provision state "${node.provision_state}". Valid provision states to start deletion are: ${[...DELETE_ALLOWED_STATES].join(', ')}, or set maintenance mode.`,
        node.uuid,
        node.provision_state,
      );
    }
    await this.tasks.withLock(
      node.id,
      'node delete',
      async () => {
        this.hub.disconnect(node.id, 'node deleted');
        await this.store.deleteNode(node.id);
      },
      { retries: 0 },
    );
    const key = bmcKeyOf(node);
    if (key) await this.forgetBmcIfUnused(key);
  }

  /** Logs out of a BMC and drops its client (and the credentials the worker thread held) once no node uses it. */
  private async forgetBmcIfUnused(key: string): Promise<void> {
    if (!this.pool) return;
    if ((await this.redfishTargets()).has(key)) return;
    await this.pool.forget([key]).catch((err) => this.log.warn({ err }, 'could not release the BMC client of a deleted node'));
  }

  // ------------------------------------------------------------------ power

  async setPowerState(node: Node, target: PowerTarget, timeoutS?: number): Promise<void> {
    this.drivers.get(node.driver).power.validate(node);
    await this.startAction(
      node,
      `power ${target}`,
      async (task) => {
        if (task.node.target_power_state) {
          throw new InvalidStateError(`Node ${node.uuid} already has a power transition to ${task.node.target_power_state} in progress.`, node.uuid, node.provision_state);
        }
        await this.store.updateNode(node.id, { target_power_state: target, last_error: null });
      },
      async (task) => {
        try {
          const state = await this.powerInTask(task, target, timeoutS);
          await this.history(node, `Power state changed to "${state}" (requested "${target}")`, 'power', 'INFO');
        } catch (err) {
          const msg = `Failed to change power state to "${target}": ${errorMessage(err)}`;
          await this.store.updateNode(node.id, { target_power_state: null, last_error: msg });
          await this.history(node, msg, 'power', 'ERROR');
        }
      },
    );
  }

  /**
   * Ironic's max_concurrent_deploy / max_concurrent_clean: a request that would start one more
   * deploy (or cleaning) beyond the limit is refused with 503 instead of queueing behind the rest.
   */
  private async checkConcurrencyLimit(event: ProvisionEvent, needsAgent: boolean): Promise<void> {
    const c = this.cfg.conductor;
    if (event === 'deploy' || event === 'rebuild') {
      const n = await this.store.countNodesInStates(['deploying', 'wait call-back', 'deploy hold']);
      if (n >= c.max_concurrent_deploy) throw new ConcurrentActionLimitError('deploy', n, c.max_concurrent_deploy);
    }
    if (event === 'clean' || ((event === 'provide' || event === 'delete') && c.automated_clean && needsAgent)) {
      const n = await this.store.countNodesInStates(['cleaning', 'clean wait', 'clean hold']);
      if (n >= c.max_concurrent_clean) throw new ConcurrentActionLimitError('clean', n, c.max_concurrent_clean);
    }
  }

  /** Power action inside a held lock; a power-off or reboot wipes the agent token (Ironic). */
  private async powerInTask(task: Task, target: PowerTarget, timeoutS?: number): Promise<PowerState> {
    const hw = this.drivers.get(task.node.driver);
    const state = await hw.power.setPowerState(task.node, target, this.driverContextFor(task), timeoutS);
    await this.store.updateNode(task.node.id, { power_state: state, target_power_state: null });
    if (target !== 'power on') await this.endAgentBoot(task, `power ${target}`);
    return state;
  }

  /**
   * The ramdisk boot running on this node ends (power off / reboot): its token is wiped, its boot
   * id retired — so the old agent, reconnecting in the moment before the power action lands, cannot
   * be issued a fresh token and lock out the next boot — and its stream closed.
   */
  async endAgentBoot(task: Task, reason: string): Promise<void> {
    const bootId = this.hub.sessions.get(task.node.id)?.bootId ?? task.node.agent_boot_id;
    if (bootId) await this.patchInternal(task, { retired_agent_boot_id: bootId });
    await this.store.clearAgentToken(task.node.id);
    this.hub.disconnect(task.node.id, reason);
  }

  // ------------------------------------------------------------------ provisioning

  /** Applies a state-machine event and records it; returns the updated node. */
  private async move(task: Task, event: ProvisionEvent, extra: Partial<Node> = {}): Promise<Node> {
    const node = await task.refresh();
    const from = node.provision_state as ProvisionState;
    const t = transition(from, event, node.target_provision_state as ProvisionState | null, node.uuid);
    const updated = await this.store.updateNode(node.id, { provision_state: t.to, target_provision_state: t.target, ...extra }, { provision_state: from });
    if (!updated) throw new InvalidStateError(`Node ${node.uuid} changed state concurrently.`, node.uuid, from);
    task.replace(updated);
    return updated;
  }

  moveNode(task: Task, event: ProvisionEvent, extra: Partial<Node> = {}): Promise<Node> {
    return this.move(task, event, extra);
  }

  failNode(task: Task, event: ProvisionEvent, message: string): Promise<void> {
    return this.fail(task, event, message);
  }

  /** Merge into driver_internal_info (null deletes a key) under the held lock. */
  async patchInternal(task: Task, patch: Record<string, unknown>): Promise<void> {
    const n = await task.refresh();
    const next: Record<string, unknown> = { ...n.driver_internal_info };
    for (const [k, v] of Object.entries(patch)) {
      if (v === null) delete next[k];
      else next[k] = v;
    }
    const updated = await this.store.updateNode(n.id, { driver_internal_info: next });
    if (updated) task.replace(updated);
    else await task.refresh();
  }

  private async fail(task: Task, event: ProvisionEvent, message: string): Promise<void> {
    await this.move(task, event, { last_error: message });
    await this.history(task.node, message, 'provisioning', 'ERROR');
    this.log.warn({ node: task.node.uuid, error: message }, 'provisioning step failed');
  }

  async doProvisionAction(node: Node, verb: string, args: { clean_steps?: Array<Record<string, unknown>>; deploy_steps?: Array<Record<string, unknown>>; service_steps?: Array<Record<string, unknown>> } = {}): Promise<void> {
    const event = eventForVerb(verb);
    const state = node.provision_state;
    if (!isProvisionState(state)) throw new InvalidStateError(`Node ${node.uuid} is in unknown state ${state}.`, node.uuid, state);
    // Validate first so an illegal request is a 400 without taking the lock.
    let effective = event;
    if (verb === 'active' && state === 'active') effective = 'rebuild';
    transition(state, effective, node.target_provision_state as ProvisionState | null, node.uuid);
    if (node.maintenance && ['deploy', 'rebuild', 'provide', 'clean', 'inspect'].includes(effective)) {
      throw new InvalidStateError(`Node ${node.uuid} is in maintenance mode; ${verb} is not allowed.`, node.uuid, state);
    }
    const hw = this.drivers.get(node.driver);
    hw.power.validate(node);
    for (const kind of ['clean', 'deploy', 'service'] as const) {
      const steps = args[`${kind}_steps`];
      if (!steps) continue;
      const bad = userStepSchemaError(kind, steps);
      if (bad) throw new InvalidInputError(bad, bad.split(':')[0]);
    }
    if ((effective === 'deploy' || effective === 'rebuild') && hw.deploy.needsAgent) deployImageParams(node);
    if (effective === 'clean' && !args.clean_steps) throw new InvalidInputError('clean_steps: required for manual cleaning', 'clean_steps');
    if (effective === 'service' && !args.service_steps) throw new InvalidInputError('service_steps: required for servicing', 'service_steps');
    await this.checkConcurrencyLimit(effective, hw.deploy.needsAgent);
    await this.startAction(
      node,
      `provision ${verb}`,
      async (task) => {
        await this.move(task, effective, { last_error: null });
        await this.history(task.node, `Provision action "${verb}" started: ${state} -> ${task.node.provision_state}`, 'provisioning', 'INFO');
      },
      async (task) => this.runProvisionWork(task, effective, args),
    );
  }

  private async runProvisionWork(task: Task, event: ProvisionEvent, args: { clean_steps?: Array<Record<string, unknown>>; deploy_steps?: Array<Record<string, unknown>>; service_steps?: Array<Record<string, unknown>> } = {}): Promise<void> {
    const node = task.node;
    const hw = this.drivers.get(node.driver);
    try {
      switch (node.provision_state as ProvisionState) {
        case 'verifying': {
          const ps = await hw.power.getPowerState(node, this.driverContextFor(task));
          await this.store.updateNode(node.id, { power_state: ps });
          await this.move(task, 'done');
          break;
        }
        case 'cleaning':
          await this.flows.start(task, 'clean', args.clean_steps);
          break;
        case 'servicing':
          await this.flows.start(task, 'service', args.service_steps);
          break;
        case 'inspecting': {
          if (this.hub.isConnected(node.id)) {
            await this.move(task, 'wait');
            await this.hub.sendCommand(task.node, randomUUID(), 'system.get_inventory', {});
          } else {
            // Wait first, then power on: the agent may boot and report before the BMC poll ends.
            await this.move(task, 'wait');
            await this.drivers.get(node.driver).power.setPowerState(task.node, 'power on', this.driverContextFor(task), 0);
            await this.store.updateNode(node.id, { power_state: 'power on' });
          }
          break;
        }
        case 'deploying': {
          if (!hw.deploy.needsAgent) {
            await this.powerInTask(task, 'power on');
            await this.move(task, 'done');
          } else await this.flows.start(task, 'deploy', args.deploy_steps);
          break;
        }
        case 'deleting': {
          // Tear down: without fast-track the instance is powered off; with it, a connected agent
          // is kept for the cleaning that follows.
          const keep = this.cfg.conductor.fast_track && this.hub.isConnected(node.id);
          if (!keep) {
            this.hub.disconnect(node.id, 'node tear down');
            await this.powerInTask(task, 'power off');
          }
          await this.store.updateNode(node.id, { instance_uuid: null, instance_info: {} });
          await this.move(task, 'clean');
          await this.flows.start(task, 'clean');
          break;
        }
        case 'adopting':
        case 'rescuing':
        case 'unrescuing':
          await this.move(task, 'done');
          break;
        default:
          if (event === 'unhold') await this.flows.unhold(task);
          if (event === 'abort') {
            // The flow stops here: no more steps, nothing waiting on its behalf.
            const flow = task.node.driver_internal_info.flow as { wait?: { type: string; command_id?: string } } | undefined;
            if (flow?.wait?.type === 'command' && flow.wait.command_id) this.hub.cancelCommand(node.id, flow.wait.command_id, 'aborted');
            await this.store.cancelDeferred(node.id, 'aborted');
            await this.patchInternal(task, { flow: null });
          }
          break;
      }
      await this.history(task.node, `Provision action "${event}" reached ${task.node.provision_state}`, 'provisioning', 'INFO');
    } catch (err) {
      const msg = `${event} failed: ${errorMessage(err)}`;
      try {
        await this.fail(task, 'fail', msg);
      } catch (err2) {
        this.log.error({ err: err2, node: node.uuid }, 'could not record failure');
      }
    }
  }

  /** Agent inventory arrived: complete an agent-based inspection waiting on it. */
  private async onInventory(node: Node): Promise<void> {
    await this.history(node, 'Inventory received from agent', 'inspection', 'INFO');
    if (node.provision_state !== 'inspect wait') return;
    try {
      await this.tasks.withLock(node.id, 'inspection done', async (task) => {
        if (task.node.provision_state !== 'inspect wait') return;
        await this.move(task, 'resume');
        await this.move(task, 'done');
        await this.history(task.node, 'Inspection finished', 'inspection', 'INFO');
        await this.startLease(task);
      }, { retries: 20, retryIntervalMs: 250 });
    } catch (err) {
      this.log.warn({ err, node: node.uuid }, 'could not complete inspection');
    }
  }

  private async onCommandFinished(cmd: AgentCommand): Promise<void> {
    const node = await this.store.getNodeById(cmd.node_id);
    if (!node) return;
    const sev: Severity = cmd.status === 'SUCCEEDED' ? 'INFO' : 'ERROR';
    const err = cmd.error ? `: ${cmd.error.code}: ${cmd.error.message}` : '';
    await this.history(node, `Agent command ${cmd.name} (${cmd.id}) ${cmd.status.toLowerCase()}${err}`, 'agent', sev);
    if (cmd.status !== 'SUCCEEDED' && cmd.error) await this.store.updateNode(node.id, { last_error: `agent command ${cmd.name} failed: ${cmd.error.message}` });
    await this.flows.onAgentEvent(node.id, 'command', cmd.id);
  }

  /** Fast-track: keep a connected agent under a lease (expiry powers the node off). */
  async startLease(task: Task): Promise<void> {
    if (!this.cfg.conductor.fast_track || !this.hub.isConnected(task.node.id)) return;
    const until = new Date(Date.now() + this.cfg.conductor.fast_track_timeout_s * 1000);
    await this.store.cancelDeferred(task.node.id, 'lease renewed', 'fasttrack.expire');
    await this.patchInternal(task, { fast_track_lease_until: until.toISOString() });
    await this.deferred.schedule(task.node.id, 'fasttrack.expire', { until: until.toISOString() }, until);
  }

  // ------------------------------------------------------------------ out-of-band firmware

  /**
   * Starts a Redfish SimpleUpdate and records the BMC task on the node. Nothing waits on it: the
   * firmware monitor polls the task on a timer until it completes (and survives restarts, since
   * the task lives in driver_internal_info).
   */
  async firmwareUpdate(node: Node, imageUrl: string, component: 'bios' | 'bmc'): Promise<void> {
    if (node.driver !== 'redfish') throw new InvalidInputError(`driver: out-of-band firmware needs the redfish driver, node ${node.uuid} uses ${node.driver}`, 'driver');
    if (node.driver_internal_info.firmware_update) throw new InvalidStateError(`Node ${node.uuid} already has a firmware update in progress.`, node.uuid, node.provision_state);
    await this.tasks.withLock(node.id, 'firmware update', async (task) => {
      const taskUri = await this.bmcPool().op<string>(nodeRef(task.node), { op: 'firmware-start', imageUri: imageUrl, component }).catch((err) => {
        throw new DriverError(`firmware update could not start: ${errorMessage(err)}`);
      });
      const fresh = await task.refresh();
      await this.store.updateNode(node.id, {
        driver_internal_info: { ...fresh.driver_internal_info, firmware_update: { task_uri: taskUri, component, image_url: imageUrl, started_at: new Date().toISOString() } },
        last_error: null,
      });
      await this.history(node, `Firmware update of ${component} started from ${imageUrl} (BMC task ${taskUri})`, 'firmware', 'INFO');
    }, { retries: 0 });
  }

  /** One pass of the firmware monitor: polls every node with an update in flight. */
  async pollFirmwareTasks(): Promise<number> {
    const nodes = (await this.store.listNodes({ driver: 'redfish' })).filter((n) => n.driver_internal_info.firmware_update);
    let finished = 0;
    await Promise.all(
      nodes.map(async (n) => {
        const fw = n.driver_internal_info.firmware_update as { task_uri: string; component: 'bios' | 'bmc'; image_url: string };
        let state: { state: string; percent: number | null; messages: string[] };
        try {
          state = await this.bmcPool().op(nodeRef(n), { op: 'firmware-task', taskUri: fw.task_uri });
        } catch (err) {
          this.log.warn({ node: n.uuid, err: errorMessage(err) }, 'firmware task poll failed; will retry');
          return;
        }
        if (!['Completed', 'Exception', 'Killed', 'Cancelled'].includes(state.state)) return;
        const versions = state.state === 'Completed' ? await this.bmcPool().op<{ bios: string | null; bmc: string | null }>(nodeRef(n), { op: 'firmware-versions' }).catch(() => ({ bios: null, bmc: null })) : undefined;
        // Record it under the node lock: a flow may be writing driver_internal_info right now, and
        // an unlocked read-modify-write here once erased a parked flow's wait (node stuck in
        // `clean wait`). Locked by someone else: the next pass records it.
        const done = await this.tasks
          .withLock(n.id, 'firmware task finished', async (task) => {
            if (!task.node.driver_internal_info.firmware_update) return false;
            if (versions) {
              await this.patchInternal(task, { firmware_update: null, firmware_versions: { ...versions, updated_at: new Date().toISOString(), last_version_flashed: { component: fw.component, image_url: fw.image_url } } });
              await this.history(n, `Firmware update of ${fw.component} completed; now ${fw.component === 'bios' ? versions.bios : versions.bmc}`, 'firmware', 'INFO');
            } else {
              const msg = `Firmware update of ${fw.component} failed: BMC task ${state.state}${state.messages.length ? `: ${state.messages.join('; ')}` : ''}`;
              await this.patchInternal(task, { firmware_update: null });
              await this.store.updateNode(n.id, { last_error: msg });
              await this.history(n, msg, 'firmware', 'ERROR');
            }
            return true;
          }, { retries: 0 })
          .catch((err) => {
            if (!(err instanceof NodeLockedError)) throw err;
            return false;
          });
        if (done) finished++;
      }),
    );
    return finished;
  }

  // ------------------------------------------------------------------ agent commands (API)

  async runAgentCommand(node: Node, name: string, params: unknown): Promise<AgentCommand> {
    if (!isCommandName(name)) throw new InvalidInputError(`name: unknown agent command "${name}"; known: ${Object.keys(COMMANDS).join(', ')}`, 'name');
    const parsed = COMMANDS[name].params.safeParse(params ?? {});
    if (!parsed.success) throw new InvalidInputError(`params: ${describeZodError(parsed.error, 'params')}`, 'params');
    const refuse = (n: Node) => {
      // Disk- and firmware-changing commands only where no tenant owns the disks and no flow
      // owns the agent: never on an active node (its instance lives there).
      if (DESTRUCTIVE_COMMANDS.has(name) && !DESTRUCTIVE_COMMAND_STATES.has(n.provision_state)) {
        throw new InvalidStateError(
          `Agent command ${name} changes disks or firmware and is refused in provision state "${n.provision_state}"; allowed in: ${[...DESTRUCTIVE_COMMAND_STATES].join(', ')}.`,
          n.uuid,
          n.provision_state,
        );
      }
    };
    refuse(node);
    if (!this.hub.isConnected(node.id)) throw new AgentNotConnectedError(node.uuid);
    return this.tasks.withLock(
      node.id,
      `agent command ${name}`,
      (task) => {
        refuse(task.node); // again under the lock: the state may have moved since
        return this.hub.sendCommand(task.node, randomUUID(), name, parsed.data);
      },
      { retries: 0 },
    );
  }
}
