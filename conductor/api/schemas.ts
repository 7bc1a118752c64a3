/** zod schemas for every API body and query (the OpenAPI document is generated from these). */
import { z } from 'zod';

const dict = z.record(z.string(), z.unknown());
const UUID_LIKE = /^[0-9a-f]{8}-[0-9a-f]{4}-/i;
/** Ironic's logical names; never UUID-shaped (an ident that looks like a UUID is looked up as one). */
const logicalName = z
  .string()
  .min(1)
  .max(255)
  .regex(/^[a-zA-Z0-9\-._~]+$/, 'may contain only letters, digits and - . _ ~')
  .refine((s) => !UUID_LIKE.test(s), 'must not look like a UUID');
const groupName = z.string().max(255).regex(/^[a-zA-Z0-9_\-.]*$/, 'may contain only letters, digits and _ - .');
export const macAddress = z
  .string()
  .regex(/^([0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}$/, 'must be a MAC address like 52:54:00:12:34:56')
  .transform((s) => s.toLowerCase().replace(/-/g, ':'));

export const nodeCreateSchema = z.strictObject({
  uuid: z.uuid().optional(),
  name: logicalName.nullable().optional(),
  driver: z.string().min(1).max(255),
  driver_info: dict.optional(),
  properties: dict.optional(),
  extra: dict.optional(),
  instance_info: dict.optional(),
  resource_class: z.string().max(80).nullable().optional(),
  conductor_group: groupName.optional(),
});

/** The patchable view of a node; the patched document is re-validated with this. */
export const nodePatchableSchema = z.strictObject({
  name: logicalName.nullable(),
  driver: z.string().min(1).max(255),
  driver_info: dict,
  properties: dict,
  extra: dict,
  instance_info: dict,
  instance_uuid: z.uuid().nullable(),
  resource_class: z.string().max(80).nullable(),
  conductor_group: groupName,
});
export const NODE_PATCHABLE = new Set(Object.keys(nodePatchableSchema.shape));

export const powerBodySchema = z.strictObject({
  target: z.enum(['power on', 'power off', 'rebooting', 'soft power off', 'soft rebooting']),
  timeout: z.number().int().min(1).max(3600).optional(),
});

export const provisionBodySchema = z.strictObject({
  target: z.string().min(1).max(32),
  configdrive: z.union([z.string(), dict]).optional(),
  clean_steps: z.array(dict).max(100).optional(),
  deploy_steps: z.array(dict).max(100).optional(),
  service_steps: z.array(dict).max(100).optional(),
  rescue_password: z.string().optional(),
  disable_ramdisk: z.boolean().optional(),
});

/** PUT /v1/nodes/{id}/states/raid: a target_raid_config document ({} clears it). */
export const raidConfigBodySchema = dict;

export const maintenanceBodySchema = z.strictObject({ reason: z.string().max(4096).optional() });

export const portCreateSchema = z.strictObject({
  address: macAddress,
  node_uuid: z.uuid(),
  uuid: z.uuid().optional(),
  extra: dict.optional(),
  pxe_enabled: z.boolean().optional(),
  local_link_connection: dict.optional(),
  physical_network: z.string().max(64).nullable().optional(),
});

export const portPatchableSchema = z.strictObject({
  address: macAddress,
  node_uuid: z.uuid(),
  extra: dict,
  pxe_enabled: z.boolean(),
  local_link_connection: dict,
  physical_network: z.string().max(64).nullable(),
});
export const PORT_PATCHABLE = new Set(Object.keys(portPatchableSchema.shape));

export const agentCommandBodySchema = z.strictObject({
  name: z.string().min(1).max(64),
  params: dict.optional(),
});

const boolish = z.enum(['true', 'false', 'True', 'False', '1', '0']).transform((s) => s === 'true' || s === 'True' || s === '1');

export const listQuerySchema = z.looseObject({
  limit: z.coerce.number().int().min(1).max(1000).optional(),
  marker: z.string().min(1).optional(),
  sort_key: z.enum(['id', 'created_at', 'updated_at', 'name', 'provision_state', 'uuid']).optional(),
  sort_dir: z.enum(['asc', 'desc']).optional(),
  fields: z.string().optional(),
  detail: boolish.optional(),
  provision_state: z.string().optional(),
  maintenance: boolish.optional(),
  associated: boolish.optional(),
  driver: z.string().optional(),
  conductor_group: z.string().optional(),
  node: z.string().optional(),
  node_uuid: z.string().optional(),
  address: z.string().optional(),
});

export const firmwareUpdateBodySchema = z.strictObject({
  image_url: z.url({ protocol: /^https?$/ }),
  component: z.enum(['bios', 'bmc']).default('bios'),
});
