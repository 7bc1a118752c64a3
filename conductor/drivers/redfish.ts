/**
 * The `redfish` hardware type: power, management (boot device, sensors) and out-of-band firmware
 * through the BMC fleet engine (the node's BMC is served by the worker thread that owns it);
 * deploy, RAID and inspection through the ramdisk agent. Every step it offers comes from its
 * interfaces (steps/).
 */
import { DriverError, errorMessage } from '../../shared/errors.js';
import type { Node } from '../db/store.js';
import type { DriverContext, FirmwareTask, HardwareType, PowerState, PowerSweepItem } from './base.js';
import { parseRedfishDriverInfo, REDFISH_PROPERTIES } from '../redfish/driver-info.js';
import { BmcOpError, type BmcPool, type NodeRef } from '../redfish/pool.js';
import type { PowerHealth, SensorReadings } from '../redfish/ops.js';
import { DIRECT_DEPLOY_STEPS, deployImageParams } from '../steps/agent-deploy.js';
import { AGENT_RAID_STEPS } from '../steps/agent-raid.js';
import { POWER_STEPS } from '../steps/power.js';
import { internalInfo } from '../internal-info.js';
import { agentInspect } from '../steps/agent-inspect.js';

export function nodeRef(node: Pick<Node, 'uuid' | 'driver_info'>): NodeRef {
  return { uuid: node.uuid, target: parseRedfishDriverInfo(node.driver_info, node.uuid) };
}

function driverError(err: unknown): never {
  if (err instanceof BmcOpError) throw new DriverError(`${err.code}: ${err.message}`, { code: err.code }, err);
  throw err;
}

/**
 * A sweep's compiled targets, by driver_info object: the sweep listing hands back the same frozen
 * object while the stored driver_info is unchanged, so validation runs once per change, not once
 * per node per sweep (a WeakMap: a replaced document takes its entry with it).
 */
const compiled = new WeakMap<object, NodeRef | { error: string }>();

interface SweepRefs {
  refs: NodeRef[];
  invalid: Array<{ node: Node; message: string }>;
  /** The node of each ref. */
  nodeOf: Map<NodeRef, Node>;
}

/**
 * A frozen node list's refs, by list: power sync hands a steady fleet's sweep the same frozen
 * array each time (its sweep plan), so the refs and the ref → node map are built once, not per sweep.
 */
const listRefs = new WeakMap<readonly Node[], SweepRefs>();

function sweepRefs(nodes: Node[]): SweepRefs {
  let r = listRefs.get(nodes);
  if (!r) {
    const nodeOf = new Map<NodeRef, Node>();
    r = { ...refsOf(nodes, nodeOf), nodeOf };
    if (Object.isFrozen(nodes)) listRefs.set(nodes, r);
  }
  return r;
}

/** Addressable nodes (refs; into `nodeOf`, the node of each) and those whose driver_info cannot reach a BMC. */
function refsOf(nodes: Node[], nodeOf?: Map<NodeRef, Node>): { refs: NodeRef[]; invalid: Array<{ node: Node; message: string }> } {
  const refs: NodeRef[] = [];
  const invalid: Array<{ node: Node; message: string }> = [];
  for (const n of nodes) {
    let c = Object.isFrozen(n.driver_info) ? compiled.get(n.driver_info) : undefined;
    if (!c || ('uuid' in c && c.uuid !== n.uuid)) {
      try {
        c = nodeRef(n);
      } catch (err) {
        c = { error: errorMessage(err) };
      }
      if (Object.isFrozen(n.driver_info)) compiled.set(n.driver_info, c);
    }
    if ('error' in c) invalid.push({ node: n, message: c.error });
    else {
      refs.push(c);
      nodeOf?.set(c, n);
    }
  }
  return { refs, invalid };
}

/** Retries an operation needed go to node history through the driver context, once per operation. */
const noted = (ctx: DriverContext | undefined) => (summaries: string[]) => {
  for (const s of summaries) ctx?.note?.(s);
};

const TASK_DONE = new Set(['Completed', 'Exception', 'Killed', 'Cancelled']);

export function redfishHardware(pool: () => BmcPool): HardwareType {
  const validate = (node: Node) => void nodeRef(node);
  return {
    name: 'redfish',
    properties: REDFISH_PROPERTIES,
    power: {
      name: 'redfish',
      validate,
      steps: POWER_STEPS,
      async getPowerState(node, ctx) {
        const ph = await pool().op<PowerHealth>(nodeRef(node), { op: 'power-get' }, noted(ctx)).catch(driverError);
        if (!ph.power) throw new DriverError(`BMC reported an unknown PowerState for node ${node.uuid}`);
        return ph.power as PowerState;
      },
      async setPowerState(node, target, ctx, timeoutS) {
        return (await pool().op<PowerState>(nodeRef(node), { op: 'power', target, timeoutS }, noted(ctx)).catch(driverError)) as PowerState;
      },
      async sweep(nodes, deadlineMs, known) {
        const { refs, invalid, nodeOf } = sweepRefs(nodes);
        if (!refs.length) return { items: [], invalid, unchanged: 0 };
        const r = await pool().sweep(refs, deadlineMs, known && ((ref) => known(nodeOf.get(ref)!)));
        return { items: r.items as PowerSweepItem[], invalid, unchanged: r.unchanged };
      },
    },
    management: {
      name: 'redfish',
      validate,
      async setBootDevice(node, device, persistent, ctx) {
        await pool().op(nodeRef(node), { op: 'boot', device, persistent }, noted(ctx)).catch(driverError);
        await ctx.setInternalInfo({ boot_device: { boot_device: device, persistent } });
      },
      async getBootDevice(node) {
        return internalInfo(node).boot_device ?? { boot_device: null, persistent: null };
      },
      async readSensors(nodes, deadlineMs) {
        const { refs, invalid } = refsOf(nodes);
        const items = refs.length ? await pool().sensors<SensorReadings>(refs, deadlineMs) : [];
        return { items, invalid: invalid.map((i) => i.node) };
      },
    },
    deploy: { name: 'direct', validate, needsAgent: true, steps: DIRECT_DEPLOY_STEPS, validateInstance: (node) => void deployImageParams(node) },
    boot: { name: 'ipxe', validate },
    raid: { name: 'agent', validate, steps: AGENT_RAID_STEPS },
    firmware: {
      name: 'redfish',
      validate,
      async startUpdate(node, imageUrl, component): Promise<FirmwareTask> {
        const taskUri = await pool()
          .op<string>(nodeRef(node), { op: 'firmware-start', imageUri: imageUrl, component })
          .catch((err) => {
            throw new DriverError(`firmware update could not start: ${errorMessage(err)}`);
          });
        return { task_uri: taskUri, component, image_url: imageUrl };
      },
      async pollUpdate(node, task) {
        const state = await pool().op<{ state: string; percent: number | null; messages: string[] }>(nodeRef(node), { op: 'firmware-task', taskUri: task.task_uri }).catch(driverError);
        if (!TASK_DONE.has(state.state)) return { finished: false, ok: false, message: `BMC task ${state.state}` };
        if (state.state !== 'Completed') return { finished: true, ok: false, message: `BMC task ${state.state}${state.messages.length ? `: ${state.messages.join('; ')}` : ''}` };
        const versions = await pool()
          .op<{ bios: string | null; bmc: string | null }>(nodeRef(node), { op: 'firmware-versions' })
          .catch(() => ({ bios: null, bmc: null }));
        return { finished: true, ok: true, message: 'BMC task Completed', versions };
      },
    },
    inspect: agentInspect(validate),
  };
}
