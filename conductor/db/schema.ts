/**
 * Table types for Kysely. Column types are chosen to be identical on SQLite and PostgreSQL so
 * there is one code path: JSON documents are TEXT, booleans are INTEGER 0/1, timestamps are
 * ISO-8601 TEXT (UTC, millisecond precision; they sort lexically).
 */
import type { Generated, Selectable, Insertable, Updateable } from 'kysely';

export interface NodesTable {
  id: Generated<number>;
  uuid: string;
  name: string | null;
  driver: string;
  driver_info: string;
  properties: string;
  instance_info: string;
  driver_internal_info: string;
  extra: string;
  instance_uuid: string | null;
  resource_class: string | null;
  provision_state: string;
  target_provision_state: string | null;
  power_state: string | null;
  target_power_state: string | null;
  maintenance: number;
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
  /** Bumped by the database on every update of the row (migration 0005); internal, never in a Node. */
  row_version: Generated<number>;
}

export interface PortsTable {
  id: Generated<number>;
  uuid: string;
  address: string;
  node_id: number;
  extra: string;
  pxe_enabled: number;
  local_link_connection: string;
  physical_network: string | null;
  created_at: string;
  updated_at: string | null;
}

export interface NodeHistoryTable {
  id: Generated<number>;
  uuid: string;
  node_id: number;
  conductor: string | null;
  event: string;
  event_type: string;
  severity: string;
  user: string | null;
  created_at: string;
}

export interface NodeInventoryTable {
  node_id: number;
  inventory: string;
  plugin_data: string;
  created_at: string;
  updated_at: string | null;
}

export interface AgentCommandsTable {
  id: string;
  node_id: number;
  name: string;
  params: string;
  status: string;
  result: string | null;
  error: string | null;
  progress: string | null;
  created_at: string;
  updated_at: string | null;
}

export interface BmcSessionsTable {
  bmc_key: string;
  session_uri: string;
  token: string;
  conductor: string;
  created_at: string;
}

export interface DeferredActionsTable {
  uuid: string;
  node_id: number;
  state: string;
  call: string;
  arguments: string;
  start_after: string;
  retry_remaining: number;
  conductor: string | null;
  created_by: string | null;
  result: string | null;
  created_at: string;
  updated_at: string | null;
}

export interface ConductorsTable {
  hostname: string;
  conductor_group: string;
  api_url: string | null;
  agent_address: string | null;
  version: string;
  protocol: number;
  instance: string;
  pid: number;
  started_at: string;
  heartbeat_ms: number;
  state: string;
}

export interface Database {
  conductors: ConductorsTable;
  deferred_actions: DeferredActionsTable;
  bmc_sessions: BmcSessionsTable;
  nodes: NodesTable;
  ports: PortsTable;
  node_history: NodeHistoryTable;
  node_inventory: NodeInventoryTable;
  agent_commands: AgentCommandsTable;
}

export type NodeRow = Selectable<NodesTable>;
export type NewNodeRow = Insertable<NodesTable>;
export type NodeRowUpdate = Updateable<NodesTable>;
export type PortRow = Selectable<PortsTable>;
export type HistoryRow = Selectable<NodeHistoryTable>;
export type AgentCommandRow = Selectable<AgentCommandsTable>;
export type DeferredActionRow = Selectable<DeferredActionsTable>;
