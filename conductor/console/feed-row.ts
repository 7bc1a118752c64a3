/**
 * One node as the console's map needs it. A tuple, not an object: 10,000 of them are the snapshot,
 * and field names would be most of its bytes. The browser reads them by the same positions.
 */
export type FeedRow = [id: number, uuid: string, name: string | null, group: string, provision: string, power: string | null, maintenance: 0 | 1, health: string | null, agent: 0 | 1, bmc: string, owner: string];

/** The positions of FeedRow, sent with the snapshot so the browser never hard-codes them. */
export const ROW_FIELDS = ['id', 'uuid', 'name', 'group', 'provision', 'power', 'maintenance', 'health', 'agent', 'bmc', 'owner'] as const;
