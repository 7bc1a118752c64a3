/** Agent command handlers, by name. One module per command family. */
import type { Logger } from 'pino';
import type { CommandName } from '../../shared/commands.js';
import type { HardwareProvider } from '../hardware.js';
import { getInventory } from './system.js';
import { burninCpu, eraseAllDevices, eraseDevicesMetadata, getCleanSteps } from './clean.js';
import { powerOff, syncDisks } from './standby.js';
import { getDeploySteps, writeImageCommand } from './deploy.js';
import { createConfiguration, deleteConfiguration } from './raid.js';
import { updateFirmwareCommand } from './firmware.js';
import type { FirmwareManager } from '../firmware.js';

export interface Progress {
  percent: number;
  stage?: string;
  bytesDone?: number;
  bytesTotal?: number;
  rateBytesPerS?: number;
  etaS?: number;
  message?: string;
}

export interface CommandContext {
  params: Record<string, unknown>;
  signal: AbortSignal;
  hardware: HardwareProvider;
  log: Logger;
  progress(p: Progress): void;
  /** Send a fresh inventory to the conductor. */
  sendInventory(): Promise<void>;
  /** Whether the conductor allows md5 image checksums (Welcome settings). */
  md5Allowed: boolean;
  /** In-band firmware plugins configured on this agent. */
  firmware: FirmwareManager[];
  /** Priorities this ramdisk gives its deploy steps ("interface.step" → priority; default 0). */
  deployStepPriorities: Record<string, number>;
  /** Regular files under this directory may stand in for disks (test/lab agents on a host). */
  fileTargetDir?: string;
  /** Streamed to the conductor's log, tagged with the command id. */
  remoteLog(level: 'debug' | 'info' | 'warn' | 'error', message: string): void;
}

export type CommandHandler = (ctx: CommandContext) => Promise<Record<string, unknown>>;

/** A failure with a stable code reported in CommandResult.error. */
export class CommandFailure extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly details = '',
  ) {
    super(message);
    this.name = 'CommandFailure';
  }
}

export const HANDLERS: Record<CommandName, CommandHandler> = {
  'system.get_inventory': getInventory,
  'standby.sync': syncDisks,
  'standby.power_off': powerOff,
  'clean.burnin_cpu': burninCpu,
  'clean.get_clean_steps': getCleanSteps,
  'deploy.get_deploy_steps': getDeploySteps,
  'deploy.write_image': writeImageCommand,
  'clean.erase_devices_metadata': eraseDevicesMetadata,
  'clean.erase_devices': eraseAllDevices,
  'raid.create_configuration': createConfiguration,
  'raid.delete_configuration': deleteConfiguration,
  'firmware.update': updateFirmwareCommand,
};
