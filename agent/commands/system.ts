import type { CommandContext } from './registry.js';

/** system.get_inventory: re-collect the inventory and stream it. */
export async function getInventory(ctx: CommandContext): Promise<Record<string, unknown>> {
  const inv = await ctx.hardware.inventory();
  await ctx.sendInventory();
  return { disks: inv.disks.length, interfaces: inv.interfaces.length };
}
