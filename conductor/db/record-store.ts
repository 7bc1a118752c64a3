/** The records around a node: ports, history, inventory, agent commands, BMC sessions, and sealing existing rows at rest. */
import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import type { HistoryRow } from './schema.js';
import { isSealed } from '../secret-box.js';
import { scrubSecrets, scrubText } from '../../shared/redact.js';
import { ConflictError } from '../../shared/errors.js';
import { NodeStore } from './node-store.js';
import { JSON_NODE_FIELDS, isUniqueViolation, now, parseSealed, toPort, type AgentCommand, type HistoryEvent, type Json, type Node, type Port } from './store-base.js';

export class RecordStore extends NodeStore {
  // ---------------------------------------------------------------- ports

  async createPort(input: { uuid?: string; address: string; node_id: number; extra?: Json; pxe_enabled?: boolean; local_link_connection?: Json; physical_network?: string | null }): Promise<Port> {
    const uuid = input.uuid ?? randomUUID();
    try {
      await this.db
        .insertInto('ports')
        .values({
          uuid,
          address: input.address.toLowerCase(),
          node_id: input.node_id,
          extra: this.sealJson(input.extra ?? {}),
          pxe_enabled: input.pxe_enabled === false ? 0 : 1,
          local_link_connection: JSON.stringify(input.local_link_connection ?? {}),
          physical_network: input.physical_network ?? null,
          created_at: now(),
          updated_at: null,
        })
        .execute();
    } catch (err) {
      if (isUniqueViolation(err)) throw new ConflictError(`A port with MAC address ${input.address} already exists.`, { field: 'address' });
      throw err;
    }
    return (await this.getPort(uuid))!;
  }

  async getPort(uuid: string): Promise<Port | undefined> {
    const r = await this.db.selectFrom('ports').selectAll().where('uuid', '=', uuid).executeTakeFirst();
    return r && toPort(r);
  }

  async listPorts(o: { nodeId?: number; address?: string; limit?: number; markerId?: number } = {}): Promise<Port[]> {
    let q = this.db.selectFrom('ports').selectAll();
    if (o.nodeId !== undefined) q = q.where('node_id', '=', o.nodeId);
    if (o.address !== undefined) q = q.where('address', '=', o.address.toLowerCase());
    if (o.markerId !== undefined) q = q.where('id', '>', o.markerId);
    q = q.orderBy('id', 'asc');
    if (o.limit !== undefined) q = q.limit(o.limit);
    return (await q.execute()).map(toPort);
  }

  async updatePort(id: number, patch: Partial<Pick<Port, 'address' | 'node_id' | 'extra' | 'pxe_enabled' | 'local_link_connection' | 'physical_network'>>): Promise<void> {
    const row: Record<string, unknown> = { updated_at: now() };
    if (patch.address !== undefined) row.address = patch.address.toLowerCase();
    if (patch.node_id !== undefined) row.node_id = patch.node_id;
    if (patch.extra !== undefined) row.extra = JSON.stringify(patch.extra);
    if (patch.local_link_connection !== undefined) row.local_link_connection = JSON.stringify(patch.local_link_connection);
    if (patch.pxe_enabled !== undefined) row.pxe_enabled = patch.pxe_enabled ? 1 : 0;
    if (patch.physical_network !== undefined) row.physical_network = patch.physical_network;
    try {
      await this.db.updateTable('ports').set(row).where('id', '=', id).execute();
    } catch (err) {
      if (isUniqueViolation(err)) throw new ConflictError(`A port with MAC address ${patch.address} already exists.`, { field: 'address' });
      throw err;
    }
  }

  async deletePort(id: number): Promise<void> {
    await this.db.deleteFrom('ports').where('id', '=', id).execute();
  }

  /** The node owning any of these MACs (lookup). Throws Conflict if they map to several nodes. */
  async findNodeByMacs(macs: string[]): Promise<Node | undefined> {
    if (macs.length === 0) return undefined;
    const rows = await this.db
      .selectFrom('ports')
      .select('node_id')
      .where('address', 'in', macs.map((m) => m.toLowerCase()))
      .distinct()
      .execute();
    if (rows.length === 0) return undefined;
    if (rows.length > 1) throw new ConflictError(`MAC addresses ${macs.join(',')} belong to more than one node.`, { field: 'macs' });
    return this.getNodeById(rows[0]!.node_id);
  }

  // ---------------------------------------------------------------- history

