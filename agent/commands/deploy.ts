import { CommandFailure, type CommandContext } from './registry.js';
import { writeImage, ImageWriteError, type DiskFormat } from '../image-writer.js';
import { selectRootDevice, RootDeviceHintError } from '../root-device.js';
import { resolveOwnDevice } from '../device-guard.js';
import { redactUrl } from '../../shared/redact.js';

/**
 * The deploy steps this agent offers, in IPA's shape. All have priority 0 (run only when asked
 * for) unless the ramdisk was built or booted with priorities for them
 * (`ironfleet.deploy_step_priorities=deploy.erase_devices_metadata:85,…`), which is how an
 * operator makes every deploy run an in-band step, as IPA's custom hardware managers do.
 */
export async function getDeploySteps(ctx: CommandContext): Promise<Record<string, unknown>> {
  const prio = (name: string) => ctx.deployStepPriorities[name] ?? 0;
  const step = (iface: string, name: string, extra: Record<string, unknown> = {}) => ({ interface: iface, step: name, priority: prio(`${iface}.${name}`), reboot_requested: false, abortable: true, ...extra });
  return {
    deploy_steps: {
      GenericHardwareManager: [
        step('deploy', 'erase_devices_metadata'),
        step('raid', 'apply_configuration', { argsinfo: { raid_config: { description: 'the target RAID configuration', required: true } } }),
        step('deploy', 'write_image', { argsinfo: { image_info: { description: 'the image to write', required: true } } }),
        step('deploy', 'burnin_cpu', { argsinfo: { duration_s: { description: 'seconds to load every CPU', required: true } } }),
      ],
    },
    hardware_manager_version: { GenericHardwareManager: '1.0' },
  };
}

/** deploy.write_image: choose the root device (IPA hints) and stream the image onto it. */
export async function writeImageCommand(ctx: CommandContext): Promise<Record<string, unknown>> {
  const p = ctx.params as { url: string; checksum: string; checksum_algo?: 'sha256' | 'sha512' | 'md5'; disk_format?: DiskFormat; target?: string; root_device?: Record<string, unknown>; verify?: boolean };
  let target = p.target;
  if (!target) {
    const inv = await ctx.hardware.inventory();
    try {
      target = selectRootDevice(inv.disks, p.root_device)?.name;
    } catch (err) {
      if (err instanceof RootDeviceHintError) throw new CommandFailure('INVALID_PARAMS', err.message);
      throw err;
    }
    if (!target) throw new CommandFailure('NO_ROOT_DEVICE', `no disk matches the root device hints ${JSON.stringify(p.root_device ?? {})}`);
  }
  const path = await resolveOwnDevice(ctx, target, 'target');
  ctx.remoteLog('info', `write_image: ${redactUrl(p.url)} -> ${target}`);
  try {
    const r = await writeImage(
      { url: p.url, checksum: p.checksum, checksum_algo: p.checksum_algo, disk_format: p.disk_format },
      {
        target: path,
        md5Allowed: ctx.md5Allowed,
        verify: p.verify,
        signal: ctx.signal,
        progressIntervalMs: 0,
        progress: (x) =>
          ctx.progress({
            percent: x.bytesTotal ? Math.min(99.9, (x.bytesDownloaded / x.bytesTotal) * 100) : -1,
            stage: 'write_image',
            bytesDone: x.bytesDownloaded,
            bytesTotal: x.bytesTotal,
            rateBytesPerS: x.rateBytesPerS,
            etaS: x.etaS,
          }),
      },
    );
    return { ...r, target };
  } catch (err) {
    if (err instanceof ImageWriteError) throw new CommandFailure(err.code, err.message);
    throw err;
  }
}
