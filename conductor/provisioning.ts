/**
 * Provisioning actions the API asks for: a provision verb (manage, inspect, provide, deploy, …),
 * a power change, an agent command — each validated first (a bad request is a 4xx without taking
 * the lock), admitted against the concurrency limits, then spawned under the node lock (the API
 * answers 202 while the work runs). Also where agent results that are not a flow's land: an
 * inventory completing an inspection, a finished command written to history.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { AgentCommand, Node, Store } from './db/store.js';
import type { Task, TaskManager } from './task-manager.js';
import type { NodeOps } from './node-ops.js';
import type { AgentLink } from './agent-link.js';
import type { DriverRegistry } from './drivers/registry.js';
import type { PowerTarget } from './drivers/base.js';
import type { FlowEngine } from './flows.js';
import type { FastTrackLease } from './fast-track.js';
import type { ConductorConfig } from './config.js';
import { stepsOf } from './steps/registry.js';
import {
  DESTRUCTIVE_COMMAND_STATES,
  MAINTENANCE_BLOCKED_EVENTS,
  eventForVerb,
  flowInProgressStates,
  isProvisionState,
  transition,
  type ProvisionEvent,
  type ProvisionState,
} from './states.js';
import { AgentNotConnectedError, ConcurrentActionLimitError, InvalidInputError, InvalidStateError, errorMessage } from '../shared/errors.js';
import { COMMANDS, isCommandName } from '../shared/commands.js';
import { describeZodError } from '../shared/inventory.js';
import { withDbRetry } from './db/retry.js';

/** Agent commands that change disks or firmware: through the API only in DESTRUCTIVE_COMMAND_STATES. */
const DESTRUCTIVE_COMMANDS: ReadonlySet<string> = new Set(['clean.erase_devices', 'clean.erase_devices_metadata', 'deploy.write_image', 'raid.create_configuration', 'raid.delete_configuration', 'firmware.update']);

export type UserSteps = { clean_steps?: Array<Record<string, unknown>>; deploy_steps?: Array<Record<string, unknown>>; service_steps?: Array<Record<string, unknown>> };

export interface ProvisioningDeps {
  store: Store;
  tasks: TaskManager;
  ops: NodeOps;
  agents: AgentLink;
  drivers: DriverRegistry;
  flows: FlowEngine;
  lease: FastTrackLease;
  limits: Pick<ConductorConfig['conductor'], 'max_concurrent_deploy' | 'max_concurrent_clean' | 'automated_clean' | 'fast_track'>;
  log: Logger;
  /** Throws when the conductor takes no new work (stopping, draining). */
  assertAccepting(node: Node): void;
}

export class Provisioning {
  constructor(private readonly d: ProvisioningDeps) {
    d.agents.on('inventory', (node) => void d.tasks.track(this.onInventory(node)).catch((err) => d.log.warn({ err, node: node.uuid }, 'could not record an inventory')));
    d.agents.on('command-finished', (cmd) => void d.tasks.track(this.onCommandFinished(cmd)).catch((err) => d.log.warn({ err }, 'could not record a finished agent command')));
  }

  /** Takes the lock, runs `prepare`, then `work` in the background (Ironic's spawn_after). */
  private spawn(node: Node, purpose: string, prepare: (task: Task) => Promise<void>, work: (task: Task) => Promise<void>): Promise<void> {
    this.d.assertAccepting(node);
    return this.d.tasks.spawn(node.id, purpose, prepare, work, (err) => this.d.log.error({ err, node: node.uuid, purpose }, 'action failed'));
  }

  async provision(node: Node, verb: string, args: UserSteps = {}): Promise<void> {
    const state = node.provision_state;
    if (!isProvisionState(state)) throw new InvalidStateError(`Node ${node.uuid} is in unknown state ${state}.`, node.uuid, state);
    // Validate first so an illegal request is a 400 without taking the lock.
    const effective = verb === 'active' && state === 'active' ? 'rebuild' : eventForVerb(verb);
    transition(state, effective, node.target_provision_state as ProvisionState | null, node.uuid);
    if (node.maintenance && MAINTENANCE_BLOCKED_EVENTS.has(effective)) throw new InvalidStateError(`Node ${node.uuid} is in maintenance mode; ${verb} is not allowed.`, node.uuid, state);
    const hw = this.d.drivers.get(node.driver);
    hw.power.validate(node);
    for (const kind of ['clean', 'deploy', 'service'] as const) {
      const steps = args[`${kind}_steps`];
      if (!steps) continue;
      const bad = stepsOf(hw).validate(kind, steps);
      if (bad) throw new InvalidInputError(bad, bad.split(':')[0]);
    }
    if (effective === 'deploy' || effective === 'rebuild') hw.deploy.validateInstance?.(node);
    if (effective === 'clean' && !args.clean_steps) throw new InvalidInputError('clean_steps: required for manual cleaning', 'clean_steps');
    if (effective === 'service' && !args.service_steps) throw new InvalidInputError('service_steps: required for servicing', 'service_steps');
    await this.admit(effective, hw.deploy.needsAgent);
    await this.spawn(
      node,
      `provision ${verb}`,
      async (task) => {
        await this.d.ops.move(task, effective, { last_error: null });
        await this.d.ops.history(task.node, `Provision action "${verb}" started: ${state} -> ${task.node.provision_state}`, 'provisioning', 'INFO');
      },
      (task) => this.work(task, effective, args),
    );
  }