  async addHistory(e: Omit<HistoryEvent, 'uuid' | 'created_at'>, maxEntries: number): Promise<void> {
    await this.db.insertInto('node_history').values({ ...e, event: scrubText(e.event), uuid: randomUUID(), created_at: now() }).execute();
    // Keep at most maxEntries per node (Ironic's node_history_max_entries). Pruning on every
    // insert cost as much as the insert, so prune every `every` inserts per node (≤ 10% overshoot).
    const every = Math.max(1, Math.min(20, Math.floor(maxEntries / 10)));
    const count = (this.historyInserts.get(e.node_id) ?? 0) + 1;
    this.historyInserts.set(e.node_id, count % every);
    if (count < every) return;
    const cutoff = await this.db
      .selectFrom('node_history')
      .select('id')
      .where('node_id', '=', e.node_id)
      .orderBy('id', 'desc')
      .offset(maxEntries)
      .limit(1)
      .executeTakeFirst();
    if (cutoff) await this.db.deleteFrom('node_history').where('node_id', '=', e.node_id).where('id', '<=', cutoff.id).execute();
  }

  async listHistory(nodeId: number, o: { limit?: number; markerId?: number } = {}): Promise<Array<HistoryEvent & { id: number }>> {
    let q = this.db.selectFrom('node_history').selectAll().where('node_id', '=', nodeId);
    if (o.markerId !== undefined) q = q.where('id', '>', o.markerId);
    q = q.orderBy('id', 'asc');
    if (o.limit !== undefined) q = q.limit(o.limit);
    return (await q.execute()) as Array<HistoryRow>;
  }

  async getHistoryEvent(nodeId: number, uuid: string): Promise<(HistoryEvent & { id: number }) | undefined> {
    return this.db.selectFrom('node_history').selectAll().where('node_id', '=', nodeId).where('uuid', '=', uuid).executeTakeFirst();
  }

  // ---------------------------------------------------------------- inventory

  async putInventory(nodeId: number, inventory: Json, pluginData: Json): Promise<void> {
    const ts = now();
    await this.db
      .insertInto('node_inventory')
      .values({ node_id: nodeId, inventory: JSON.stringify(inventory), plugin_data: JSON.stringify(pluginData), created_at: ts, updated_at: null })
      .onConflict((oc) => oc.column('node_id').doUpdateSet({ inventory: JSON.stringify(inventory), plugin_data: JSON.stringify(pluginData), updated_at: ts }))
      .execute();
  }

  async getInventory(nodeId: number): Promise<{ inventory: Json; plugin_data: Json } | undefined> {
    const r = await this.db.selectFrom('node_inventory').select(['inventory', 'plugin_data']).where('node_id', '=', nodeId).executeTakeFirst();
    return r && { inventory: JSON.parse(r.inventory), plugin_data: JSON.parse(r.plugin_data) };
  }

  // ---------------------------------------------------------------- agent commands

  async createCommand(c: { id: string; node_id: number; name: string; params: Json }): Promise<AgentCommand> {
    await this.db
      .insertInto('agent_commands')
      .values({ ...c, params: this.sealJson(c.params), status: 'PENDING', result: null, error: null, progress: null, created_at: now(), updated_at: null })
      .execute();
    return (await this.getCommand(c.id))!;
  }

  async getCommand(id: string): Promise<AgentCommand | undefined> {
    const r = await this.db.selectFrom('agent_commands').selectAll().where('id', '=', id).executeTakeFirst();
    return r && this.toCommand(r);
  }

  async listCommands(nodeId: number, o: { limit?: number; statuses?: AgentCommand['status'][] } = {}): Promise<AgentCommand[]> {
    let q = this.db.selectFrom('agent_commands').selectAll().where('node_id', '=', nodeId);
    if (o.statuses) q = q.where('status', 'in', o.statuses);
    q = q.orderBy('created_at', 'asc').orderBy('id', 'asc');
    if (o.limit !== undefined) q = q.limit(o.limit);
    return (await q.execute()).map(this.toCommand);
  }

  /** Moves a command forward; a terminal command never changes again (first result wins). */
  async updateCommand(id: string, patch: { status?: AgentCommand['status']; result?: Json | null; error?: AgentCommand['error']; progress?: Json | null }): Promise<boolean> {
    const row: Record<string, unknown> = { updated_at: now() };
    if (patch.status !== undefined) row.status = patch.status;
    // What an agent reports may quote a URL it was given (with its credentials): masked before it is stored.
    if (patch.result !== undefined) row.result = patch.result === null ? null : JSON.stringify(scrubSecrets(patch.result));
    if (patch.error !== undefined) row.error = patch.error === null ? null : JSON.stringify(scrubSecrets(patch.error));
    if (patch.progress !== undefined) row.progress = patch.progress === null ? null : JSON.stringify(scrubSecrets(patch.progress));
    const res = await this.db
      .updateTable('agent_commands')
      .set(row)
      .where('id', '=', id)
      .where('status', 'in', ['PENDING', 'RUNNING'])
      .executeTakeFirst();
    return Number(res.numUpdatedRows) === 1;
  }

