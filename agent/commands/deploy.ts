import { CommandFailure, type CommandContext } from './registry.js';
import { writeImage, ImageWriteError, type DiskFormat } from '../image-writer.js';
import { selectRootDevice, RootDeviceHintError } from '../root-device.js';

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
  ctx.remoteLog('info', `write_image: ${p.url} -> ${target}`);
  try {
    const r = await writeImage(
      { url: p.url, checksum: p.checksum, checksum_algo: p.checksum_algo, disk_format: p.disk_format },
      {
        target: ctx.hardware.devicePath?.(target) ?? target,
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
