/**
 * Ironic's `fake-hardware` hardware type: every interface succeeds without touching hardware and
 * power state lives in the database. Used for API/flow testing and lab nodes without a BMC, as in
 * Ironic. Its default deploy is one conductor step (power on, no agent); the agent's steps are
 * there as manual steps for a node that runs a real agent; power steps work as on real hardware;
 * inspection uses the agent when one is connected.
 */
import type { HardwareType, PowerState, PowerTarget, StepDefinition } from './base.js';
import { POWER_STEPS } from '../steps/power.js';
import { internalInfo } from '../internal-info.js';
import { agentInspect } from '../steps/agent-inspect.js';
import { DIRECT_DEPLOY_STEPS } from '../steps/agent-deploy.js';
import { AGENT_RAID_STEPS } from '../steps/agent-raid.js';

/** The agent's steps stay available as manual steps (a lab node may run a real agent), never in a default deploy. */
const manualOnly = (steps: readonly StepDefinition[]): StepDefinition[] => steps.map(({ deployPriority: _p, ...rest }) => rest);

const noValidate = () => {};

function settle(target: PowerTarget): PowerState {
  return target === 'power off' || target === 'soft power off' ? 'power off' : 'power on';
}

/** The whole fake deploy: the instance "boots" (power on), as Ironic's fake deploy interface. */
const fakeDeployStep: StepDefinition = {
  interface: 'deploy',
  step: 'deploy',
  deployPriority: 100,
  async run(ctx) {
    await ctx.ops.setPower(ctx.task, 'power on');
    return 'done';
  },
};

export function fakeHardware(): HardwareType {
  return {
    name: 'fake-hardware',
    properties: {},
    power: {
      name: 'fake',
      validate: noValidate,
      steps: POWER_STEPS,
      async getPowerState(node) {
        return (node.power_state as PowerState | null) ?? 'power off';
      },
      async setPowerState(_node, target) {
        return settle(target);
      },
    },
    management: {
      name: 'fake',
      validate: noValidate,
      async setBootDevice(_node, device, persistent, ctx) {
        await ctx.setInternalInfo({ fake_boot_device: { boot_device: device, persistent } });
      },
      async getBootDevice(node) {
        return internalInfo(node).fake_boot_device ?? { boot_device: null, persistent: null };
      },
    },
    deploy: { name: 'fake', validate: noValidate, needsAgent: false, steps: [fakeDeployStep, ...manualOnly(DIRECT_DEPLOY_STEPS)] },
    boot: { name: 'fake', validate: noValidate },
    raid: { name: 'fake', validate: noValidate, steps: manualOnly(AGENT_RAID_STEPS) },
    firmware: { name: 'fake', validate: noValidate },
    inspect: agentInspect(noValidate),
  };
}