  // ---------------------------------------------------------------- BMC sessions

  async putBmcSession(s: { bmc_key: string; session_uri: string; token: string; conductor: string; created_at: string }): Promise<void> {
    const token = this.box ? this.box.seal(s.token) : s.token;
    await this.db
      .insertInto('bmc_sessions')
      .values({ ...s, token })
      .onConflict((oc) => oc.column('bmc_key').doUpdateSet({ session_uri: s.session_uri, token, conductor: s.conductor, created_at: s.created_at }))
      .execute();
  }

  async deleteBmcSession(key: string, uri?: string): Promise<void> {
    let q = this.db.deleteFrom('bmc_sessions').where('bmc_key', '=', key);
    if (uri !== undefined) q = q.where('session_uri', '=', uri);
    await q.execute();
  }

  async listBmcSessions(conductor: string): Promise<Array<{ bmc_key: string; session_uri: string; token: string; created_at: string }>> {
    const rows = await this.db.selectFrom('bmc_sessions').select(['bmc_key', 'session_uri', 'token', 'created_at']).where('conductor', '=', conductor).execute();
    const box = this.box;
    return box ? rows.map((r) => ({ ...r, token: isSealed(r.token) ? box.open(r.token) : r.token })) : rows;
  }
  /** Persisted sessions on these BMCs, whichever conductor holds them (a new owner adopts them). */
  async listBmcSessionsFor(keys: string[]): Promise<Array<{ bmc_key: string; session_uri: string; token: string; created_at: string; conductor: string }>> {
    const rows = await this.db.selectFrom('bmc_sessions').select(['bmc_key', 'session_uri', 'token', 'created_at', 'conductor']).where('bmc_key', 'in', keys.length ? keys : ['']).execute();
    const box = this.box;
    return box ? rows.map((r) => ({ ...r, token: isSealed(r.token) ? box.open(r.token) : r.token })) : rows;
  }

  /**
   * Seals every secret at rest that is not sealed with the primary key yet: values written before
   * sealing existed (upgrade) or sealed with an older key (`force`, key rotation). Returns the
   * number of rows rewritten. SQLite: the freed pages that held plaintext are vacuumed away.
   */
  async sealAtRest(force = false): Promise<number> {
    const box = this.box;
    if (!box) return 0;
    let changed = 0;
    const nodes = await this.db.selectFrom('nodes').select(['id', ...JSON_NODE_FIELDS]).execute();
    for (const r of nodes) {
      const patch: Record<string, string> = {};
      for (const f of JSON_NODE_FIELDS) {
        const next = JSON.stringify(box.sealDoc(parseSealed(r[f], box), force));
        if (next !== r[f]) patch[f] = next;
      }
      if (Object.keys(patch).length) {
        await this.db.updateTable('nodes').set(patch).where('id', '=', r.id).execute();
        changed++;
      }
    }
    const cmds = await this.db.selectFrom('agent_commands').select(['id', 'params']).execute();
    for (const r of cmds) {
      const next = JSON.stringify(box.sealDoc(parseSealed(r.params, box), force));
      if (next !== r.params) {
        await this.db.updateTable('agent_commands').set({ params: next }).where('id', '=', r.id).execute();
        changed++;
      }
    }
    const sessions = await this.db.selectFrom('bmc_sessions').select(['bmc_key', 'token']).execute();
    for (const r of sessions) {
      const next = isSealed(r.token) ? (force ? box.reseal(r.token) : r.token) : box.seal(r.token);
      if (next !== r.token) {
        await this.db.updateTable('bmc_sessions').set({ token: next }).where('bmc_key', '=', r.bmc_key).execute();
        changed++;
      }
    }
    const history = await this.db.selectFrom('node_history').select(['id', 'event']).where('event', 'like', '%://%').execute();
    for (const r of history) {
      const next = scrubText(r.event);
      if (next !== r.event) {
        await this.db.updateTable('node_history').set({ event: next }).where('id', '=', r.id).execute();
        changed++;
      }
    }
    if (changed && this.dialect === 'sqlite') {
      await sql`PRAGMA wal_checkpoint(TRUNCATE)`.execute(this.db);
      await sql`VACUUM`.execute(this.db);
      await sql`PRAGMA wal_checkpoint(TRUNCATE)`.execute(this.db);
    }
    return changed;
  }
}
