/** Node records: create, find, list, update (guarded by expected state), delete; node locks; agent token and liveness. */
import { sql, type Selectable } from 'kysely';
import type { NodesTable } from './schema.js';
import { scrubText } from '../../shared/redact.js';
import { ConflictError } from '../../shared/errors.js';
import { channels, publish, type NodeRowMessage } from '../events.js';
import { JSON_NODE_FIELDS, StoreBase, isUniqueViolation, now, type Db, type Json, type ListNodesOptions, type Node, type NodeCreate, type NodeUpdate } from './store-base.js';

const EMPTY: Json = Object.freeze({});

/** Low-cardinality texts (states, driver, group, health) shared by every sweep node that holds them. */
const interned = new Map<string, string>();
const intern = (v: string | null): string | null => {
  if (v === null) return v;
  const k = interned.get(v);
  if (k !== undefined) return k;
  // Bounded: a fleet has a handful of each; free-form values past this are simply not shared.
  if (interned.size < 4096) interned.set(v, v);
  return v;
};

type SweepRow = Omit<Selectable<NodesTable>, 'row_version' | 'properties' | 'instance_info' | 'extra'>;

/**
 * A sweep node, every field written out in one literal. Why not `{ ...row, ... }` of the row left
 * after taking row_version out: that rest object is in dictionary mode, and freezing it gave each of
 * 10,000 nodes a hidden class of its own — about 1 KiB of map and descriptors per node, in the heap
 * every major GC of the main thread marks.
 */
function sweepNode(r: SweepRow, driver_info: Json, driver_internal_info: Json): Node {
  return Object.freeze({
    id: r.id, uuid: r.uuid, name: r.name, driver: intern(r.driver)!, driver_info, properties: EMPTY, instance_info: EMPTY, driver_internal_info, extra: EMPTY,
    instance_uuid: r.instance_uuid, resource_class: intern(r.resource_class), provision_state: intern(r.provision_state)!, target_provision_state: intern(r.target_provision_state),
    power_state: intern(r.power_state), target_power_state: intern(r.target_power_state), maintenance: Boolean(r.maintenance), maintenance_reason: r.maintenance_reason, fault: intern(r.fault),
    last_error: r.last_error, reservation: r.reservation, conductor_group: intern(r.conductor_group)!, health: intern(r.health), agent_token_hash: r.agent_token_hash,
    agent_boot_id: r.agent_boot_id, agent_last_seen: r.agent_last_seen, provision_updated_at: r.provision_updated_at, created_at: r.created_at, updated_at: r.updated_at,
  });
}
/** Rows read per statement when a sweep listing re-reads changed nodes (well under both dialects' bound-parameter limits). */
const SWEEP_READ_CHUNK = 500;

export class NodeStore extends StoreBase {
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
    const node = (await this.getNodeByUuid(input.uuid))!;
    publish<NodeRowMessage>(channels.nodeRow, { node });
    return node;
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

  /** Per node id: the node as the last sweep listing built it, and the row version it came from. */
  private sweepRows = new Map<number, { version: number; di: string; dii: string; node: Node }>();
  /** The last listing itself: handed back as is while no row moved (a steady fleet's sweeps). */
  private sweepList: readonly Node[] = [];
  /** The table's change key (tableChangeKey) when sweepList was built or last confirmed. */
  private sweepKey = '';

  /**
   * One row that moves on any insert, update or delete of a node: count, highest id, sum of row
   * versions. Enough because ids are never reused (AUTOINCREMENT, serial: a surviving insert raises
   * the highest id), a delete alone lowers the count, and every UPDATE bumps its row's version
   * (migration 0005). Not a counter row of its own: every node write of every conductor would
   * contend on it. Compared as text (PostgreSQL answers bigint and numeric as strings).
   */
  private async tableChangeKey(): Promise<string> {
    const r = await this.db.selectFrom('nodes').select((eb) => [eb.fn.countAll().as('n'), eb.fn.max('id').as('top'), eb.fn.sum('row_version').as('versions')]).executeTakeFirstOrThrow();
    return `${r.n}:${r.top ?? ''}:${r.versions ?? ''}`;
  }