  /**
   * Ironic's max_concurrent_deploy / max_concurrent_clean: a request that would start one more
   * deploy (or cleaning) beyond the limit is refused with 503 instead of queueing behind the rest.
   */
  private async admit(event: ProvisionEvent, needsAgent: boolean): Promise<void> {
    const c = this.d.limits;
    if (event === 'deploy' || event === 'rebuild') {
      const n = await this.d.store.countNodesInStates(flowInProgressStates('deploy'));
      if (n >= c.max_concurrent_deploy) throw new ConcurrentActionLimitError('deploy', n, c.max_concurrent_deploy);
    }
    if (event === 'clean' || ((event === 'provide' || event === 'delete') && c.automated_clean && needsAgent)) {
      const n = await this.d.store.countNodesInStates(flowInProgressStates('clean'));
      if (n >= c.max_concurrent_clean) throw new ConcurrentActionLimitError('clean', n, c.max_concurrent_clean);
    }
  }

  /** The work behind a provision verb, by the state the node moved to. */
  private async work(task: Task, event: ProvisionEvent, args: UserSteps): Promise<void> {
    const { ops, flows, agents } = this.d;
    const node = task.node;
    try {
      switch (node.provision_state as ProvisionState) {
        case 'verifying': {
          const ps = await this.d.drivers.get(node.driver).power.getPowerState(node, ops.driverContext(task));
          await this.d.store.updateNode(node.id, { power_state: ps });
          await ops.move(task, 'done');
          break;
        }
        case 'cleaning':
          await flows.start(task, 'clean', args.clean_steps);
          break;
        case 'servicing':
          await flows.start(task, 'service', args.service_steps);
          break;
        case 'deploying':
          await flows.start(task, 'deploy', args.deploy_steps);
          break;
        case 'inspecting': {
          // Wait first, then start: the agent may report before the start call returns.
          const hw = this.d.drivers.get(node.driver);
          if (!hw.inspect.begin) throw new Error(`hardware type ${hw.name} cannot inspect`);
          await ops.move(task, 'wait');
          await hw.inspect.begin({ task, ops, hw, agents });
          break;
        }
        case 'deleting': {
          // Tear down: without fast-track the instance is powered off; with it, a connected agent
          // is kept for the cleaning that follows.
          if (!(this.d.limits.fast_track && agents.isConnected(node.id))) {
            agents.disconnect(node.id, 'node tear down');
            await ops.setPower(task, 'power off');
          }
          await this.d.store.updateNode(node.id, { instance_uuid: null, instance_info: {} });
          await ops.move(task, 'clean');
          await flows.start(task, 'clean');
          break;
        }
        case 'adopting':
        case 'rescuing':
        case 'unrescuing':
          await ops.move(task, 'done');
          break;
        default:
          if (event === 'unhold') await flows.unhold(task);
          if (event === 'abort') await flows.abort(task);
          break;
      }
      await ops.history(task.node, `Provision action "${event}" reached ${task.node.provision_state}`, 'provisioning', 'INFO');
    } catch (err) {
      // Record the failure even through a busy or reconnecting database: a node left in
      // `cleaning` with no flow and no lock would stay there for good (found by CI holding
      // SQLite's write lock as a clean started).
      const msg = `${event} failed: ${errorMessage(err)}`;
      const retry = { log: this.d.log, attempts: 12 };
      try {
        await withDbRetry(() => ops.move(task, 'fail', { last_error: msg }), { ...retry, what: `record the failure of node ${node.uuid}` });
        await withDbRetry(() => ops.history(task.node, msg, 'provisioning', 'ERROR'), { ...retry, what: `history of node ${node.uuid}` });
        this.d.log.warn({ node: node.uuid, error: msg }, 'provisioning action failed');
      } catch (err2) {
        this.d.log.error({ err: err2, node: node.uuid }, 'could not record failure');
      }
    }
  }

