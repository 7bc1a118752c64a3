import { existsSync } from 'node:fs';
import { CommandFailure, type CommandContext } from './registry.js';
import { resolveOwnDevice } from '../device-guard.js';
import { planSoftwareRaid, RaidConfigError } from '../raid-plan.js';
import { applyRaidPlan, deleteRaidConfiguration, RaidExecError } from '../raid-exec.js';

function raidFailure(err: unknown, what: string): CommandFailure {
  if (err instanceof RaidConfigError) return new CommandFailure('INVALID_RAID_CONFIG', err.message);
  if (err instanceof RaidExecError) return new CommandFailure(err.code === 'CANCELLED' ? 'CANCELLED' : `RAID_${err.code}`, `${what}: ${err.message}`);
  return new CommandFailure('RAID_FAILED', `${what}: ${(err as Error).message}`);
}

/** raid.create_configuration: plan against the disks this agent sees, then build it for real. */
export async function createConfiguration(ctx: CommandContext): Promise<Record<string, unknown>> {
  const p = ctx.params as { target_raid_config: unknown; boot_mode?: 'uefi' | 'bios' };
  const inv = await ctx.hardware.inventory();
  const bootMode = p.boot_mode ?? (inv.boot.current_boot_mode === 'uefi' ? 'uefi' : 'bios');
  let plan;
  try {
    plan = planSoftwareRaid(p.target_raid_config, inv.disks, bootMode, 'gpt');
  } catch (err) {
    throw raidFailure(err, 'create_configuration');
  }
  ctx.remoteLog('info', `create_configuration: ${plan.arrays.map((a) => `${a.device} RAID-${a.level} on ${a.members.join(',')}`).join('; ')}${plan.esp ? `; ESP ${plan.esp.device}` : ''}`);
  try {
    const devices = await applyRaidPlan(plan, {
      signal: ctx.signal,
      log: (m) => ctx.log.info(m),
      progress: (done, total, argv) => ctx.progress({ percent: (done / total) * 100, stage: 'create_configuration', message: argv.slice(0, 3).join(' ') }),
    });
    await ctx.sendInventory().catch(() => undefined);
    const root = devices.find((d) => d.is_root_volume) ?? devices[0]!;
    return { boot_mode: bootMode, holders: plan.holders, logical_disks: devices, root_device: root.device };
  } catch (err) {
    throw raidFailure(err, 'create_configuration');
  }
}

/** raid.delete_configuration: stop arrays, zero superblocks, wipe holder partition tables. */
export async function deleteConfiguration(ctx: CommandContext): Promise<Record<string, unknown>> {
  const given = ctx.params.devices as string[] | undefined;
  for (const [i, d] of (given ?? []).entries()) {
    if (!existsSync(d)) throw new CommandFailure('INVALID_PARAMS', `devices.${i}: device ${d} does not exist`);
    await resolveOwnDevice(ctx, d, `devices.${i}`);
  }
  try {
    const r = await deleteRaidConfiguration(given, { log: (m) => ctx.log.info(m) });
    await ctx.sendInventory().catch(() => undefined);
    return r;
  } catch (err) {
    throw raidFailure(err, 'delete_configuration');
  }
}
