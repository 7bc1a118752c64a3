/**
 * The data layer's base: the domain types (Node, Port, AgentCommand, DeferredAction, …), row ↔
 * object conversion (JSON parsed, booleans real, secrets opened) and the connection the record
 * classes share. `Store` (store.ts) is the one class callers use; its methods are split by record
 * kind over node-store.ts, record-store.ts and store.ts so no file holds them all.
 */
import { sql, type Kysely, type Transaction } from 'kysely';
import type { AgentCommandRow, Database, DeferredActionRow, HistoryRow, NodeRow, PortRow } from './schema.js';
import type { OpenedDb } from './database.js';
import { type SecretBox } from '../secret-box.js';
import type { SqlDialect } from './migrations.js';

export type Json = Record<string, unknown>;

export type DeferredState = 'CREATED' | 'RUNNING' | 'COMPLETED' | 'PENDING_RETRY' | 'FAILED';
/** A deferred_actions row with its state typed and its arguments parsed. */
export type DeferredAction = Omit<DeferredActionRow, 'state' | 'arguments'> & { state: DeferredState; arguments: Json };

export function toDeferred(r: DeferredActionRow): DeferredAction {
  return { ...r, state: r.state as DeferredState, arguments: JSON.parse(r.arguments) as Json };
}

/**
 * A node as callers see it: its row with the JSON documents parsed (and opened) and maintenance a
 * boolean. Derived from the table type, so a new column appears here without a second definition.
 */
export type Node = Omit<NodeRow, JsonNodeField | 'maintenance' | 'row_version'> & { [K in JsonNodeField]: Json } & { maintenance: boolean };

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

/** A history row as callers see it (the table's own shape, without its internal id). */
export type HistoryEvent = Omit<HistoryRow, 'id'>;

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

export const JSON_NODE_FIELDS = ['driver_info', 'properties', 'instance_info', 'driver_internal_info', 'extra'] as const;
type JsonNodeField = (typeof JSON_NODE_FIELDS)[number];

export const now = (): string => new Date().toISOString();

export function parseJson<T>(text: string | null): T {
  return (text === null ? null : JSON.parse(text)) as T;
}

/** Opens sealed values only in documents that hold one (a substring test is far cheaper than a walk). */
export function parseSealed<T>(text: string | null, box: SecretBox | undefined): T {
  const v = parseJson<T>(text);
  return box && text !== null && text.includes('enc:v1:') ? box.openDoc(v) : v;
}

export function toNode(row: NodeRow, box?: SecretBox): Node {
  const { row_version: _version, ...r } = row;
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

export function toPort(r: PortRow): Port {
  return { ...r, extra: parseJson(r.extra), local_link_connection: parseJson(r.local_link_connection), pxe_enabled: Boolean(r.pxe_enabled) };
}

export function toCommand(r: AgentCommandRow, box?: SecretBox): AgentCommand {
  return {
    ...r,
    params: parseSealed(r.params, box),
    status: r.status as AgentCommand['status'],
    result: parseJson(r.result),
    error: parseJson(r.error),
    progress: parseJson(r.progress),
  };
}

export function isUniqueViolation(err: unknown): boolean {
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

export type Db = Kysely<Database> | Transaction<Database>;


export class StoreBase {
  readonly db: Kysely<Database>;
  readonly dialect: SqlDialect;
  /** Inserts per node since its history was last pruned. */
  protected readonly historyInserts = new Map<number, number>();

  protected readonly toNode: (r: NodeRow) => Node;
  /** One stored JSON document, parsed and its sealed values opened. */
  protected readonly parseDoc: (text: string | null) => Json;
  protected readonly toCommand: (r: AgentCommandRow) => AgentCommand;

  /**
   * `box`: seals secrets at rest (secret-box.ts) in the nodes' JSON documents, agent command
   * parameters and BMC session tokens. Without it values are stored as given (unit tests).
   */
  constructor(
    protected readonly opened: OpenedDb,
    readonly box?: SecretBox,
  ) {
    this.db = opened.db;
    this.dialect = opened.dialect;
    this.toNode = (r) => toNode(r, box);
    this.parseDoc = (text) => parseSealed<Json>(text, box);
    this.toCommand = (r) => toCommand(r, box);
  }

  /** JSON text of a document, with its secrets sealed. */
  protected sealJson(doc: unknown): string {
    return JSON.stringify(this.box ? this.box.sealDoc(doc) : doc);
  }

  close(): Promise<void> {
    return this.opened.close();
  }

  async ping(): Promise<void> {
    await sql`select 1`.execute(this.db);
  }
}
