/**
 * The data layer: every read and write of conductor state goes through Store. Callers deal in
 * domain objects (JSON parsed, booleans real); rows never leave the db/ modules. Store's methods
 * are split by record kind: nodes (node-store.ts), ports/history/inventory/commands/sessions
 * (record-store.ts), deferred actions (here).
 */
import { randomUUID } from 'node:crypto';
import { RecordStore } from './record-store.js';
import { now, toDeferred, type DeferredAction, type DeferredState, type Json } from './store-base.js';

export * from './store-base.js';

export class Store extends RecordStore {
  // ---------------------------------------------------------------- deferred actions

  async createDeferred(a: { node_id: number; call: string; arguments?: Json; start_after: Date; retry_remaining?: number; created_by?: string | null }): Promise<DeferredAction> {
    const row = {
      uuid: randomUUID(),
      node_id: a.node_id,
      state: 'CREATED',
      call: a.call,
      arguments: JSON.stringify(a.arguments ?? {}),
      start_after: a.start_after.toISOString(),
      retry_remaining: a.retry_remaining ?? 3,
      conductor: null,
      created_by: a.created_by ?? null,
      result: null,
      created_at: now(),
      updated_at: null,
    };
    await this.db.insertInto('deferred_actions').values(row).execute();
    return toDeferred(row);
  }

  /** Due actions (CREATED / PENDING_RETRY with start_after <= at), earliest first. */
  async listDueDeferred(at: Date, limit: number): Promise<DeferredAction[]> {
    const rows = await this.db
      .selectFrom('deferred_actions')
      .selectAll()
      .where('state', 'in', ['CREATED', 'PENDING_RETRY'])
      .where('start_after', '<=', at.toISOString())
      .orderBy('start_after')
      .limit(limit)
      .execute();
    return rows.map(toDeferred);
  }

  /** The earliest start_after among waiting actions, for the scheduler's next wake-up. */
  async nextDeferredDue(): Promise<Date | undefined> {
    const r = await this.db.selectFrom('deferred_actions').select((eb) => eb.fn.min('start_after').as('due')).where('state', 'in', ['CREATED', 'PENDING_RETRY']).executeTakeFirst();
    return r?.due ? new Date(String(r.due)) : undefined;
  }

  /** Claim: CREATED/PENDING_RETRY → RUNNING by `conductor`, atomically; false if someone else did. */
  async claimDeferred(uuid: string, conductor: string): Promise<boolean> {
    const r = await this.db
      .updateTable('deferred_actions')
      .set({ state: 'RUNNING', conductor, updated_at: now() })
      .where('uuid', '=', uuid)
      .where('state', 'in', ['CREATED', 'PENDING_RETRY'])
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  async updateDeferred(uuid: string, patch: { state?: DeferredState; start_after?: Date; retry_remaining?: number; result?: string | null; conductor?: string | null }): Promise<void> {
    const { start_after, ...rest } = patch;
    await this.db
      .updateTable('deferred_actions')
      .set({ ...rest, ...(start_after ? { start_after: start_after.toISOString() } : {}), updated_at: now() })
      .where('uuid', '=', uuid)
      .execute();
  }

  async listDeferred(o: { nodeId?: number; states?: DeferredState[]; call?: string } = {}): Promise<DeferredAction[]> {
    let q = this.db.selectFrom('deferred_actions').selectAll();
    if (o.nodeId !== undefined) q = q.where('node_id', '=', o.nodeId);
    if (o.states) q = q.where('state', 'in', o.states);
    if (o.call) q = q.where('call', '=', o.call);
    return (await q.orderBy('start_after').execute()).map(toDeferred);
  }

  /** Cancel waiting actions of a node (optionally one call kind): they become COMPLETED with a note. */
  async cancelDeferred(nodeId: number, reason: string, call?: string): Promise<number> {
    let q = this.db.updateTable('deferred_actions').set({ state: 'COMPLETED', result: `cancelled: ${reason}`, updated_at: now() }).where('node_id', '=', nodeId).where('state', 'in', ['CREATED', 'PENDING_RETRY']);
    if (call) q = q.where('call', '=', call);
    return Number((await q.executeTakeFirst()).numUpdatedRows);
  }

  /** After a crash: our RUNNING actions go back to PENDING_RETRY (they run again). */
  async requeueDeferred(conductor: string): Promise<number> {
    const r = await this.db
      .updateTable('deferred_actions')
      .set({ state: 'PENDING_RETRY', conductor: null, updated_at: now() })
      .where('state', '=', 'RUNNING')
      .where((eb) => eb.or([eb('conductor', '=', conductor), eb('conductor', 'is', null)]))
      .executeTakeFirst();
    return Number(r.numUpdatedRows);
  }

  /** Purge terminal actions older than `before`. */
  /** Retention: finished deferred actions last touched before `before`. */
  async purgeDeferred(before: Date): Promise<number> {
    const r = await this.db
      .deleteFrom('deferred_actions')
      .where('state', 'in', ['COMPLETED', 'FAILED'])
      .where((eb) => eb(eb.fn.coalesce('updated_at', 'created_at'), '<', before.toISOString()))
      .executeTakeFirst();
    return Number(r.numDeletedRows);
  }

  /** Retention: finished agent commands last touched before `before` (open ones are kept whatever their age). */
  async purgeCommands(before: Date): Promise<number> {
    const r = await this.db
      .deleteFrom('agent_commands')
      .where('status', 'in', ['SUCCEEDED', 'FAILED', 'CANCELLED'])
      .where((eb) => eb(eb.fn.coalesce('updated_at', 'created_at'), '<', before.toISOString()))
      .executeTakeFirst();
    return Number(r.numDeletedRows);
  }

  /** Raw SQL escape hatch for health checks. */
}
