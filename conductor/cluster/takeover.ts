/**
 * What a conductor does when the ring changes. For every member that died (offline, or its
 * heartbeat older than the timeout) — not one that is only draining — it puts the dead
 * conductor's RUNNING deferred actions back in the queue, releases the locks it held on nodes
 * this conductor now owns, and resumes those nodes that were mid-operation in a step that is safe
 * to repeat (flows.ts canResumeOrphaned) or fails them, naming the dead conductor (parked flows need nothing: their waits are rows
 * the new owner's scheduler claims). Then, on any change, BMC sessions follow ownership (adopted
 * before the ring switches, in Membership.beforeSwap; released after it, here).
 * Each survivor handles only the nodes it owns, so no node is taken over twice.
 */
import type { Logger } from 'pino';
import type { Node, Store } from '../db/store.js';
import type { ClusterStore } from '../db/cluster-store.js';
import type { NodeOps } from '../node-ops.js';
import { STUCK_STATES_TREATED_AS_FAIL, transition, type ProvisionState } from '../states.js';
import { channels, publish } from '../events.js';
import type { Membership, MembershipChange } from './membership.js';

export interface TakeoverDeps {
  membership: Membership;
  cluster: ClusterStore;
  store: Store;
  ops: NodeOps;
  /** Releases the BMC sessions of nodes this conductor no longer owns (after the ring changed). */
  releaseSessions(): Promise<unknown>;
  /** Lets the deferred scheduler look for newly owned work at once. */
  wake(): void;
  /** Takes the node's lock and runs its orphaned flow on when that is safe; false if it is not. */
  resume(node: Node, dead: string): Promise<boolean>;
  log: Logger;
}

/** One takeover of a dead conductor by this one (the console and metrics follow it). */
export interface TakeoverMessage {
  dead: string;
  by: string;
  locks_released: number;
  deferred_requeued: number;
  nodes_failed: number;
  nodes_resumed: number;
}

export class Takeover {
  private chain: Promise<void> = Promise.resolve();

  constructor(private readonly d: TakeoverDeps) {}

  /** Resolves once every change handed in so far has been handled (stop waits for it). */
  settled(): Promise<void> {
    return this.chain;
  }

  /** Serialised: a burst of changes is handled in order, one at a time. */
  onChange(change: MembershipChange): Promise<void> {
    this.chain = this.chain.then(() => this.handle(change)).catch((err) => this.d.log.error({ err }, 'takeover failed; the next ring change or tick retries'));
    return this.chain;
  }

  private async handle(change: MembershipChange): Promise<void> {
    const { membership, cluster } = this.d;
    for (const host of change.left) {
      if (host === membership.host) continue;
      const rec = membership.record(host);
      if (!rec || !membership.isAlive(rec)) await this.takeOver(host, rec?.state === 'offline');
    }
    await this.d.releaseSessions();
    this.d.wake();
  }

  private async takeOver(dead: string, graceful: boolean): Promise<void> {
    const { cluster, store, membership, log } = this.d;
    const me = membership.host;
    const requeued = await cluster.requeueDeferredOf(dead);
    let released = 0;
    let failed = 0;
    let resumed = 0;
    for (const { id } of await cluster.lockedBy(dead)) {
      const node = await store.getNodeById(id);
      if (!node || !membership.owns(node)) continue;
      if (!(await cluster.releaseLock(id, dead))) continue;
      released++;
      const outcome = await this.endOrphan({ ...node, reservation: null }, dead);
      if (outcome === 'failed') failed++;
      if (outcome === 'resumed') resumed++;
    }
    // Nodes left in a running state without a lock were between steps of the dead conductor.
    for (const state of STUCK_STATES_TREATED_AS_FAIL) {
      for (const node of await store.listNodes({ provisionState: state })) {
        if (node.reservation || !membership.owns(node)) continue;
        const outcome = await this.endOrphan(node, dead);
        if (outcome === 'failed') failed++;
        if (outcome === 'resumed') resumed++;
      }
    }
    if (!graceful) await cluster.setState(dead, 'offline');
    const msg: TakeoverMessage = { dead, by: me, locks_released: released, deferred_requeued: requeued, nodes_failed: failed, nodes_resumed: resumed };
    publish(channels.takeover, msg);
    log.warn(msg, `took over the nodes of conductor ${dead}`);
  }

  /** A node the dead conductor left mid-operation: resumed when its step is safe to repeat, else failed naming it. */
  private async endOrphan(node: Node, dead: string): Promise<'resumed' | 'failed' | 'none'> {
    const state = node.provision_state;
    if (!STUCK_STATES_TREATED_AS_FAIL.has(state as ProvisionState)) return 'none';
    if (await this.d.resume(node, dead).catch(() => false)) return 'resumed';
    const ev = transition(state as ProvisionState, 'fail', node.target_provision_state as ProvisionState | null, node.uuid);
    const text = `Conductor ${dead} went offline while the node was ${state}; taken over by ${this.d.membership.host}, the operation was aborted.`;
    const updated = await this.d.store.updateNode(node.id, { provision_state: ev.to, target_provision_state: null, last_error: text }, { provision_state: state, reservation: null });
    if (!updated) return 'none';
    await this.d.ops.history(node, text, 'takeover', 'ERROR');
    return 'failed';
  }
}