  /**
   * Every node, for the periodic sweeps (power sync, sensors). While the table's change key has not
   * moved it hands back the last list without listing anything. Else it lists only (id, row_version) and
   * reads whole rows for the nodes whose version moved since the last listing (new, or written by
   * anyone: the database bumps the version, migration 0005); the others come back as the very same
   * frozen objects, so callers can cache what they derive from them by identity. Of a re-read row,
   * driver_info and driver_internal_info are parsed and opened again only when their text changed;
   * properties, instance_info and extra are not read at all (empty). Why: at 10,000 nodes, reading,
   * decrypting and parsing every row on every sweep was most of the conductor's main-thread CPU.
   * Read-only: reload a node before acting on it.
   */
  async listNodesForSweep(): Promise<Node[]> {
    // Taken before the listing: a write landing between the two changes the key again, so the next
    // sweep lists once more (never the other way round: a key newer than the list it vouches for).
    const key = await this.tableChangeKey();
    if (key === this.sweepKey) return this.sweepList as Node[];
    const versions = await this.db.selectFrom('nodes').select(['id', 'row_version']).orderBy('id').execute();
    const prev = this.sweepRows;
    const stale: number[] = [];
    for (const v of versions) {
      const c = prev.get(v.id);
      if (!c || c.version !== v.row_version) stale.push(v.id);
    }
    if (!stale.length && versions.length === prev.size) {
      this.sweepKey = key;
      return this.sweepList as Node[];
    }
    const next = new Map<number, { version: number; di: string; dii: string; node: Node }>();
    for (const v of versions) {
      const c = prev.get(v.id);
      if (c && c.version === v.row_version) next.set(v.id, c);
    }
    for (let i = 0; i < stale.length; i += SWEEP_READ_CHUNK) {
      const rows = await this.db
        .selectFrom('nodes')
        .select(['id', 'row_version', 'uuid', 'name', 'driver', 'driver_info', 'driver_internal_info', 'instance_uuid', 'resource_class', 'provision_state', 'target_provision_state', 'power_state', 'target_power_state', 'maintenance', 'maintenance_reason', 'fault', 'last_error', 'reservation', 'conductor_group', 'health', 'agent_token_hash', 'agent_boot_id', 'agent_last_seen', 'provision_updated_at', 'created_at', 'updated_at'])
        .where('id', 'in', stale.slice(i, i + SWEEP_READ_CHUNK))
        .execute();
      for (const { row_version: version, ...r } of rows) {
        const c = prev.get(r.id);
        const driver_info = c && c.di === r.driver_info ? c.node.driver_info : Object.freeze(this.parseDoc(r.driver_info));
        const driver_internal_info = c && c.dii === r.driver_internal_info ? c.node.driver_internal_info : Object.freeze(this.parseDoc(r.driver_internal_info));
        const node = sweepNode(r, driver_info, driver_internal_info);
        next.set(r.id, { version, di: r.driver_info, dii: r.driver_internal_info, node });
      }
    }
    this.sweepRows = next;
    // In id order, as listed (a row deleted between the two reads is simply absent).
    const out: Node[] = [];
    for (const v of versions) {
      const c = next.get(v.id);
      if (c) out.push(c.node);
    }
    this.sweepList = Object.freeze(out);
    this.sweepKey = key;
    return out;
  }

  /**
   * Nodes whose driver_internal_info holds `key` (e.g. a firmware update in flight). The text test
   * runs in the database (keys are stored in clear; sealing covers values), so a poll every few
   * seconds does not open and parse every node of the fleet to find the few it wants.
   */
  async listNodesWithInternal(key: string): Promise<Node[]> {
    const rows = await this.db.selectFrom('nodes').selectAll().where('driver_internal_info', 'like', `%"${key.replace(/[%"\\]/g, '')}"%`).execute();
    // The text test can match a value elsewhere that merely contains "key": the parsed document decides.
    return rows.map((r) => this.toNode(r)).filter((n) => n.driver_internal_info[key] !== undefined && n.driver_internal_info[key] !== null);
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

  protected nodeUpdateRow(patch: NodeUpdate): Record<string, unknown> {
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
      return r && this.published(this.toNode(r));
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
    publish<NodeRowMessage>(channels.nodeRow, { deleted: id });
  }

  /** Tells observers (the console feed) a row was written; the row itself is the message. */
  private published(node: Node): Node {
    publish<NodeRowMessage>(channels.nodeRow, { node });
    return node;
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
}