  async setPowerState(node: Node, target: PowerTarget, timeoutS?: number): Promise<void> {
    this.d.drivers.get(node.driver).power.validate(node);
    await this.spawn(
      node,
      `power ${target}`,
      async (task) => {
        if (task.node.target_power_state) throw new InvalidStateError(`Node ${node.uuid} already has a power transition to ${task.node.target_power_state} in progress.`, node.uuid, node.provision_state);
        await this.d.store.updateNode(node.id, { target_power_state: target, last_error: null });
      },
      async (task) => {
        try {
          const state = await this.d.ops.setPower(task, target, timeoutS);
          await this.d.ops.history(node, `Power state changed to "${state}" (requested "${target}")`, 'power', 'INFO');
        } catch (err) {
          const msg = `Failed to change power state to "${target}": ${errorMessage(err)}`;
          await this.d.store.updateNode(node.id, { target_power_state: null, last_error: msg });
          await this.d.ops.history(node, msg, 'power', 'ERROR');
        }
      },
    );
  }

  /** Agent inventory arrived: complete an agent-based inspection waiting on it. */
  private async onInventory(node: Node): Promise<void> {
    await this.d.ops.history(node, 'Inventory received from agent', 'inspection', 'INFO');
    if (node.provision_state !== 'inspect wait') return;
    try {
      await this.d.tasks.withLock(
        node.id,
        'inspection done',
        async (task) => {
          if (task.node.provision_state !== 'inspect wait') return;
          await this.d.ops.move(task, 'resume');
          await this.d.ops.move(task, 'done');
          await this.d.ops.history(task.node, 'Inspection finished', 'inspection', 'INFO');
          await this.d.lease.start(task);
        },
        { retries: 20, retryIntervalMs: 250 },
      );
    } catch (err) {
      this.d.log.warn({ err, node: node.uuid }, 'could not complete inspection');
    }
  }

  private async onCommandFinished(cmd: AgentCommand): Promise<void> {
    const node = await this.d.store.getNodeById(cmd.node_id);
    if (!node) return;
    const err = cmd.error ? `: ${cmd.error.code}: ${cmd.error.message}` : '';
    await this.d.ops.history(node, `Agent command ${cmd.name} (${cmd.id}) ${cmd.status.toLowerCase()}${err}`, 'agent', cmd.status === 'SUCCEEDED' ? 'INFO' : 'ERROR');
    if (cmd.status !== 'SUCCEEDED' && cmd.error) await this.d.store.updateNode(node.id, { last_error: `agent command ${cmd.name} failed: ${cmd.error.message}` });
    await this.d.flows.onAgentEvent(node.id, 'command', cmd.id);
  }

  /** An agent command through the API (extension): validated, state-checked, sent under the lock. */
  async runAgentCommand(node: Node, name: string, params: unknown): Promise<AgentCommand> {
    if (!isCommandName(name)) throw new InvalidInputError(`name: unknown agent command "${name}"; known: ${Object.keys(COMMANDS).join(', ')}`, 'name');
    const parsed = COMMANDS[name].params.safeParse(params ?? {});
    if (!parsed.success) throw new InvalidInputError(`params: ${describeZodError(parsed.error, 'params')}`, 'params');
    const refuse = (n: Node) => {
      // Disk- and firmware-changing commands only where no tenant owns the disks and no flow
      // owns the agent: never on an active node (its instance lives there).
      if (DESTRUCTIVE_COMMANDS.has(name) && !(isProvisionState(n.provision_state) && DESTRUCTIVE_COMMAND_STATES.has(n.provision_state))) {
        throw new InvalidStateError(`Agent command ${name} changes disks or firmware and is refused in provision state "${n.provision_state}"; allowed in: ${[...DESTRUCTIVE_COMMAND_STATES].join(', ')}.`, n.uuid, n.provision_state);
      }
    };
    refuse(node);
    if (!this.d.agents.isConnected(node.id)) throw new AgentNotConnectedError(node.uuid);
    return this.d.tasks.withLock(
      node.id,
      `agent command ${name}`,
      (task) => {
        refuse(task.node); // again under the lock: the state may have moved since
        return this.d.agents.sendCommand(task.node, randomUUID(), name, parsed.data);
      },
      { retries: 0 },
    );
  }
}
