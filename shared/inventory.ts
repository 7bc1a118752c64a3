/**
 * IPA's hardware inventory schema (ironic-python-agent hardware.py serializable fields), as a zod
 * schema. The agent produces it; the conductor validates every inventory it receives against it
 * before storing. Unknown extra keys are kept (IPA allows them), wrong types are rejected.
 */
import { z } from 'zod';

const nullableStr = z.string().nullable();

export const interfaceSchema = z.looseObject({
  name: z.string().min(1),
  mac_address: z.string().regex(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i, 'must be a MAC address'),
  ipv4_address: nullableStr,
  ipv6_address: nullableStr,
  has_carrier: z.boolean(),
  lldp: z.unknown().nullable(),
  vendor: nullableStr,
  product: nullableStr,
  client_id: nullableStr,
  biosdevname: nullableStr,
  speed_mbps: z.number().int().nullable(),
  pci_address: nullableStr,
  driver: nullableStr,
});

export const diskSchema = z.looseObject({
  name: z.string().min(1),
  model: nullableStr,
  size: z.number().int().nonnegative(),
  rotational: z.boolean(),
  wwn: nullableStr,
  serial: nullableStr,
  vendor: nullableStr,
  wwn_with_extension: nullableStr,
  wwn_vendor_extension: nullableStr,
  hctl: nullableStr,
  by_path: nullableStr,
  logical_sectors: z.number().int().nullable(),
  physical_sectors: z.number().int().nullable(),
  tran: nullableStr,
});

export const inventorySchema = z.looseObject({
  interfaces: z.array(interfaceSchema).min(1),
  cpu: z.looseObject({
    model_name: nullableStr,
    frequency: nullableStr,
    count: z.number().int().nonnegative(),
    architecture: z.string(),
    flags: z.array(z.string()),
    socket_count: z.number().int().nonnegative().nullable(),
  }),
  disks: z.array(diskSchema),
  memory: z.looseObject({ total: z.number().int().nonnegative(), physical_mb: z.number().int().nullable() }),
  bmc_address: nullableStr,
  bmc_v6address: nullableStr,
  bmc_mac: nullableStr.optional(),
  system_vendor: z.looseObject({
    product_name: nullableStr,
    serial_number: nullableStr,
    manufacturer: nullableStr,
    firmware: z.looseObject({ vendor: nullableStr, version: nullableStr, build_date: nullableStr }),
  }),
  boot: z.looseObject({ current_boot_mode: z.enum(['uefi', 'bios']), pxe_interface: nullableStr }),
  hostname: z.string(),
});

export type Inventory = z.infer<typeof inventorySchema>;
export type InventoryDisk = z.infer<typeof diskSchema>;
export type InventoryInterface = z.infer<typeof interfaceSchema>;

/** Formats the first zod issue as "path: message" (the field named first). */
export function describeZodError(err: z.ZodError, prefix = ''): string {
  return err.issues
    .slice(0, 3)
    .map((i) => {
      const path = [prefix, ...i.path.map(String)].filter(Boolean).join('.');
      return path ? `${path}: ${i.message}` : i.message;
    })
    .join('; ');
}

export function normaliseMac(mac: string): string {
  return mac.trim().toLowerCase();
}
