/**
 * Fast-track lease (Ironic's fast_track): after a flow or an inspection a connected agent stays up
 * under a lease instead of being powered off, so the next clean or deploy reuses it without a
 * reboot. The lease is a deferred action; when it expires an available/manageable node is powered
 * off and an active node is rebooted into its instance. Renewing a lease supersedes the old row.
 */
import type { Json } from './db/store.js';
import type { Task } from './task-manager.js';
import type { NodeOps } from './node-ops.js';
import type { AgentLink } from './agent-link.js';
import type { DeferredScheduler } from './deferred.js';
import type { DriverRegistry } from './drivers/registry.js';
import { internalInfo } from './internal-info.js';
import { LEASE_STATES, isProvisionState } from './states.js';

export interface FastTrackDeps {
  ops: NodeOps;
  agents: Pick<AgentLink, 'isConnected'>;
  deferred: Pick<DeferredScheduler, 'register' | 'schedule'>;
  enabled: boolean;
  timeoutS: number;
}

export const LEASE_CALL = 'fasttrack.expire';

export class FastTrackLease {
  constructor(private readonly d: FastTrackDeps) {
    d.deferred.register(LEASE_CALL, (task, args) => this.onExpired(task, args));
  }

  get enabled(): boolean {
    return this.d.enabled;
  }

  /** Keep a connected agent under a (renewed) lease; a no-op without fast-track or agent. */
  async start(task: Task): Promise<void> {
    if (!this.d.enabled || !this.d.agents.isConnected(task.node.id)) return;
    const until = new Date(Date.now() + this.d.timeoutS * 1000);
    await this.cancel(task.node.id, 'lease renewed');
    await this.d.ops.patchInternal(task, { fast_track_lease_until: until.toISOString() });
    await this.d.deferred.schedule(task.node.id, LEASE_CALL, { until: until.toISOString() }, until);
  }

  /** Drop a pending lease expiry (a new flow took the agent over). */
  cancel(nodeId: number, reason: string): Promise<number> {
    return this.d.ops.store.cancelDeferred(nodeId, reason, LEASE_CALL);
  }

  private async onExpired(task: Task, args: Json): Promise<void> {
    const node = task.node;
    if (internalInfo(node).fast_track_lease_until !== args.until) return; // renewed or superseded
    await this.d.ops.patchInternal(task, { fast_track_lease_until: null });
    const state = node.provision_state;
    if (!isProvisionState(state) || !LEASE_STATES.has(state)) return;
    if (state === 'active') {
      await this.d.ops.powerCut(task, 'rebooting', 'fast-track lease expired');
      await this.d.ops.history(node, 'Fast-track lease expired: rebooted into the instance', 'provisioning', 'INFO');
    } else {
      await this.d.ops.powerCut(task, 'power off', 'fast-track lease expired');
      await this.d.ops.store.updateNode(node.id, { power_state: 'power off' });
      await this.d.ops.history(node, 'Fast-track lease expired: powered off', 'provisioning', 'INFO');
    }
  }
}

/** Ironic's is_fast_track: enabled, agent alive, no firmware work, and the hardware says the power is on. */
export async function fastTrackable(d: { enabled: boolean; agents: Pick<AgentLink, 'isConnected'>; drivers: DriverRegistry; ops: NodeOps }, task: Task): Promise<boolean> {
  const node = task.node;
  if (!d.enabled || node.driver_info.fast_track === false) return false;
  if (!d.agents.isConnected(node.id)) return false;
  if (internalInfo(node).firmware_update) return false;
  try {
    return (await d.drivers.get(node.driver).power.getPowerState(node, d.ops.driverContext(task))) === 'power on';
  } catch {
    return false;
  }
}
