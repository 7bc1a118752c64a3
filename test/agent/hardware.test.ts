import { describe, expect, it } from 'vitest';
import { HostHardware, SimulatedHardware, hostMacs, simulatedMac } from '../../agent/hardware.js';
import { inventorySchema } from '../../shared/inventory.js';

describe('hardware providers', () => {
  it('the host inventory is valid IPA inventory and lists this machine’s NICs and disks', async () => {
    const inv = await new HostHardware().inventory();
    const parsed = inventorySchema.parse(inv);
    expect(parsed.interfaces.map((i) => i.mac_address).sort()).toEqual(hostMacs().sort());
    expect(parsed.cpu.architecture).toMatch(/x86_64|aarch64/);
    for (const d of parsed.disks) {
      expect(d.name).toMatch(/^\/dev\//);
      expect(d.size).toBeGreaterThan(0);
    }
    expect(['uefi', 'bios']).toContain(parsed.boot.current_boot_mode);
  });

  it('simulated machines have valid inventories and fleet-unique MACs', async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 5000; i++) for (let nic = 0; nic < 2; nic++) seen.add(simulatedMac('fleet', i, nic));
    expect(seen.size).toBe(10_000);
    const hw = new SimulatedHardware({ seed: 'fleet', index: 42 });
    const inv = inventorySchema.parse(await hw.inventory());
    expect(inv.interfaces.map((i) => i.mac_address)).toEqual(await hw.macs());
    expect(inv.boot.pxe_interface).toBe((await hw.macs())[0]);
  });

  it('rejects an inventory that breaks the schema, naming the field', () => {
    const r = inventorySchema.safeParse({ interfaces: [{ name: 'eth0', mac_address: 'nope' }] });
    expect(r.success).toBe(false);
    expect(r.error!.issues[0]!.path.join('.')).toMatch(/^interfaces\.0\./);
  });
});
