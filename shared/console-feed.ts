/**
 * The console's wire format, shared by the conductor (conductor/console/) and the browser
 * (console/): one tuple per node, the field positions the snapshot names, and the panel samples.
 * No imports, so the browser build can read it as it is.
 */
export type FeedRow = [id: number, uuid: string, name: string | null, group: string, provision: string, power: string | null, maintenance: 0 | 1, health: string | null, agent: 0 | 1, bmc: string, owner: string];

/** The positions of FeedRow, sent with the snapshot so the browser never hard-codes them. */
export const ROW_FIELDS = ['id', 'uuid', 'name', 'group', 'provision', 'power', 'maintenance', 'health', 'agent', 'bmc', 'owner'] as const;

export interface SweepPoint {
  t: number;
  ms: number;
  nodes: number;
  failed: number;
  errors: Record<string, number>;
}

export interface PanelSample {
  t: number;
  agents: number;
  sessions: number;
  breakers_open: number;
  bmc_requests: number;
  bmc_errors: number;
  bmc_retries: number;
  logins: number;
  deploys_in_flight: number;
  /** Deploys that reached active in the last minute. */
  deploys_per_min: number;
  /** Sum of the image-write rates the agents reported in the last 5 s. */
  write_bytes_per_s: number;
  /** The latest sweep, for the error-by-code panel. */
  sweep: SweepPoint | null;
}
