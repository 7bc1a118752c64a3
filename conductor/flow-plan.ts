/**
 * Planning a flow's steps, without running anything: the default deploy of a node's hardware
 * type, a manual step list, an automated clean from what the agent offers (with the operator's
 * priority overrides), the agent's deploy steps merged in by priority, and the preview the steps
 * API shows. The flow engine (flows.ts) executes what is planned here.
 */
import type { Node } from './db/store.js';
import type { HardwareType } from './drivers/base.js';
import { internalInfo, type FlowState, type Step } from './internal-info.js';
import { stepName, stepsOf } from './steps/registry.js';
import type { FlowKind } from './states.js';

export interface FlowSettings {
  fastTrack: boolean;
  fastTrackTimeoutS: number;
  callbackTimeoutS: number;
  agentLostGraceS: number;
  powerTimeoutS: number;
  automatedClean: boolean;
  eraseDevicesPriority: number | null;
  eraseDevicesMetadataPriority: number | null;
}

const BOOT_AGENT: Step = { interface: 'deploy', step: 'boot_agent', priority: 1000, args: {}, runner: 'conductor' };

/** The first plan of a flow: its steps and whether the agent's own steps are still to be asked for. */
export function planFlow(hw: HardwareType, node: Node, kind: FlowKind, settings: FlowSettings, userSteps?: Array<Record<string, unknown>>): FlowState {
  const reg = stepsOf(hw);
  const needsAgent = hw.deploy.needsAgent;
  let steps: Step[];
  let expanded = true;
  let manual = false;
  if (kind === 'deploy') {
    steps = reg.deploySteps(node, internalInfo(node), userSteps);
    expanded = !needsAgent; // the agent's own deploy steps join once it is up
  } else if (userSteps) {
    manual = true;
    steps = userSteps.map((u) => reg.toStep(u, 0));
  } else if (!needsAgent || !settings.automatedClean) steps = [];
  else {
    steps = [];
    expanded = false; // get_clean_steps from the agent first
  }
  // Deploy steps start with boot_agent already; clean/service need it when the agent runs steps.
  if (kind !== 'deploy' && needsAgent && (!expanded || steps.some((s) => s.runner === 'agent'))) steps.unshift({ ...BOOT_AGENT });
  return { kind, manual, steps, index: 0, expanded, fast_track: false, started_at: new Date().toISOString(), wait: null };
}

/** Automated clean: the agent's steps with priority > 0 (the operator's overrides applied), highest first. */
export function cleanStepsFromAgent(hw: HardwareType, settings: FlowSettings, agentSteps: Array<Record<string, unknown>>): Step[] {
  return stepsOf(hw).fromAgent(agentSteps, (name, prio) => {
    if (name === 'deploy.erase_devices' && settings.eraseDevicesPriority !== null) return settings.eraseDevicesPriority;
    if (name === 'deploy.erase_devices_metadata' && settings.eraseDevicesMetadataPriority !== null) return settings.eraseDevicesMetadataPriority;
    return prio;
  });
}

/**
 * A deploy runs the agent's deploy steps that have a priority (those its ramdisk was configured
 * to run on every deploy), merged by priority into what is still to come; conductor steps and
 * steps already in the flow are not duplicated.
 */
export function mergeAgentDeploySteps(hw: HardwareType, flow: FlowState, agentSteps: Array<Record<string, unknown>>): void {
  const present = new Set(flow.steps.map(stepName));
  const add = stepsOf(hw)
    .fromAgent(agentSteps)
    .filter((s) => !present.has(stepName(s)));
  if (add.length === 0) return;
  const rest = [...flow.steps.slice(flow.index), ...add].sort((a, b) => b.priority - a.priority);
  flow.steps = [...flow.steps.slice(0, flow.index), ...rest];
}

/** What a node would run for `kind` (the steps API). Agent steps are known after the agent's first answer. */
export function previewSteps(hw: HardwareType, node: Node, kind: FlowKind, settings: FlowSettings): { steps: Step[]; complete: boolean } {
  const info = internalInfo(node);
  if (kind === 'deploy') {
    const flow: FlowState = { kind, manual: false, steps: stepsOf(hw).deploySteps(node, info), index: 1, expanded: true, fast_track: false, started_at: '', wait: null };
    const known = info.agent_deploy_steps;
    if (known) mergeAgentDeploySteps(hw, flow, known.steps);
    return { steps: flow.steps, complete: Boolean(known) };
  }
  const known = info.agent_clean_steps;
  if (!known) return { steps: [], complete: false };
  return { steps: cleanStepsFromAgent(hw, settings, known), complete: true };
}
