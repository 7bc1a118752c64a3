/**
 * The conductor's diagnostics channels (node:diagnostics_channel, as undici publishes its
 * request lifecycle): components publish what happened, observers — the Prometheus registry, tests,
 * a future console — subscribe, and nobody reaches into another component's objects to find out.
 * Publishing to a channel without subscribers costs one property check.
 */
import diagnostics_channel from 'node:diagnostics_channel';
import type { Node } from './db/store-base.js';

/** One power sync sweep (GET /v1/… lab dashboards and /metrics read it). */
export interface SweepReport {
  started_at: string;
  duration_ms: number;
  nodes: number;
  skipped: number;
  ok: number;
  /** Of `ok`: read in exactly their recorded state, so only counted by the BMC threads (no item came back). */
  unchanged: number;
  failed: number;
  changed_power: number;
  changed_health: number;
  entered_maintenance: number;
  recovered: number;
  errors_by_code: Record<string, number>;
}

/** A node moved in the provision state machine. */
export interface NodeStateMessage {
  node: string;
  event: string;
  from: string;
  to: string;
}

/** One node's sensors were read (temperatures and fans that reported a value). */
export interface SensorReadingMessage {
  node: string;
  name: string;
  temperatures: Array<{ name: string; celsius: number }>;
  fans: Array<{ name: string; rpm: number }>;
  power_watts: number | null;
}

/** A node row was written (created or updated: the row as stored) or deleted (its id only). */
export type NodeRowMessage = { node: Node } | { deleted: number };

/** Power sync's verdict on one BMC changed: reachable again, or the first failure of a run. */
export interface BmcReachabilityMessage {
  node: string;
  ok: boolean;
  code: string | null;
}

/** An agent reported progress on a command (bytes written, rate, ETA). */
export interface AgentProgressMessage {
  nodeId: number;
  commandId: string;
  progress: Record<string, unknown>;
}

export const channels = {
  /** NodeRowMessage: every write of a node row (the console's live map follows it). */
  nodeRow: diagnostics_channel.channel('ironfleet:node:row'),
  /** BmcReachabilityMessage: published on changes only, never once per node per sweep. */
  bmcReachability: diagnostics_channel.channel('ironfleet:power-sync:reachability'),
  /** TakeoverMessage (cluster/takeover.ts): this conductor took over a dead one's nodes. */
  takeover: diagnostics_channel.channel('ironfleet:cluster:takeover'),
  /** AgentProgressMessage */
  agentProgress: diagnostics_channel.channel('ironfleet:agent:progress'),
  /** NodeStateMessage */
  nodeState: diagnostics_channel.channel('ironfleet:node:state'),
  /** SweepReport: a power sync sweep finished. */
  powerSweep: diagnostics_channel.channel('ironfleet:power-sync:sweep'),
  /** SensorReadingMessage */
  sensorReading: diagnostics_channel.channel('ironfleet:sensors:reading'),
  /** { outcome: string } per node and attempt (ok, an error code, bad_driver_info). */
  sensorOutcome: diagnostics_channel.channel('ironfleet:sensors:outcome'),
  /** { ms: number }: one sensor batch finished. */
  sensorBatch: diagnostics_channel.channel('ironfleet:sensors:batch'),
  /** { node: string }: a node left the sensor collection (deleted, maintenance, undeployed). */
  sensorForget: diagnostics_channel.channel('ironfleet:sensors:forget'),
} as const;

export function publish<T>(ch: diagnostics_channel.Channel, msg: T): void {
  if (ch.hasSubscribers) ch.publish(msg);
}
