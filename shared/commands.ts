/**
 * The agent command catalogue: API/DB names (IPA style "extension.command") ↔ the proto oneof
 * case, with a zod schema for the parameters. Shared by the conductor (validating API requests)
 * and the agent (validating what arrives on the stream).
 */
import { z } from 'zod';
import type { Command } from './gen/ironfleet/agent/v1/agent.js';

type ParamsCase = NonNullable<Command['params']>['$case'];

interface CommandSpec {
  case: ParamsCase;
  params: z.ZodType<Record<string, unknown>>;
  /** Long-running commands report progress; short ones answer at once. */
  long: boolean;
}

const devicePath = z.string().regex(/^\//, 'must be an absolute device path');

export const COMMANDS = {
  'system.get_inventory': { case: 'getInventory', params: z.strictObject({}), long: false },
  'standby.sync': { case: 'sync', params: z.strictObject({}), long: false },
  'clean.burnin_cpu': {
    case: 'burninCpu',
    params: z.strictObject({ duration_s: z.number().int().min(1).max(86_400), cpus: z.number().int().min(0).max(1024).optional() }),
    long: true,
  },
  'clean.get_clean_steps': { case: 'getCleanSteps', params: z.strictObject({}), long: false },
  'deploy.get_deploy_steps': { case: 'getDeploySteps', params: z.strictObject({}), long: false },
  'standby.power_off': { case: 'powerOff', params: z.strictObject({}), long: false },
  'clean.erase_devices_metadata': { case: 'eraseDevicesMetadata', params: z.strictObject({ devices: z.array(devicePath).max(256).optional() }), long: true },
  'clean.erase_devices': { case: 'eraseDevices', params: z.strictObject({ devices: z.array(devicePath).max(256).optional() }), long: true },
  'deploy.write_image': {
    case: 'writeImage',
    params: z.strictObject({
      url: z.url({ protocol: /^https?$/ }),
      checksum: z.string().min(1).max(2048),
      checksum_algo: z.enum(['sha256', 'sha512', 'md5']).optional(),
      disk_format: z.enum(['raw', 'gzip', 'zstd', 'qcow2']).optional(),
      target: devicePath.optional(),
      root_device: z.record(z.string(), z.unknown()).optional(),
      verify: z.boolean().optional(),
    }),
    long: true,
  },
  'raid.create_configuration': {
    case: 'createConfiguration',
    params: z.strictObject({ target_raid_config: z.record(z.string(), z.unknown()), boot_mode: z.enum(['uefi', 'bios']).optional() }),
    long: true,
  },
  'raid.delete_configuration': { case: 'deleteConfiguration', params: z.strictObject({ devices: z.array(devicePath).max(256).optional() }), long: true },
  'firmware.update': {
    case: 'updateFirmware',
    params: z.strictObject({
      component: z.string().min(1).max(64).regex(/^[a-z0-9_.-]+$/i, 'letters, digits, _ . -'),
      url: z.url({ protocol: /^https?$/ }),
      checksum: z.string().min(1).max(2048),
      checksum_algo: z.enum(['sha256', 'sha512', 'md5']).optional(),
    }),
    long: true,
  },
} satisfies Record<string, CommandSpec>;

export type CommandName = keyof typeof COMMANDS;
export const COMMAND_NAMES = Object.keys(COMMANDS) as CommandName[];

export function isCommandName(s: string): s is CommandName {
  return Object.hasOwn(COMMANDS, s);
}

/** Builds the proto Command for a validated (name, params). */
export function toProtoCommand(id: string, name: CommandName, params: Record<string, unknown>, timeoutS = 0): Command {
  switch (name) {
    case 'system.get_inventory':
      return { commandId: id, timeoutS, params: { $case: 'getInventory', value: {} } };
    case 'standby.sync':
      return { commandId: id, timeoutS, params: { $case: 'sync', value: {} } };
    case 'clean.burnin_cpu':
      return { commandId: id, timeoutS, params: { $case: 'burninCpu', value: { durationS: Number(params.duration_s), cpus: Number(params.cpus ?? 0) } } };
    case 'clean.get_clean_steps':
      return { commandId: id, timeoutS, params: { $case: 'getCleanSteps', value: {} } };
    case 'deploy.get_deploy_steps':
      return { commandId: id, timeoutS, params: { $case: 'getDeploySteps', value: {} } };
    case 'standby.power_off':
      return { commandId: id, timeoutS, params: { $case: 'powerOff', value: {} } };
    case 'clean.erase_devices_metadata':
      return { commandId: id, timeoutS, params: { $case: 'eraseDevicesMetadata', value: { devices: (params.devices as string[] | undefined) ?? [] } } };
    case 'clean.erase_devices':
      return { commandId: id, timeoutS, params: { $case: 'eraseDevices', value: { devices: (params.devices as string[] | undefined) ?? [] } } };
    case 'deploy.write_image':
      return {
        commandId: id,
        timeoutS,
        params: {
          $case: 'writeImage',
          value: {
            url: String(params.url),
            checksum: String(params.checksum),
            checksumAlgo: String(params.checksum_algo ?? ''),
            diskFormat: String(params.disk_format ?? ''),
            target: String(params.target ?? ''),
            rootDeviceHintsJson: params.root_device ? JSON.stringify(params.root_device) : '',
            verify: params.verify === true,
          },
        },
      };
    case 'raid.create_configuration':
      return { commandId: id, timeoutS, params: { $case: 'createConfiguration', value: { targetRaidConfigJson: JSON.stringify(params.target_raid_config), bootMode: String(params.boot_mode ?? '') } } };
    case 'raid.delete_configuration':
      return { commandId: id, timeoutS, params: { $case: 'deleteConfiguration', value: { devices: (params.devices as string[] | undefined) ?? [] } } };
    case 'firmware.update':
      return {
        commandId: id,
        timeoutS,
        params: { $case: 'updateFirmware', value: { component: String(params.component), url: String(params.url), checksum: String(params.checksum), checksumAlgo: String(params.checksum_algo ?? '') } },
      };
  }
}

function parseJsonParam(s: string): unknown {
  try {
    return s ? JSON.parse(s) : undefined;
  } catch {
    return 'invalid JSON';
  }
}

/** The inverse: (name, params) from a proto Command; undefined for an unknown/empty oneof. */
export function fromProtoCommand(cmd: Command): { name: CommandName; params: Record<string, unknown> } | undefined {
  const p = cmd.params;
  if (!p) return undefined;
  switch (p.$case) {
    case 'getInventory':
      return { name: 'system.get_inventory', params: {} };
    case 'sync':
      return { name: 'standby.sync', params: {} };
    case 'burninCpu':
      return { name: 'clean.burnin_cpu', params: { duration_s: p.value.durationS, cpus: p.value.cpus } };
    case 'getCleanSteps':
      return { name: 'clean.get_clean_steps', params: {} };
    case 'getDeploySteps':
      return { name: 'deploy.get_deploy_steps', params: {} };
    case 'powerOff':
      return { name: 'standby.power_off', params: {} };
    case 'eraseDevicesMetadata':
      return { name: 'clean.erase_devices_metadata', params: p.value.devices.length ? { devices: p.value.devices } : {} };
    case 'eraseDevices':
      return { name: 'clean.erase_devices', params: p.value.devices.length ? { devices: p.value.devices } : {} };
    case 'writeImage': {
      const v = p.value;
      const hints = parseJsonParam(v.rootDeviceHintsJson);
      return {
        name: 'deploy.write_image',
        params: {
          url: v.url,
          checksum: v.checksum,
          ...(v.checksumAlgo ? { checksum_algo: v.checksumAlgo } : {}),
          ...(v.diskFormat ? { disk_format: v.diskFormat } : {}),
          ...(v.target ? { target: v.target } : {}),
          ...(hints !== undefined ? { root_device: hints } : {}),
          ...(v.verify ? { verify: true } : {}),
        },
      };
    }
    case 'createConfiguration':
      return {
        name: 'raid.create_configuration',
        params: { target_raid_config: parseJsonParam(p.value.targetRaidConfigJson), ...(p.value.bootMode ? { boot_mode: p.value.bootMode } : {}) },
      };
    case 'deleteConfiguration':
      return { name: 'raid.delete_configuration', params: p.value.devices.length ? { devices: p.value.devices } : {} };
    case 'updateFirmware': {
      const v = p.value;
      return { name: 'firmware.update', params: { component: v.component, url: v.url, checksum: v.checksum, ...(v.checksumAlgo ? { checksum_algo: v.checksumAlgo } : {}) } };
    }
    default:
      return undefined;
  }
}

export const AGENT_TOKEN_METADATA = 'x-ironfleet-agent-token';
export const AGENT_VERSION = '0.1.0';
