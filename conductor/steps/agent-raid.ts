/**
 * The `agent` RAID interface's steps: software RAID built by the ramdisk agent from the node's
 * target_raid_config, in a deploy (apply_configuration, only when every logical disk is software)
 * or as manual clean steps. Results (the arrays and the root device) land in driver_internal_info,
 * where the write_image step finds the root device.
 */
import type { StepContext, StepDefinition } from '../drivers/base.js';
import { COMMANDS } from '../../shared/commands.js';
import { isSoftwareRaid } from '../../shared/raid-config.js';
import type { Json } from '../db/store.js';

const targetParams = (ctx: StepContext): Json => ({ target_raid_config: ctx.info.target_raid_config ?? {} });

async function recordCreated(ctx: StepContext, result: Json): Promise<void> {
  await ctx.ops.patchInternal(ctx.task, { raid_config: (result.logical_disks as Json[] | undefined) ?? [], raid_root_device: (result.root_device as string | undefined) ?? null });
}

export const AGENT_RAID_STEPS: readonly StepDefinition[] = [
  {
    interface: 'raid',
    step: 'apply_configuration',
    deployPriority: 90,
    appliesTo: (_node, info) => isSoftwareRaid(info.target_raid_config),
    async run(ctx) {
      return ctx.agentCommand('raid.create_configuration', targetParams(ctx));
    },
    onResult: recordCreated,
  },
  {
    interface: 'raid',
    step: 'create_configuration',
    agentCommand: 'raid.create_configuration',
    noArgsReason: "it uses the node's target_raid_config",
    params: targetParams,
    onResult: recordCreated,
  },
  {
    interface: 'raid',
    step: 'delete_configuration',
    agentCommand: 'raid.delete_configuration',
    args: COMMANDS['raid.delete_configuration'].params,
    async onResult(ctx) {
      await ctx.ops.patchInternal(ctx.task, { raid_config: [], raid_root_device: null });
    },
  },
];
