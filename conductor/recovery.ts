/**
 * What a conductor does about its own past: at start, release the node locks its previous life
 * held and fail nodes left in a state whose work cannot be resumed (Ironic's
 * STUCK_STATES_TREATED_AS_FAIL) with a clear last_error — parked flows are durable and simply
 * resume; agent commands in flight stay open until the agent reports their fate. While running,
 * purge finished rows older than the retention period.
 */
import type { Logger } from 'pino';
import type { Node, Store } from './db/store.js';
import type { NodeOps } from './node-ops.js';
import { STUCK_STATES_TREATED_AS_FAIL, transition, type ProvisionState } from './states.js';

export async function recoverAtStart(store: Store, ops: NodeOps, host: string, log: Logger, owns: (n: Node) => boolean = () => true): Promise<void> {
  const cleared = await store.clearReservations(host);
  if (cleared > 0) log.warn({ cleared }, 'released node locks left by a previous run of this conductor');
  for (const state of STUCK_STATES_TREATED_AS_FAIL) {
    for (const node of await store.listNodes({ provisionState: state })) {
      if (node.reservation || !owns(node)) continue; // another live conductor works on it / owns it
      const ev = transition(state, 'fail', node.target_provision_state as ProvisionState | null, node.uuid);
      const msg = `Conductor ${host} restarted while the node was ${state}; the operation was aborted.`;
      await store.updateNode(node.id, { provision_state: ev.to, target_provision_state: null, last_error: msg }, { provision_state: state });
      await ops.history(node, msg, 'provisioning', 'ERROR');
      log.warn({ node: node.uuid, from: state, to: ev.to }, 'failed a node left mid-operation by a crash');
    }
  }
}

/** Deletes finished deferred actions and agent commands older than retention_days. */
export async function purgeFinished(store: Store, retentionDays: number, log: Logger): Promise<{ deferred: number; commands: number }> {
  const before = new Date(Date.now() - retentionDays * 86_400_000);
  try {
    const deferred = await store.purgeDeferred(before);
    const commands = await store.purgeCommands(before);
    if (deferred || commands) log.info({ deferred, commands, before: before.toISOString() }, 'retention: purged finished rows');
    return { deferred, commands };
  } catch (err) {
    log.warn({ err }, 'retention purge failed; next pass retries');
    return { deferred: 0, commands: 0 };
  }
}
