/**
 * The `redfish` hardware type: power and management through the BMC fleet engine (the node's
 * BMC is served by the worker thread that owns it), deploy and inspection through the agent.
 */
import { DriverError } from '../../shared/errors.js';
import type { Node } from '../db/store.js';
import type { HardwareType, PowerState } from './base.js';
import { parseRedfishDriverInfo, REDFISH_PROPERTIES } from '../redfish/driver-info.js';
import { BmcOpError, type BmcPool, type NodeRef } from '../redfish/pool.js';
import type { PowerHealth } from '../redfish/ops.js';

export function nodeRef(node: Pick<Node, 'uuid' | 'driver_info'>): NodeRef {
  return { uuid: node.uuid, target: parseRedfishDriverInfo(node.driver_info, node.uuid) };
}

function driverError(err: unknown): never {
  if (err instanceof BmcOpError) throw new DriverError(`${err.code}: ${err.message}`, { code: err.code }, err);
  throw err;
}

export function redfishHardware(pool: () => BmcPool): HardwareType {
  const validate = (node: Node) => void nodeRef(node);
  return {
    name: 'redfish',
    properties: REDFISH_PROPERTIES,
    power: {
      name: 'redfish',
      validate,
      supportsPowerSync: true,
      async getPowerState(node) {
        const ph = await pool().op<PowerHealth>(nodeRef(node), { op: 'power-get' }).catch(driverError);
        if (!ph.power) throw new DriverError(`BMC reported an unknown PowerState for node ${node.uuid}`);
        return ph.power as PowerState;
      },
      async setPowerState(node, target, _ctx, timeoutS) {
        return (await pool().op<PowerState>(nodeRef(node), { op: 'power', target, timeoutS }).catch(driverError)) as PowerState;
      },
    },
    management: {
      name: 'redfish',
      validate,
      async setBootDevice(node, device, persistent, ctx) {
        await pool().op(nodeRef(node), { op: 'boot', device, persistent }).catch(driverError);
        await ctx.setInternalInfo({ boot_device: { boot_device: device, persistent } });
      },
      async getBootDevice(node) {
        const v = node.driver_internal_info.boot_device as { boot_device: string; persistent: boolean } | undefined;
        return v ?? { boot_device: null, persistent: null };
      },
    },
    deploy: { name: 'direct', validate, needsAgent: true },
    boot: { name: 'ipxe', validate },
    raid: { name: 'agent', validate },
    firmware: { name: 'redfish', validate },
    inspect: { name: 'agent', validate, needsAgent: true },
  };
}
