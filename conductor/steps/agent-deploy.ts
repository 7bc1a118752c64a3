/**
 * The `direct` deploy interface's steps (Ironic's agent deploy): boot the ramdisk agent, have it
 * write the image, set the instance's boot device, boot the instance — plus the in-band clean steps
 * the agent offers (erase, burn-in). Each step is a StepDefinition the flow engine looks up; the
 * engine itself knows none of them.
 */
import type { Json, Node } from '../db/store.js';
import type { StepDefinition } from '../drivers/base.js';
import { COMMANDS } from '../../shared/commands.js';
import { DriverError, errorMessage, InvalidInputError } from '../../shared/errors.js';

/** Driver error codes that mean the BMC did not answer at all (retry-policy.ts gave up on it). */
const UNREACHABLE: ReadonlySet<string> = new Set(['RF_TIMEOUT', 'RF_CONNECT', 'RF_CIRCUIT_OPEN']);
import { randomUUID } from 'node:crypto';

/**
 * write_image parameters from instance_info; throws naming the field when the image is not
 * deployable. The conductor calls it before accepting a deploy, the step when it runs.
 */
export function deployImageParams(node: Node): Json {
  const ii = node.instance_info;
  const url = String(ii.image_source ?? '');
  const checksum = String(ii.image_os_hash_value ?? ii.image_checksum ?? '');
  if (!/^https?:\/\//.test(url)) throw new InvalidInputError('instance_info.image_source: an http(s) image URL is required to deploy', 'instance_info.image_source');
  if (!checksum) throw new InvalidInputError('instance_info.image_os_hash_value (or image_checksum): required to deploy', 'instance_info.image_os_hash_value');
  const params: Json = { url, checksum };
  if (ii.image_os_hash_algo) params.checksum_algo = ii.image_os_hash_algo;
  if (ii.image_disk_format) params.disk_format = ii.image_disk_format;
  // instance_info.image_verify: the agent reads the image back from the device after writing it.
  if (ii.image_verify === true || ii.image_verify === 'true') params.verify = true;
  return params;
}

/** Boots the ramdisk (or reuses a connected agent with fast-track) and waits for it to call back. */
export const bootAgentStep: StepDefinition = {
  interface: 'deploy',
  step: 'boot_agent',
  repeatable: true,
  deployPriority: 100,
  async run(ctx) {
    const node = ctx.task.node;
    if (await ctx.fastTrackable()) {
      ctx.flow.fast_track = true;
      await ctx.ops.history(node, `Fast-track: reusing the connected agent (no reboot) for ${ctx.flow.kind}`, 'provisioning', 'INFO');
      return 'done';
    }
    ctx.flow.fast_track = false;
    await ctx.hw.management.setBootDevice(node, 'pxe', false, ctx.ops.driverContext(ctx.task)).catch((err) => {
      // A BMC that stayed unreachable for a whole operation deadline will not take the reboot
      // either: fail now instead of spending a second deadline. Anything else (a BMC without boot
      // override support) is not fatal: the machine may PXE boot by its own order.
      if (err instanceof DriverError && UNREACHABLE.has(String(err.fields.code))) throw err;
      ctx.log.debug({ err: errorMessage(err) }, 'boot device not set');
    });
    // The old stream (if any) belongs to the previous boot.
    await ctx.ops.powerCut(ctx.task, 'rebooting', 'node rebooting into the deploy ramdisk');
    await ctx.ops.store.updateNode(node.id, { power_state: 'power on' });
    return { wait: { type: 'agent', token: randomUUID(), since: new Date().toISOString() }, timeoutS: ctx.settings.callbackTimeoutS };
  },
};

const writeImageStep: StepDefinition = {
  interface: 'deploy',
  step: 'write_image',
  deployPriority: 80,
  async run(ctx) {
    const node = ctx.task.node;
    const params = deployImageParams(node);
    if (typeof ctx.info.raid_root_device === 'string') params.target = ctx.info.raid_root_device;
    else if (node.properties.root_device) params.root_device = node.properties.root_device;
    return ctx.agentCommand('deploy.write_image', params);
  },
  async onResult(ctx, result) {
    await ctx.ops.history(ctx.task.node, `Image written: ${result.bytes_written} bytes to ${result.target} (${result.checksum_algo} verified, ${result.disk_format})`, 'deploy', 'INFO');
  },
};

const prepareInstanceBootStep: StepDefinition = {
  interface: 'deploy',
  step: 'prepare_instance_boot',
  repeatable: true,
  deployPriority: 60,
  async run(ctx) {
    await ctx.hw.management.setBootDevice(ctx.task.node, 'disk', true, ctx.ops.driverContext(ctx.task)).catch((err) => {
      throw new Error(`setting the boot device to disk failed: ${errorMessage(err)}`);
    });
    return 'done';
  },
};

const bootInstanceStep: StepDefinition = {
  interface: 'deploy',
  step: 'boot_instance',
  repeatable: true,
  deployPriority: 20,
  async run(ctx) {
    // Fast-track keeps the agent under its lease (a rebuild reuses it); the reboot into the
    // instance happens when the lease ends. Otherwise reboot into the instance now.
    if (ctx.flow.fast_track && ctx.settings.fastTrack) return 'done';
    await ctx.ops.powerCut(ctx.task, 'rebooting', 'node rebooting into its instance');
    return 'done';
  },
};

/** In-band steps the agent runs as commands (their arguments are the command's parameters). */
const agentSteps: StepDefinition[] = [
  { interface: 'deploy', step: 'erase_devices_metadata', agentCommand: 'clean.erase_devices_metadata', args: COMMANDS['clean.erase_devices_metadata'].params },
  { interface: 'deploy', step: 'erase_devices', agentCommand: 'clean.erase_devices', args: COMMANDS['clean.erase_devices'].params },
  { interface: 'deploy', step: 'burnin_cpu', agentCommand: 'clean.burnin_cpu', args: COMMANDS['clean.burnin_cpu'].params },
];

export const DIRECT_DEPLOY_STEPS: readonly StepDefinition[] = [bootAgentStep, writeImageStep, prepareInstanceBootStep, bootInstanceStep, ...agentSteps];
