/**
 * The data layer: every read and write of conductor state goes through Store. Callers deal in
 * domain objects (JSON parsed, booleans real); rows never leave this module.
 */
import { randomUUID } from 'node:crypto';
import { sql, type Kysely, type Transaction } from 'kysely';
import type { AgentCommandRow, Database, DeferredActionRow, HistoryRow, NodeRow, PortRow } from './schema.js';
import type { OpenedDb } from './database.js';
import { isSealed, type SecretBox } from '../secret-box.js';
import { scrubSecrets, scrubText } from '../../shared/redact.js';
import type { SqlDialect } from './migrations.js';
import { ConflictError } from '../../shared/errors.js';

export type Json = Record<string, unknown>;

export type DeferredState = 'CREATED' | 'RUNNING' | 'COMPLETED' | 'PENDING_RETRY' | 'FAILED';
/** A deferred_actions row with its state typed and its arguments parsed. */
export type DeferredAction = Omit<DeferredActionRow, 'state' | 'arguments'> & { state: DeferredState; arguments: Json };

function toDeferred(r: DeferredActionRow): DeferredAction {
  return { ...r, state: r.state as DeferredState, arguments: JSON.parse(r.arguments) as Json };
}

export interface Node {
  id: number;
  uuid: string;
  name: string | null;
  driver: string;
  driver_info: Json;
  properties: Json;
  instance_info: Json;
  driver_internal_info: Json;
  extra: Json;
  instance_uuid: string | null;
  resource_class: string | null;
  provision_state: string;
  target_provision_state: string | null;
  power_state: string | null;
  target_power_state: string | null;
  maintenance: boolean;
  maintenance_reason: string | null;
  fault: string | null;
  last_error: string | null;
  reservation: string | null;
  conductor_group: string;
  health: string | null;
  agent_token_hash: string | null;
  agent_boot_id: string | null;
  agent_last_seen: string | null;
  provision_updated_at: string | null;
  created_at: string;
  updated_at: string | null;
}

export interface Port {
  id: number;
  uuid: string;
  address: string;
  node_id: number;
  extra: Json;
  pxe_enabled: boolean;
  local_link_connection: Json;
  physical_network: string | null;
  created_at: string;
  updated_at: string | null;
}

export interface HistoryEvent {
  uuid: string;
  node_id: number;
  conductor: string | null;
  event: string;
  event_type: string;
  severity: string;
  user: string | null;
  created_at: string;
}

export interface AgentCommand {
  id: string;
  node_id: number;
  name: string;
  params: Json;
  status: 'PENDING' | 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'CANCELLED';
  result: Json | null;
  error: { code: string; message: string; details?: string } | null;
  progress: Json | null;
  created_at: string;
  updated_at: string | null;
}

const JSON_NODE_FIELDS = ['driver_info', 'properties', 'instance_info', 'driver_internal_info', 'extra'] as const;

export const now = (): string => new Date().toISOString();

function parseJson<T>(text: string | null): T {
  return (text === null ? null : JSON.parse(text)) as T;
}

/** Opens sealed values only in documents that hold one (a substring test is far cheaper than a walk). */
function parseSealed<T>(text: string | null, box: SecretBox | undefined): T {
  const v = parseJson<T>(text);
  return box && text !== null && text.includes('enc:v1:') ? box.openDoc(v) : v;
}

function toNode(r: NodeRow, box?: SecretBox): Node {
  return {
    ...r,
    driver_info: parseSealed(r.driver_info, box),
    properties: parseSealed(r.properties, box),
    instance_info: parseSealed(r.instance_info, box),
    driver_internal_info: parseSealed(r.driver_internal_info, box),
    extra: parseSealed(r.extra, box),
    maintenance: Boolean(r.maintenance),
  };
}

function toPort(r: PortRow): Port {
  return { ...r, extra: parseJson(r.extra), local_link_connection: parseJson(r.local_link_connection), pxe_enabled: Boolean(r.pxe_enabled) };
}

