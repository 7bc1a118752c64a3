/**
 * Which paths a conductor may point a destructive command at. The agent runs as root: a
 * `target` or `devices` entry is accepted only if it is one of this machine's own disks (from
 * its inventory) or a software RAID device (/dev/md…, a real block device) that the agent built.
 * Any other absolute path — /etc/shadow, a mounted partition's image file, /dev/mem — is refused
 * before anything is opened. Simulated machines name their disks the same way and map them to
 * their backing files (HardwareProvider.devicePath); there a bare file path is refused too.
 */
import { realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { CommandFailure, type CommandContext } from './commands/registry.js';

const MD_DEVICE = /^\/dev\/md(\d+|\/[A-Za-z0-9_.:-]+)$/;

/** Resolves a disk name given by the conductor to the path to open; throws INVALID_PARAMS otherwise. */
export async function resolveOwnDevice(ctx: Pick<CommandContext, 'hardware' | 'fileTargetDir'>, name: string, field: string): Promise<string> {
  const inv = await ctx.hardware.inventory();
  if (inv.disks.some((d) => d.name === name)) return ctx.hardware.devicePath?.(name) ?? name;
  if (!ctx.hardware.devicePath && MD_DEVICE.test(name)) {
    const st = await stat(name).catch(() => undefined);
    if (st?.isBlockDevice()) return name;
  }
  if (ctx.fileTargetDir && path.isAbsolute(name)) {
    // Resolve symlinks and '..' first: the file must really live under the directory.
    const real = await realpath(name).catch(() => undefined);
    const dir = await realpath(ctx.fileTargetDir).catch(() => undefined);
    if (real && dir && real.startsWith(dir + path.sep) && (await stat(real)).isFile()) return real;
  }
  const known = inv.disks.map((d) => d.name).join(', ') || '(none)';
  throw new CommandFailure('INVALID_PARAMS', `${field}: ${name} is not a disk of this machine (its disks: ${known}; or a /dev/md software RAID device)`);
}
