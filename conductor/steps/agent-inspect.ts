/**
 * The `agent` inspect interface (Ironic's agent inspection): a connected agent is asked for its
 * inventory; otherwise the machine is powered on and its ramdisk agent sends the inventory when it
 * connects. Either way the inventory arriving ends `inspect wait` (provisioning.ts).
 */
import { randomUUID } from 'node:crypto';
import type { InspectInterface } from '../drivers/base.js';

export function agentInspect(validate: InspectInterface['validate']): InspectInterface {
  return {
    name: 'agent',
    validate,
    needsAgent: true,
    async begin(ctx) {
      const node = ctx.task.node;
      if (ctx.agents.isConnected(node.id)) {
        await ctx.agents.sendCommand(node, randomUUID(), 'system.get_inventory', {});
        return;
      }
      await ctx.hw.power.setPowerState(node, 'power on', ctx.ops.driverContext(ctx.task), 0);
      await ctx.ops.store.updateNode(node.id, { power_state: 'power on' });
    },
  };
}
