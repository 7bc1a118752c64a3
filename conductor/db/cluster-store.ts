/**
 * The `conductors` table and the cross-conductor writes of a takeover. Liveness is judged on the
 * database's clock (a heartbeat is "now" as the database sees it, ages are computed in SQL), so
 * clock skew between conductor hosts never makes a live conductor look dead or a dead one alive.
 */
import { sql, type RawBuilder } from 'kysely';
import { now, type Db } from './store-base.js';
import type { SqlDialect } from './migrations.js';
import type { ConductorsTable } from './schema.js';

export type ConductorRecord = ConductorsTable & { age_ms: number };

export class ClusterStore {
  constructor(
    private readonly db: Db,
    private readonly dialect: SqlDialect,
  ) {}

  /** Milliseconds since the epoch on the database server's clock. */
  private dbNow(): RawBuilder<number> {
    return this.dialect === 'postgres' ? sql<number>`(extract(epoch from clock_timestamp()) * 1000)` : sql<number>`((julianday('now') - 2440587.5) * 86400000.0)`;
  }

  /** Registers (or re-registers after a restart) this conductor, heartbeat = now. */
  async register(r: Omit<ConductorsTable, 'heartbeat_ms'>): Promise<void> {
    const values = { ...r, heartbeat_ms: this.dbNow() };
    await this.db
      .insertInto('conductors')
      .values(values)
      .onConflict((oc) => oc.column('hostname').doUpdateSet(values))
      .execute();
  }

  /** Heartbeat; false when the row is no longer ours (another process registered this hostname). */
  async heartbeat(hostname: string, instance: string, state: string): Promise<boolean> {
    const r = await this.db.updateTable('conductors').set({ heartbeat_ms: this.dbNow(), state }).where('hostname', '=', hostname).where('instance', '=', instance).executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  async advertise(hostname: string, instance: string, addresses: { api_url?: string; agent_address?: string }): Promise<void> {
    await this.db.updateTable('conductors').set(addresses).where('hostname', '=', hostname).where('instance', '=', instance).execute();
  }

  async list(): Promise<ConductorRecord[]> {
    const rows = await this.db
      .selectFrom('conductors')
      .selectAll()
      .select(sql<number>`(${this.dbNow()} - heartbeat_ms)`.as('age_ms'))
      .orderBy('hostname')
      .execute();
    return rows.map((r) => ({ ...r, age_ms: Number(r.age_ms), heartbeat_ms: Number(r.heartbeat_ms), pid: Number(r.pid), protocol: Number(r.protocol) }));
  }

  async setState(hostname: string, state: string, instance?: string): Promise<void> {
    let q = this.db.updateTable('conductors').set({ state }).where('hostname', '=', hostname);
    if (instance) q = q.where('instance', '=', instance);
    await q.execute();
  }

  /** The node ids `holder` has locked. */
  async lockedBy(holder: string): Promise<Array<{ id: number; uuid: string }>> {
    return this.db.selectFrom('nodes').select(['id', 'uuid']).where('reservation', '=', holder).execute();
  }

  /** Releases one node lock held by a dead conductor (guarded: only if it still holds it). */
  async releaseLock(id: number, holder: string): Promise<boolean> {
    const r = await this.db.updateTable('nodes').set({ reservation: null, updated_at: now() }).where('id', '=', id).where('reservation', '=', holder).executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  /** A dead conductor's RUNNING deferred actions go back to the queue (their nodes' owners claim them). */
  async requeueDeferredOf(holder: string): Promise<number> {
    const r = await this.db.updateTable('deferred_actions').set({ state: 'PENDING_RETRY', conductor: null, updated_at: now() }).where('state', '=', 'RUNNING').where('conductor', '=', holder).executeTakeFirst();
    return Number(r.numUpdatedRows);
  }

  /** Records that `holder` now uses these BMC sessions. */
  async takeSessions(keys: string[], holder: string): Promise<void> {
    for (let i = 0; i < keys.length; i += 500) await this.db.updateTable('bmc_sessions').set({ conductor: holder }).where('bmc_key', 'in', keys.slice(i, i + 500)).execute();
  }
}
