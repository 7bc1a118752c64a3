import { CommandFailure, type CommandContext } from './registry.js';
import { FirmwareError, updateFirmware } from '../firmware.js';

/** firmware.update: verified payload → the firmware manager owning the component. */
export async function updateFirmwareCommand(ctx: CommandContext): Promise<Record<string, unknown>> {
  const p = ctx.params as { component: string; url: string; checksum: string; checksum_algo?: 'sha256' | 'sha512' | 'md5' };
  try {
    return { ...(await updateFirmware(ctx.firmware, p, { md5Allowed: ctx.md5Allowed, signal: ctx.signal, log: (m) => ctx.remoteLog('info', m) })) };
  } catch (err) {
    if (err instanceof FirmwareError) throw new CommandFailure(err.code === 'CANCELLED' ? 'CANCELLED' : `FIRMWARE_${err.code}`, err.message);
    throw err;
  }
}
