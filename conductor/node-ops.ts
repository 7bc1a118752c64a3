/**
 * Node operations: the few primitives every action, flow and step is built from, under a held
 * node lock — move the state machine, fail with a last_error, patch driver_internal_info, write
 * history, hand a driver its context, end the ramdisk's boot, change power. Built from the store,
 * the driver registry and the agent link only, so flows and steps are unit-testable without a
 * conductor process.
 */
import type { Logger } from 'pino';
import type { Node, Store } from './db/store.js';
import type { Task } from './task-manager.js';
import type { DriverRegistry } from './drivers/registry.js';
import type { DriverContext, PowerState, PowerTarget } from './drivers/base.js';
import type { AgentLink } from './agent-link.js';
import { transition, type ProvisionEvent, type ProvisionState } from './states.js';
import { applyInternalPatch, type InternalPatch } from './internal-info.js';
import { channels, publish, type NodeStateMessage } from './events.js';
import { InvalidStateError } from '../shared/errors.js';

export type Severity = 'INFO' | 'WARNING' | 'ERROR';

export interface NodeOpsDeps {
  store: Store;
  drivers: DriverRegistry;
  agents: Pick<AgentLink, 'bootId' | 'disconnect'>;
  /** This conductor's hostname (history rows say who wrote them). */
  host: string;
  historyMaxEntries: number;
  log: Logger;
}

export class NodeOps {
  constructor(private readonly d: NodeOpsDeps) {}

  get store(): Store {
    return this.d.store;
  }

  /** Applies a state-machine event (and extra columns) to the locked node; returns the updated node. */
  async move(task: Task, event: ProvisionEvent, extra: Partial<Node> = {}): Promise<Node> {
    const node = await task.refresh();
    const from = node.provision_state as ProvisionState;
    const t = transition(from, event, node.target_provision_state as ProvisionState | null, node.uuid);
    const updated = await this.d.store.updateNode(node.id, { provision_state: t.to, target_provision_state: t.target, ...extra }, { provision_state: from });
    if (!updated) throw new InvalidStateError(`Node ${node.uuid} changed state concurrently.`, node.uuid, from);
    task.replace(updated);
    publish<NodeStateMessage>(channels.nodeState, { node: node.uuid, event, from, to: t.to });
    return updated;
  }

  /** Moves by `event` (normally 'fail') recording last_error, and writes it to history and the log. */
  async fail(task: Task, event: ProvisionEvent, message: string): Promise<void> {
    await this.move(task, event, { last_error: message });
    await this.history(task.node, message, 'provisioning', 'ERROR');
    this.d.log.warn({ node: task.node.uuid, error: message }, 'provisioning step failed');
  }

  /** Merges into driver_internal_info (null deletes a key) under the held lock. */
  async patchInternal(task: Task, patch: InternalPatch): Promise<void> {
    const n = await task.refresh();
    const updated = await this.d.store.updateNode(n.id, { driver_internal_info: applyInternalPatch(n.driver_internal_info, patch) });
    if (updated) task.replace(updated);
    else await task.refresh();
  }

  async history(node: Pick<Node, 'id'>, event: string, eventType: string, severity: Severity, user: string | null = null): Promise<void> {
    await this.d.store.addHistory({ node_id: node.id, conductor: this.d.host, event, event_type: eventType, severity, user }, this.d.historyMaxEntries);
  }

  /** What a driver may do to the node it works on: persist its own driver_internal_info keys. */
  driverContext(task: Task, signal?: AbortSignal): DriverContext {
    return {
      signal,
      setInternalInfo: (patch) => this.patchInternal(task, patch),
      // A driver's remark (BMC retries): history, without failing the operation if it cannot be written.
      note: (message) => void this.history(task.node, message, 'monitoring', 'WARNING').catch((err) => this.d.log.warn({ err, node: task.node.uuid }, 'could not record a driver note')),
    };
  }

  /**
   * The ramdisk boot running on this node ends (power off / reboot): its token is wiped, its boot
   * id retired — so the old agent, reconnecting in the moment before the power action lands, cannot
   * be issued a fresh token and lock out the next boot — and its stream closed.
   */
  async endAgentBoot(task: Task, reason: string): Promise<void> {
    const bootId = this.d.agents.bootId(task.node.id) ?? task.node.agent_boot_id;
    if (bootId) await this.patchInternal(task, { retired_agent_boot_id: bootId });
    await this.d.store.clearAgentToken(task.node.id);
    this.d.agents.disconnect(task.node.id, reason);
  }

  /** A power action inside a held lock, recorded on the node; a power-off or reboot ends the agent's boot (Ironic wipes the token). */
  async setPower(task: Task, target: PowerTarget, timeoutS?: number): Promise<PowerState> {
    const hw = this.d.drivers.get(task.node.driver);
    const state = await hw.power.setPowerState(task.node, target, this.driverContext(task), timeoutS);
    await this.d.store.updateNode(task.node.id, { power_state: state, target_power_state: null });
    if (target !== 'power on') await this.endAgentBoot(task, `power ${target}`);
    return state;
  }

  /**
   * A power action that ends the ramdisk's boot: drop its stream and token first (that boot is
   * gone), then ask the BMC. timeoutS 0: return once accepted (callers poll through deferred actions).
   */
  async powerCut(task: Task, target: 'power off' | 'rebooting', reason: string, timeoutS = 0): Promise<void> {
    await this.endAgentBoot(task, reason);
    await this.d.drivers.get(task.node.driver).power.setPowerState(task.node, target, this.driverContext(task), timeoutS);
  }
}
