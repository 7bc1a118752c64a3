/**
 * The target_raid_config document (Ironic's RAID schema, software RAID subset): one schema both
 * sides use — the conductor validates what the API is given, the agent plans arrays from it. It
 * lives in shared/ so neither side imports the other's code.
 */
import { z } from 'zod';

export const logicalDiskSchema = z.strictObject({
  raid_level: z.enum(['JBOD', '0', '1', '2', '5', '6', '1+0', '5+0', '6+0']),
  size_gb: z.union([z.number().int().min(0), z.literal('MAX')]),
  volume_name: z.string().min(1).max(32).regex(/^[A-Za-z0-9_.-]+$/, 'may contain only letters, digits and _ . -').optional(),
  is_root_volume: z.boolean().optional(),
  share_physical_disks: z.boolean().optional(),
  disk_type: z.enum(['hdd', 'ssd']).optional(),
  interface_type: z.enum(['sata', 'scsi', 'sas']).optional(),
  number_of_physical_disks: z.number().int().min(1).optional(),
  controller: z.string().optional(),
  physical_disks: z.array(z.record(z.string(), z.unknown())).optional(),
});

export const targetRaidConfigSchema = z.strictObject({ logical_disks: z.array(logicalDiskSchema).min(1) });
export type TargetRaidConfig = z.infer<typeof targetRaidConfigSchema>;

/** Software RAID only: every logical disk says controller "software". */
export function isSoftwareRaid(cfg: { logical_disks?: Array<{ controller?: string }> } | null | undefined): boolean {
  return Boolean(cfg?.logical_disks?.length && cfg.logical_disks.every((l) => l.controller === 'software'));
}
