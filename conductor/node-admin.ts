/**
 * Changes to a node's record the API asks for — create, patch, delete, maintenance, the RAID
 * target — made by the conductor (as in Ironic, the API never takes a node lock or touches an agent
 * stream or a BMC itself). Each runs under the node lock where a running action could race it,
 * writes history with the requesting user, and releases what the old record held: the agent stream
 * of a deleted node, the BMC client and session no node uses any more.
 */
import type { Node, NodeCreate, Store } from './db/store.js';
import type { TaskManager } from './task-manager.js';
import type { NodeOps } from './node-ops.js';
import type { AgentLink } from './agent-link.js';
import type { DriverRegistry } from './drivers/registry.js';
import type { TargetRaidConfig } from '../shared/raid-config.js';
import { DELETE_ALLOWED_STATES, DRIVER_CHANGE_STATES, isProvisionState } from './states.js';
import { InvalidInputError, InvalidStateError } from '../shared/errors.js';
import { targetRaidConfigSchema } from '../shared/raid-config.js';

export interface NodeAdminDeps {
  store: Store;
  tasks: TaskManager;
  ops: NodeOps;
  agents: Pick<AgentLink, 'disconnect'>;
  drivers: DriverRegistry;
  /** The BMC session key a node addresses (undefined: no BMC), and release of a key no node uses. */
  bmcKeyOf(node: Node): string | undefined;
  forgetBmcIfUnused(key: string): Promise<void>;
}

/** Validates a target_raid_config for the API (the agent re-validates against its disks). */
export function validateTargetRaidConfig(v: unknown): TargetRaidConfig {
  const r = targetRaidConfigSchema.safeParse(v);
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw new InvalidInputError(`target_raid_config.${i.path.join('.')}: ${i.message}`, 'target_raid_config');
  }
  for (const [n, ld] of r.data.logical_disks.entries()) {
    if (ld.controller !== 'software') throw new InvalidInputError(`target_raid_config.logical_disks.${n}.controller: only "software" RAID is supported`, 'target_raid_config');
  }
  return r.data;
}

export class NodeAdmin {
  constructor(private readonly d: NodeAdminDeps) {}

  async create(input: NodeCreate, user: string | null): Promise<Node> {
    this.d.drivers.get(input.driver); // 400 naming the field when not enabled
    const node = await this.d.store.createNode(input);
    await this.d.ops.history(node, 'Node created', 'provisioning', 'INFO', user);
    return node;
  }

  /** Applies a validated patch under the node lock; a BMC no node uses any more is logged out. */
  async update(node: Node, patched: Partial<Node>, what: string, user: string | null): Promise<Node> {
    if (patched.driver !== undefined && patched.driver !== node.driver) this.d.drivers.get(patched.driver);
    const updated = await this.d.tasks.withLock(
      node.id,
      'node update',
      async (task) => {
        const fresh = await task.refresh();
        const settled = isProvisionState(fresh.provision_state) && DRIVER_CHANGE_STATES.has(fresh.provision_state);
        if (patched.driver !== undefined && patched.driver !== fresh.driver && !settled && !fresh.maintenance) {
          throw new InvalidStateError(`Cannot change the driver of node ${fresh.uuid} in state "${fresh.provision_state}".`, fresh.uuid, fresh.provision_state);
        }
        return (await this.d.store.updateNode(fresh.id, patched))!;
      },
      { retries: 0 },
    );
    await this.d.ops.history(node, `Node updated: ${what}`, 'update', 'INFO', user);
    const before = this.d.bmcKeyOf(node);
    if (before && before !== this.d.bmcKeyOf(updated)) await this.d.forgetBmcIfUnused(before);
    return updated;
  }

  /** Deletes a node in a state that allows it (or in maintenance): its agent stream and BMC client go too. */
  async delete(node: Node): Promise<void> {
    if (!node.maintenance && !(isProvisionState(node.provision_state) && DELETE_ALLOWED_STATES.has(node.provision_state))) {
      throw new InvalidStateError(
        `Can not delete node "${node.uuid}" while it is in provision state "${node.provision_state}". Valid provision states to start deletion are: ${[...DELETE_ALLOWED_STATES].join(', ')}, or set maintenance mode.`,
        node.uuid,
        node.provision_state,
      );
    }
    await this.d.tasks.withLock(
      node.id,
      'node delete',
      async () => {
        this.d.agents.disconnect(node.id, 'node deleted');
        await this.d.store.deleteNode(node.id);
      },
      { retries: 0 },
    );
    const key = this.d.bmcKeyOf(node);
    if (key) await this.d.forgetBmcIfUnused(key);
  }

  /** Sets (a non-empty document) or clears (an empty one) the node's target_raid_config. */
  async setTargetRaidConfig(node: Node, body: Record<string, unknown>): Promise<void> {
    const target = Object.keys(body).length > 0 ? validateTargetRaidConfig(body) : null;
    await this.d.tasks.withLock(node.id, 'set target_raid_config', (task) => this.d.ops.patchInternal(task, { target_raid_config: target }));
  }

  /**
   * Maintenance on or off. Not under the node lock, as in Ironic: an operator must be able to flag
   * a node whose action is stuck. Clearing it also clears the fault power sync set.
   */
  async setMaintenance(node: Node, reason: string | null | false, user: string | null): Promise<void> {
    if (reason === false) {
      await this.d.store.updateNode(node.id, { maintenance: false, maintenance_reason: null, fault: null });
      await this.d.ops.history(node, 'Maintenance cleared', 'maintenance', 'INFO', user);
      return;
    }
    await this.d.store.updateNode(node.id, { maintenance: true, maintenance_reason: reason });
    await this.d.ops.history(node, `Maintenance set: ${reason ?? '(no reason)'}`, 'maintenance', 'INFO', user);
  }
}