function toCommand(r: AgentCommandRow, box?: SecretBox): AgentCommand {
  return {
    ...r,
    params: parseSealed(r.params, box),
    status: r.status as AgentCommand['status'],
    result: parseJson(r.result),
    error: parseJson(r.error),
    progress: parseJson(r.progress),
  };
}

function isUniqueViolation(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  return e?.code === '23505' || e?.code === 'SQLITE_CONSTRAINT_UNIQUE' || /UNIQUE constraint failed/.test(e?.message ?? '');
}

export type NodeCreate = Pick<Node, 'uuid' | 'driver' | 'provision_state'> &
  Partial<Omit<Node, 'id' | 'uuid' | 'driver' | 'provision_state' | 'created_at' | 'updated_at'>>;

export type NodeUpdate = Partial<Omit<Node, 'id' | 'uuid' | 'created_at'>>;

export interface ListNodesOptions {
  limit?: number;
  markerId?: number;
  sortKey?: 'id' | 'created_at' | 'updated_at' | 'name' | 'provision_state' | 'uuid';
  sortDir?: 'asc' | 'desc';
  provisionState?: string;
  maintenance?: boolean;
  driver?: string;
  conductorGroup?: string;
  associated?: boolean;
}

type Db = Kysely<Database> | Transaction<Database>;

export class Store {
  readonly db: Kysely<Database>;
  readonly dialect: SqlDialect;
  /** Inserts per node since its history was last pruned. */
  private readonly historyInserts = new Map<number, number>();

  private readonly toNode: (r: NodeRow) => Node;
  private readonly toCommand: (r: AgentCommandRow) => AgentCommand;

  /**
   * `box`: seals secrets at rest (secret-box.ts) in the nodes' JSON documents, agent command
   * parameters and BMC session tokens. Without it values are stored as given (unit tests).
   */
  constructor(
    private readonly opened: OpenedDb,
    readonly box?: SecretBox,
  ) {
    this.db = opened.db;
    this.dialect = opened.dialect;
    this.toNode = (r) => toNode(r, box);
    this.toCommand = (r) => toCommand(r, box);
  }

  /** JSON text of a document, with its secrets sealed. */
  private sealJson(doc: unknown): string {
    return JSON.stringify(this.box ? this.box.sealDoc(doc) : doc);
  }

  close(): Promise<void> {
    return this.opened.close();
  }

  // ---------------------------------------------------------------- nodes

  async createNode(input: NodeCreate): Promise<Node> {
    const ts = now();
    const row = {
      uuid: input.uuid,
      name: input.name ?? null,
      driver: input.driver,
      driver_info: this.sealJson(input.driver_info ?? {}),
      properties: this.sealJson(input.properties ?? {}),
      instance_info: this.sealJson(input.instance_info ?? {}),
      driver_internal_info: this.sealJson(input.driver_internal_info ?? {}),
      extra: this.sealJson(input.extra ?? {}),
      instance_uuid: input.instance_uuid ?? null,
      resource_class: input.resource_class ?? null,
      provision_state: input.provision_state,
      target_provision_state: input.target_provision_state ?? null,
      power_state: input.power_state ?? null,
      target_power_state: null,
      maintenance: input.maintenance ? 1 : 0,
      maintenance_reason: input.maintenance_reason ?? null,
      fault: null,
      last_error: null,
      reservation: null,
      conductor_group: input.conductor_group ?? '',
      health: input.health ?? null,
      agent_token_hash: null,
      agent_boot_id: null,
      agent_last_seen: null,
      provision_updated_at: ts,
      created_at: ts,
      updated_at: null,
    };
    try {
      await this.db.insertInto('nodes').values(row).execute();
    } catch (err) {
      if (isUniqueViolation(err)) {
        const what = input.name && (await this.findNode(input.name)) ? `name ${input.name}` : `uuid ${input.uuid}`;
        throw new ConflictError(`A node with ${what} already exists.`, { field: what.split(' ')[0] });
      }
      throw err;
    }
    return (await this.getNodeByUuid(input.uuid))!;
  }

