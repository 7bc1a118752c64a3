/**
 * driver_internal_info, typed: the conductor's own bookkeeping on a node (the running flow and its
 * wait, the agent's step lists, RAID results, the fast-track lease, firmware in flight, the retired
 * agent boot). One schema, parsed once per node object; every reader gets typed fields instead of
 * casting an untyped bag, and every writer goes through `InternalPatch` (null deletes a key). Keys
 * this schema does not know (drivers' own, or written by a newer version) are kept as they are.
 */
import { z } from 'zod';
import type { Node } from './db/store.js';
import { DriverError } from '../shared/errors.js';
import { targetRaidConfigSchema } from '../shared/raid-config.js';

const json = z.record(z.string(), z.unknown());

export const stepSchema = z.object({
  interface: z.string(),
  step: z.string(),
  priority: z.number(),
  args: json,
  /** Who runs it: the conductor itself, or the agent (as an agent command). */
  runner: z.enum(['conductor', 'agent']),
});
export type Step = z.infer<typeof stepSchema>;

export const waitSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('agent'), token: z.string(), since: z.string() }),
  /** boot_id: the agent boot the command was sent to (a new boot means the command is lost); expansion: the agent's step list. */
  z.object({ type: z.literal('command'), token: z.string(), command_id: z.string(), boot_id: z.string().optional(), expansion: z.boolean().optional() }),
  z.object({ type: z.literal('timer'), token: z.string(), until: z.string() }),
  z.object({ type: z.literal('hold'), token: z.string() }),
  z.object({ type: z.literal('power'), token: z.string(), target: z.enum(['power on', 'power off']), until: z.string() }),
]);
export type Wait = z.infer<typeof waitSchema>;

export const flowStateSchema = z.object({
  kind: z.enum(['deploy', 'clean', 'service']),
  manual: z.boolean(),
  steps: z.array(stepSchema),
  index: z.number().int(),
  /** Agent steps are only known once the agent answered get_clean/deploy_steps. */
  expanded: z.boolean(),
  fast_track: z.boolean(),
  started_at: z.string(),
  wait: waitSchema.nullable(),
});
export type FlowState = z.infer<typeof flowStateSchema>;

const currentStepSchema = z.object({ interface: z.string(), step: z.string(), priority: z.number(), args: json });
const firmwareComponent = z.enum(['bios', 'bmc']);

export const internalInfoSchema = z.looseObject({
  flow: flowStateSchema.optional(),
  clean_step: currentStepSchema.optional(),
  deploy_step: currentStepSchema.optional(),
  service_step: currentStepSchema.optional(),
  /** The agent's answer to get_clean_steps, flattened. */
  agent_clean_steps: z.array(json).optional(),
  /** The agent's answer to get_deploy_steps and the boot it came from (reused within that boot). */
  agent_deploy_steps: z.object({ boot_id: z.string().nullable(), steps: z.array(json) }).optional(),
  target_raid_config: targetRaidConfigSchema.optional(),
  raid_config: z.array(json).optional(),
  raid_root_device: z.string().nullable().optional(),
  fast_track_lease_until: z.string().optional(),
  retired_agent_boot_id: z.string().optional(),
  firmware_update: z.object({ task_uri: z.string(), component: firmwareComponent, image_url: z.string(), started_at: z.string() }).optional(),
  firmware_versions: z
    .object({ bios: z.string().nullable(), bmc: z.string().nullable(), updated_at: z.string(), last_version_flashed: z.object({ component: firmwareComponent, image_url: z.string() }).optional() })
    .optional(),
  /** The boot device last set through the BMC (redfish) or recorded by fake-hardware. */
  boot_device: z.object({ boot_device: z.string(), persistent: z.boolean() }).optional(),
  fake_boot_device: z.object({ boot_device: z.string(), persistent: z.boolean() }).optional(),
});
export type InternalInfo = z.infer<typeof internalInfoSchema>;

/** A change to driver_internal_info: a value sets the key, null deletes it. */
export type InternalPatch = { [K in keyof InternalInfo]?: InternalInfo[K] | null } & Record<string, unknown>;

const parsed = new WeakMap<object, InternalInfo>();

/** The node's driver_internal_info, typed (parsed once per node object; a corrupt key is named). */
export function internalInfo(node: Pick<Node, 'uuid' | 'driver_internal_info'>): InternalInfo {
  const doc = node.driver_internal_info;
  const hit = parsed.get(doc);
  if (hit) return hit;
  const r = internalInfoSchema.safeParse(doc);
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw new DriverError(`node ${node.uuid}: driver_internal_info.${i.path.join('.')}: ${i.message}`, { field: 'driver_internal_info' });
  }
  parsed.set(doc, r.data);
  return r.data;
}

/**
 * Is `key` set on the node, without parsing the document? For per-node checks on every sweep or
 * poll (power sync, the firmware monitor at 10k nodes): a full parse there cost CPU for nothing.
 */
export function hasInternal(node: Pick<Node, 'driver_internal_info'>, key: keyof InternalInfo): boolean {
  return node.driver_internal_info[key] !== undefined && node.driver_internal_info[key] !== null;
}

/** Applies a patch to a driver_internal_info document (a new object; null deletes). */
export function applyInternalPatch(doc: Record<string, unknown>, patch: InternalPatch): Record<string, unknown> {
  const next: Record<string, unknown> = { ...doc };
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete next[k];
    else if (v !== undefined) next[k] = v;
  }
  return next;
}
