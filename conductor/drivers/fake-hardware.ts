/**
 * Ironic's `fake-hardware` hardware type: every interface succeeds without touching hardware and
 * power state lives in the database. Used for API/flow testing and lab nodes without a BMC, as in
 * Ironic. Its deploy interface needs no agent; inspection uses the agent when one is connected.
 */
import type { HardwareType, PowerState, PowerTarget } from './base.js';

const noValidate = () => {};

function settle(target: PowerTarget): PowerState {
  return target === 'power off' || target === 'soft power off' ? 'power off' : 'power on';
}

export function fakeHardware(): HardwareType {
  return {
    name: 'fake-hardware',
    properties: {},
    power: {
      name: 'fake',
      validate: noValidate,
      supportsPowerSync: false,
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
        const v = node.driver_internal_info.fake_boot_device as { boot_device: string; persistent: boolean } | undefined;
        return v ?? { boot_device: null, persistent: null };
      },
    },
    deploy: { name: 'fake', validate: noValidate, needsAgent: false },
    boot: { name: 'fake', validate: noValidate },
    raid: { name: 'fake', validate: noValidate },
    firmware: { name: 'fake', validate: noValidate },
    inspect: { name: 'agent', validate: noValidate, needsAgent: true },
  };
}