  async getNodeByUuid(uuid: string, db: Db = this.db): Promise<Node | undefined> {
    const r = await db.selectFrom('nodes').selectAll().where('uuid', '=', uuid).executeTakeFirst();
    return r && this.toNode(r);
  }

  async getNodeById(id: number, db: Db = this.db): Promise<Node | undefined> {
    const r = await db.selectFrom('nodes').selectAll().where('id', '=', id).executeTakeFirst();
    return r && this.toNode(r);
  }

  /**
   * By UUID or by name (Ironic accepts either in URLs). A UUID-shaped ident is only ever a UUID
   * (names may not look like one), so one node can never shadow another through its name.
   */
  async findNode(ident: string): Promise<Node | undefined> {
    if (/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(ident)) return this.getNodeByUuid(ident);
    const r = await this.db.selectFrom('nodes').selectAll().where('name', '=', ident).executeTakeFirst();
    return r && this.toNode(r);
  }

  async listNodes(o: ListNodesOptions = {}): Promise<Node[]> {
    const sortKey = o.sortKey ?? 'id';
    const dir = o.sortDir ?? 'asc';
    let q = this.db.selectFrom('nodes').selectAll();
    if (o.provisionState !== undefined) q = q.where('provision_state', '=', o.provisionState);
    if (o.maintenance !== undefined) q = q.where('maintenance', '=', o.maintenance ? 1 : 0);
    if (o.driver !== undefined) q = q.where('driver', '=', o.driver);
    if (o.conductorGroup !== undefined) q = q.where('conductor_group', '=', o.conductorGroup);
    if (o.associated !== undefined) q = q.where('instance_uuid', o.associated ? 'is not' : 'is', null);
    // Nullable sort keys sort as '' so that order and marker paging agree on both dialects
    // (SQLite puts NULLs first, PostgreSQL last).
    const key = sortKey === 'id' ? sql.ref('id') : sql`coalesce(${sql.ref(sortKey)}, '')`;
    if (o.markerId !== undefined) {
      if (sortKey === 'id') {
        q = q.where('id', dir === 'asc' ? '>' : '<', o.markerId);
      } else {
        const marker = await this.getNodeById(o.markerId);
        if (marker) {
          const mv = String(marker[sortKey] ?? '');
          const op = dir === 'asc' ? '>' : '<';
          q = q.where((eb) => eb.or([eb(key, op, mv), eb.and([eb(key, '=', mv), eb('id', op, o.markerId!)])]));
        }
      }
    }
    q = q.orderBy(key, dir);
    if (sortKey !== 'id') q = q.orderBy('id', dir);
    if (o.limit !== undefined) q = q.limit(o.limit);
    return (await q.execute()).map(this.toNode);
  }

  /** Nodes whose provision state is one of `states`. */
  async countNodesInStates(states: string[]): Promise<number> {
    const r = await this.db.selectFrom('nodes').select((eb) => eb.fn.countAll<number>().as('n')).where('provision_state', 'in', states).executeTakeFirst();
    return Number(r?.n ?? 0);
  }

  async countNodes(): Promise<number> {
    const r = await this.db.selectFrom('nodes').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    return Number(r.n);
  }

  private nodeUpdateRow(patch: NodeUpdate): Record<string, unknown> {
    const row: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(patch)) {
      if (v === undefined) continue;
      if ((JSON_NODE_FIELDS as readonly string[]).includes(k)) row[k] = this.sealJson(v);
      else if ((k === 'last_error' || k === 'maintenance_reason') && typeof v === 'string') row[k] = scrubText(v);
      else if (k === 'maintenance') row[k] = v ? 1 : 0;
      else row[k] = v;
    }
    if (patch.provision_state !== undefined) row.provision_updated_at = now();
    row.updated_at = now();
    return row;
  }

  /**
   * Update a node. With `expect`, the write only happens when those columns still hold the given
   * values (compare-and-set); returns the updated node or undefined when the guard failed.
   */
  async updateNode(id: number, patch: NodeUpdate, expect: Partial<Pick<Node, 'provision_state' | 'reservation'>> = {}, db: Db = this.db): Promise<Node | undefined> {
    let q = db.updateTable('nodes').set(this.nodeUpdateRow(patch)).where('id', '=', id);
    if (expect.provision_state !== undefined) q = q.where('provision_state', '=', expect.provision_state);
    if (expect.reservation !== undefined) q = q.where('reservation', expect.reservation === null ? 'is' : '=', expect.reservation);
    try {
      const r = await q.returningAll().executeTakeFirst();
      return r && this.toNode(r);
    } catch (err) {
      if (isUniqueViolation(err)) throw new ConflictError(`A node with name ${patch.name} already exists.`, { field: 'name' });
      throw err;
    }
  }

  async deleteNode(id: number): Promise<void> {
    await this.db.transaction().execute(async (tx) => {
      await tx.deleteFrom('ports').where('node_id', '=', id).execute();
      await tx.deleteFrom('node_history').where('node_id', '=', id).execute();
      await tx.deleteFrom('node_inventory').where('node_id', '=', id).execute();
      await tx.deleteFrom('agent_commands').where('node_id', '=', id).execute();
      await tx.deleteFrom('deferred_actions').where('node_id', '=', id).execute();
      await tx.deleteFrom('nodes').where('id', '=', id).execute();
    });
  }

  // ---------------------------------------------------------------- locks

  /** Atomic reservation: takes the node's lock if it is free; the locked node, or undefined when someone holds it. */
  async reserveNode(id: number, holder: string): Promise<Node | undefined> {
    const r = await this.db.updateTable('nodes').set({ reservation: holder }).where('id', '=', id).where('reservation', 'is', null).returningAll().executeTakeFirst();
    return r && this.toNode(r);
  }

  async releaseNode(id: number, holder: string): Promise<boolean> {
    const res = await this.db
      .updateTable('nodes')
      .set({ reservation: null })
      .where('id', '=', id)
      .where('reservation', '=', holder)
      .executeTakeFirst();
    return Number(res.numUpdatedRows) === 1;
  }

  /** Clears every reservation held by `holder` (at startup: locks of our previous life). */
  async clearReservations(holder: string): Promise<number> {
    const res = await this.db.updateTable('nodes').set({ reservation: null }).where('reservation', '=', holder).executeTakeFirst();
    return Number(res.numUpdatedRows);
  }

  // ---------------------------------------------------------------- agent token

  /** Issues the per-boot token: only when none is set (two racing lookups cannot both win). */
  async setAgentToken(id: number, hash: string, bootId: string): Promise<boolean> {
    const res = await this.db
      .updateTable('nodes')
      .set({ agent_token_hash: hash, agent_boot_id: bootId, agent_last_seen: now(), updated_at: now() })
      .where('id', '=', id)
      .where('agent_token_hash', 'is', null)
      .executeTakeFirst();
    return Number(res.numUpdatedRows) === 1;
  }

  /** Wipes the agent token (power off / reboot / node teardown), as Ironic does. */
  async clearAgentToken(id: number): Promise<void> {
    await this.db.updateTable('nodes').set({ agent_token_hash: null, agent_boot_id: null, updated_at: now() }).where('id', '=', id).execute();
  }

  // ---------------------------------------------------------------- agent liveness

  async setAgentSeen(batch: Array<{ id: number; seen: string }>): Promise<void> {
    if (batch.length === 0) return;
    await this.db.transaction().execute(async (tx) => {
      // Group by timestamp second so one UPDATE covers many nodes.
      const byTs = new Map<string, number[]>();
      for (const { id, seen } of batch) {
        const list = byTs.get(seen) ?? [];
        list.push(id);
        byTs.set(seen, list);
      }
      for (const [seen, ids] of byTs) {
        for (let i = 0; i < ids.length; i += 500) {
          await tx.updateTable('nodes').set({ agent_last_seen: seen }).where('id', 'in', ids.slice(i, i + 500)).execute();
        }
      }
    });
  }

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
  async ping(): Promise<void> {
    await sql`select 1`.execute(this.db);
  }
}
