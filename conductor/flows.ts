/**
 * Provisioning flows: deploy, clean (automated or manual) and service run as ordered steps with
 * Ironic's semantics (interface, step, priority, args). The flow's state lives on the node
 * (driver_internal_info.flow) and each advance runs under the node lock from a deferred action,
 * so nothing waits while holding a node: a step either finishes now or parks the node in a wait
 * state (agent call-back, an agent command, a power transition, a `wait` timer, a `hold`) and the
 * event that ends the wait schedules the next advance. A conductor restart loses nothing.
 *
 * Fast-track: an agent that is connected and whose machine the BMC reports powered on is reused
 * (no boot to the ramdisk). After a flow the agent stays under a lease; when the lease expires an
 * available/manageable node is powered off and an active node is rebooted into its instance.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Json, Node } from './db/store.js';
import type { Task } from './task-manager.js';
import type { Conductor } from './manager.js';
import type { ProvisionState } from './states.js';
import { COMMANDS, type CommandName } from '../shared/commands.js';
import { errorMessage, InvalidInputError } from '../shared/errors.js';
import { targetRaidConfigSchema } from '../agent/raid-plan.js';

export type FlowKind = 'deploy' | 'clean' | 'service';

export interface Step {
  interface: string;
  step: string;
  priority: number;
  args: Json;
  /** Who runs it: the conductor itself, or the agent (as an agent command). */
  runner: 'conductor' | 'agent';
}

type Wait =
  | { type: 'agent'; token: string; since: string }
  /** boot_id: the agent boot the command was sent to (a new boot means the command is lost). */
  | { type: 'command'; token: string; command_id: string; boot_id?: string; /** the agent's step list (get_clean/deploy_steps) */ expansion?: boolean }
  | { type: 'timer'; token: string; until: string }
  | { type: 'hold'; token: string }
  | { type: 'power'; token: string; target: 'power on' | 'power off'; until: string };

export interface FlowState {
  kind: FlowKind;
  manual: boolean;
  steps: Step[];
  index: number;
  /** Agent steps are only known once the agent answered get_clean_steps. */
  expanded: boolean;
  fast_track: boolean;
  started_at: string;
  wait: Wait | null;
}

/** Steps the conductor runs itself, including flow control. */
const CONDUCTOR_STEPS = new Set(['deploy.boot_agent', 'raid.apply_configuration', 'deploy.write_image', 'deploy.prepare_instance_boot', 'deploy.boot_instance', 'power.power_on', 'power.power_off', 'power.reboot']);
/** Flow-control steps accepted in manual clean/service/deploy step lists (any interface name). */
const FLOW_CONTROL = new Set(['hold', 'wait']);
/** Agent clean steps → the agent command that runs them. */
const AGENT_STEP_COMMANDS: Record<string, CommandName> = {
  'deploy.erase_devices_metadata': 'clean.erase_devices_metadata',
  'deploy.erase_devices': 'clean.erase_devices',
  'deploy.burnin_cpu': 'clean.burnin_cpu',
  'raid.create_configuration': 'raid.create_configuration',
  'raid.delete_configuration': 'raid.delete_configuration',
};

const WAIT_STATE: Record<FlowKind, ProvisionState> = { deploy: 'wait call-back', clean: 'clean wait', service: 'service wait' };
const RUN_STATE: Record<FlowKind, ProvisionState> = { deploy: 'deploying', clean: 'cleaning', service: 'servicing' };
const HOLD_STATE: Record<FlowKind, ProvisionState> = { deploy: 'deploy hold', clean: 'clean hold', service: 'service hold' };

export function userStepSchemaError(kind: FlowKind, steps: unknown[]): string | undefined {
  for (const [i, s] of steps.entries()) {
    const o = s as Record<string, unknown>;
    if (typeof o !== 'object' || o === null || Array.isArray(o)) return `${kind}_steps.${i}: must be an object`;
    for (const k of Object.keys(o)) if (!['interface', 'step', 'args', 'priority'].includes(k)) return `${kind}_steps.${i}.${k}: unknown property`;
    if (typeof o.step !== 'string' || !o.step) return `${kind}_steps.${i}.step: required string`;
    if (o.interface !== undefined && typeof o.interface !== 'string') return `${kind}_steps.${i}.interface: must be a string`;
    if (o.priority !== undefined && (typeof o.priority !== 'number' || !Number.isInteger(o.priority) || o.priority < 0 || o.priority > 1000)) return `${kind}_steps.${i}.priority: must be an integer 0–1000`;
    if (o.args !== undefined && (typeof o.args !== 'object' || o.args === null || Array.isArray(o.args))) return `${kind}_steps.${i}.args: must be an object`;
    const args = (o.args ?? {}) as Record<string, unknown>;
    const name = `${o.interface ?? 'deploy'}.${o.step}`;
    const cmd = Object.hasOwn(AGENT_STEP_COMMANDS, name) ? AGENT_STEP_COMMANDS[name] : undefined;
    if (!FLOW_CONTROL.has(o.step) && !CONDUCTOR_STEPS.has(name) && !cmd) return `${kind}_steps.${i}: unknown step ${name}`;
    if (o.step === 'wait') {
      const secs = args.seconds;
      if (typeof secs !== 'number' || !Number.isInteger(secs) || secs < 0 || secs > 86_400) return `${kind}_steps.${i}.args.seconds: wait needs an integer number of seconds (0–86400)`;
      const extra = Object.keys(args).find((k) => k !== 'seconds');
      if (extra !== undefined) return `${kind}_steps.${i}.args.${extra}: unknown argument of wait`;
    } else if (cmd && cmd !== 'raid.create_configuration') {
      // The agent command's own parameter schema (the catalogue both sides share): a bad value is
      // a 400 here, before anything is saved, not an encoder error halfway through a flow.
      const r = COMMANDS[cmd].params.safeParse(args);
      if (!r.success) {
        const issue = r.error.issues[0]!;
        const keys = issue.code === 'unrecognized_keys' ? [...issue.path, issue.keys[0]] : issue.path;
        return `${kind}_steps.${i}.args${keys.length ? '.' + keys.map(String).join('.') : ''}: ${issue.code === 'unrecognized_keys' ? `unknown argument of ${name}` : issue.message}`;
      }
    } else {
      // Conductor steps (and RAID creation, which takes target_raid_config from the node) take no arguments.
      const extra = Object.keys(args)[0];
      if (extra !== undefined) return `${kind}_steps.${i}.args.${extra}: step ${name} takes no arguments${cmd ? ' (it uses the node\'s target_raid_config)' : ''}`;
    }
  }
  return undefined;
}

export interface FlowConfig {
  fastTrack: boolean;
  fastTrackTimeoutS: number;
  callbackTimeoutS: number;
  agentLostGraceS: number;
  powerTimeoutS: number;
  automatedClean: boolean;
  eraseDevicesPriority: number | null;
  eraseDevicesMetadataPriority: number | null;
}

export class FlowEngine {
  constructor(
    private readonly c: Conductor,
    private readonly cfg: FlowConfig,
    private readonly log: Logger,
  ) {
    const d = c.deferred;
    d.register('flow.continue', (task, args) => this.onContinue(task, args));
    d.register('flow.timeout', (task, args) => this.onTimeout(task, args));
    d.register('flow.power', (task, args) => this.onPowerPoll(task, args));
    d.register('fasttrack.expire', (task, args) => this.onLeaseExpired(task, args));
    d.register('flow.agent_lost', (task, args) => this.onAgentLost(task, args));
    c.hub.on('connected', (node, session) => void this.onAgentEvent(node.id, 'agent', undefined, session.bootId).catch((err) => this.log.warn({ err }, 'agent connect hook failed')));
    c.hub.on('disconnected', (nodeId, reason) => void this.onAgentGone(nodeId, reason).catch((err) => this.log.warn({ err }, 'agent disconnect hook failed')));
  }

  // ------------------------------------------------------------------ planning

  /** The deploy steps a node would run (conductor steps; agent in-band steps ride on them). */
  deploySteps(node: Node, userSteps?: Array<Record<string, unknown>>): Step[] {
    const steps: Step[] = [{ interface: 'deploy', step: 'boot_agent', priority: 100, args: {}, runner: 'conductor' }];
    if (softwareRaid(node)) steps.push({ interface: 'raid', step: 'apply_configuration', priority: 90, args: {}, runner: 'conductor' });
    steps.push(
      { interface: 'deploy', step: 'write_image', priority: 80, args: {}, runner: 'conductor' },
      { interface: 'deploy', step: 'prepare_instance_boot', priority: 60, args: {}, runner: 'conductor' },
      { interface: 'deploy', step: 'boot_instance', priority: 20, args: {}, runner: 'conductor' },
    );
    // User deploy steps (flow control or agent steps) slot in by priority, as Ironic merges them.
    for (const u of userSteps ?? []) steps.push(toStep(u, Number(u.priority ?? 0)));
    return steps.sort((a, b) => b.priority - a.priority);
  }

  /** Automated clean: the agent's steps with priority > 0 (overrides applied), highest first. */
  cleanStepsFromAgent(agentSteps: Array<Record<string, unknown>>): Step[] {
    const out: Step[] = [];
    for (const s of agentSteps) {
      const name = `${s.interface}.${s.step}`;
      let prio = Number(s.priority ?? 0);
      if (name === 'deploy.erase_devices' && this.cfg.eraseDevicesPriority !== null) prio = this.cfg.eraseDevicesPriority;
      if (name === 'deploy.erase_devices_metadata' && this.cfg.eraseDevicesMetadataPriority !== null) prio = this.cfg.eraseDevicesMetadataPriority;
      if (prio > 0 && AGENT_STEP_COMMANDS[name]) out.push({ interface: String(s.interface), step: String(s.step), priority: prio, args: {}, runner: 'agent' });
    }
    return out.sort((a, b) => b.priority - a.priority);
  }

  /**
   * A deploy runs the agent's deploy steps that have a priority (those its ramdisk was configured
   * to run on every deploy), merged by priority into what is still to come; conductor steps and
   * steps already in the flow are not duplicated.
   */
  private mergeAgentDeploySteps(flow: FlowState, agentSteps: Array<Record<string, unknown>>): void {
    const present = new Set(flow.steps.map((s) => `${s.interface}.${s.step}`));
    const add = agentSteps
      .filter((s) => Number(s.priority ?? 0) > 0 && AGENT_STEP_COMMANDS[`${s.interface}.${s.step}`] && !present.has(`${s.interface}.${s.step}`))
      .map((s): Step => ({ interface: String(s.interface), step: String(s.step), priority: Number(s.priority), args: {}, runner: 'agent' }));
    if (add.length === 0) return;
    const rest = [...flow.steps.slice(flow.index), ...add].sort((a, b) => b.priority - a.priority);
    flow.steps = [...flow.steps.slice(0, flow.index), ...rest];
  }

  /** What a node would run for `kind` (the steps API). Agent steps need a connected agent. */
  async previewSteps(node: Node, kind: FlowKind): Promise<{ steps: Step[]; complete: boolean }> {
    if (kind === 'deploy') {
      const flow: FlowState = { kind, manual: false, steps: this.deploySteps(node), index: 1, expanded: true, fast_track: false, started_at: '', wait: null };
      const known = node.driver_internal_info.agent_deploy_steps as { steps: Array<Record<string, unknown>> } | undefined;
      if (known) this.mergeAgentDeploySteps(flow, known.steps);
      return { steps: flow.steps, complete: Boolean(known) };
    }
    const known = node.driver_internal_info.agent_clean_steps as Array<Record<string, unknown>> | undefined;
    if (!known) return { steps: [], complete: false };
    return { steps: this.cleanStepsFromAgent(known), complete: true };
  }

  // ------------------------------------------------------------------ starting

  /**
   * Start a flow on a node already moved to deploying/cleaning/servicing (lock held). Runs the
   * first steps now; returns when the flow finished or parked.
   */
  async start(task: Task, kind: FlowKind, userSteps?: Array<Record<string, unknown>>): Promise<void> {
    const node = task.node;
    const needsAgent = this.c.drivers.get(node.driver).deploy.needsAgent;
    let steps: Step[];
    let expanded = true;
    let manual = false;
    if (kind === 'deploy') {
      steps = needsAgent ? this.deploySteps(node, userSteps) : [];
      expanded = !needsAgent; // the agent's own deploy steps join once it is up
    }
    else if (userSteps) {
      manual = true;
      steps = userSteps.map((u) => toStep(u, 0));
    } else if (!needsAgent || !this.cfg.automatedClean) steps = [];
    else {
      steps = [];
      expanded = false; // get_clean_steps from the agent first
    }
    // Deploy steps start with boot_agent already; clean/service need it when the agent runs steps.
    if (kind !== 'deploy' && needsAgent && (!expanded || steps.some((s) => s.runner === 'agent'))) steps.unshift({ interface: 'deploy', step: 'boot_agent', priority: 1000, args: {}, runner: 'conductor' });
    const flow: FlowState = { kind, manual, steps, index: 0, expanded, fast_track: false, started_at: new Date().toISOString(), wait: null };
    await this.save(task, flow);
    await this.c.store.cancelDeferred(node.id, 'a new flow started', 'fasttrack.expire');
    await this.advance(task, flow);
  }

  // ------------------------------------------------------------------ the loop

  private async advance(task: Task, flow: FlowState): Promise<void> {
    for (;;) {
      if (!flow.expanded && flow.steps[flow.index - 1]?.step === 'boot_agent') {
        // The agent is up: ask which steps it offers (automated clean: all of them; deploy: those
        // it gives a priority) and continue with them. A deploy reuses the list of the same boot.
        if (flow.kind === 'deploy') {
          const cached = task.node.driver_internal_info.agent_deploy_steps as { boot_id: string | null; steps: Array<Record<string, unknown>> } | undefined;
          const bootId = this.c.hub.sessions.get(task.node.id)?.bootId;
          if (cached && bootId && cached.boot_id === bootId) {
            this.mergeAgentDeploySteps(flow, cached.steps);
            flow.expanded = true;
            await this.save(task, flow);
            continue;
          }
        }
        const cmd = await this.sendAgent(task, flow.kind === 'deploy' ? 'deploy.get_deploy_steps' : 'clean.get_clean_steps', {});
        return this.park(task, flow, { type: 'command', token: randomUUID(), command_id: cmd, expansion: true }, this.cfg.callbackTimeoutS);
      }
      if (flow.index >= flow.steps.length) return this.finish(task, flow);
      const step = flow.steps[flow.index]!;
      await this.setCurrentStep(task, flow, step);
      const outcome = await this.runStep(task, flow, step);
      if (outcome === 'done') {
        flow.index++;
        await this.save(task, flow);
        continue;
      }
      return this.park(task, flow, outcome.wait, outcome.timeoutS);
    }
  }

  private async runStep(task: Task, flow: FlowState, step: Step): Promise<'done' | { wait: Wait; timeoutS?: number }> {
    const name = `${step.interface}.${step.step}`;
    const node = task.node;
    if (step.step === 'hold') return { wait: { type: 'hold', token: randomUUID() } };
    if (step.step === 'wait') {
      const until = new Date(Date.now() + Number(step.args.seconds ?? 0) * 1000);
      return { wait: { type: 'timer', token: randomUUID(), until: until.toISOString() } };
    }
    const cmdName = AGENT_STEP_COMMANDS[name];
    if (cmdName) {
      const params = cmdName === 'raid.create_configuration' ? { target_raid_config: node.driver_internal_info.target_raid_config ?? {} } : step.args;
      const id = await this.sendAgent(task, cmdName, params);
      return { wait: { type: 'command', token: randomUUID(), command_id: id }, timeoutS: this.cfg.callbackTimeoutS };
    }
    switch (name) {
      case 'deploy.boot_agent': {
        if (await this.fastTrackable(task)) {
          flow.fast_track = true;
          await this.c.history(node, `Fast-track: reusing the connected agent (no reboot) for ${flow.kind}`, 'provisioning', 'INFO');
          return 'done';
        }
        flow.fast_track = false;
        const hw = this.c.drivers.get(node.driver);
        await hw.management.setBootDevice(node, 'pxe', false, this.c.driverContextFor(task)).catch((err) => this.log.debug({ err: errorMessage(err) }, 'boot device not set'));
        // The old stream (if any) belongs to the previous boot.
        await this.powerCut(task, 'rebooting', 'node rebooting into the deploy ramdisk');
        await this.c.store.updateNode(node.id, { power_state: 'power on' });
        return { wait: { type: 'agent', token: randomUUID(), since: new Date().toISOString() }, timeoutS: this.cfg.callbackTimeoutS };
      }
      case 'raid.apply_configuration': {
        const id = await this.sendAgent(task, 'raid.create_configuration', { target_raid_config: node.driver_internal_info.target_raid_config ?? {} });
        return { wait: { type: 'command', token: randomUUID(), command_id: id }, timeoutS: this.cfg.callbackTimeoutS };
      }
      case 'deploy.write_image': {
        const params = deployImageParams(node);
        const raidRoot = node.driver_internal_info.raid_root_device;
        if (typeof raidRoot === 'string') params.target = raidRoot;
        else if (node.properties.root_device) params.root_device = node.properties.root_device;
        const id = await this.sendAgent(task, 'deploy.write_image', params);
        return { wait: { type: 'command', token: randomUUID(), command_id: id }, timeoutS: this.cfg.callbackTimeoutS };
      }
      case 'deploy.prepare_instance_boot': {
        await this.c.drivers.get(node.driver).management.setBootDevice(node, 'disk', true, this.c.driverContextFor(task)).catch((err) => {
          throw new Error(`setting the boot device to disk failed: ${errorMessage(err)}`);
        });
        return 'done';
      }
      case 'deploy.boot_instance': {
        // Fast-track keeps the agent under its lease (a rebuild reuses it); the reboot into the
        // instance happens when the lease ends. Otherwise reboot into the instance now.
        if (flow.fast_track && this.cfg.fastTrack) return 'done';
        await this.powerCut(task, 'rebooting', 'node rebooting into its instance');
        return 'done';
      }
      case 'power.power_on':
      case 'power.power_off': {
        const target = name === 'power.power_on' ? 'power on' : 'power off';
        if (target === 'power off') await this.powerCut(task, 'power off', 'powered off by a step');
        else await this.c.drivers.get(node.driver).power.setPowerState(node, target, this.c.driverContextFor(task), 0);
        return { wait: { type: 'power', token: randomUUID(), target, until: new Date(Date.now() + this.cfg.powerTimeoutS * 1000).toISOString() } };
      }
      case 'power.reboot':
        await this.powerCut(task, 'rebooting', 'rebooted by a step');
        return 'done';
    }
    throw new Error(`step ${name} has no implementation`);
  }

  /**
   * A power action that ends the ramdisk's boot: drop its stream and token (that boot is gone),
   * then ask the BMC. timeoutS 0: return once accepted (callers poll through deferred actions).
   */
  private async powerCut(task: Task, target: 'power off' | 'rebooting', reason: string, timeoutS = 0): Promise<void> {
    await this.c.endAgentBoot(task, reason);
    await this.c.drivers.get(task.node.driver).power.setPowerState(task.node, target, this.c.driverContextFor(task), timeoutS);
  }

  private async sendAgent(task: Task, name: CommandName, params: Json): Promise<string> {
    if (!this.c.hub.isConnected(task.node.id)) throw new Error(`the agent is not connected (needed for ${name})`);
    const id = randomUUID();
    await this.c.hub.sendCommand(task.node, id, name, params);
    return id;
  }

  /** Move to the wait (or hold) state, persist the wait, schedule whatever ends it. */
  private async park(task: Task, flow: FlowState, wait: Wait, timeoutS?: number): Promise<void> {
    if (wait.type === 'command') wait.boot_id ??= this.c.hub.sessions.get(task.node.id)?.bootId;
    flow.wait = wait;
    await this.save(task, flow);
    await this.c.moveNode(task, wait.type === 'hold' ? 'hold' : 'wait');
    const nodeId = task.node.id;
    if (wait.type === 'timer') await this.c.deferred.schedule(nodeId, 'flow.continue', { token: wait.token }, new Date(wait.until));
    if (wait.type === 'power') await this.c.deferred.schedule(nodeId, 'flow.power', { token: wait.token }, new Date(Date.now() + 500));
    if (timeoutS) await this.c.deferred.schedule(nodeId, 'flow.timeout', { token: wait.token }, new Date(Date.now() + timeoutS * 1000));
    // The event may already have happened (agent connected during the reboot call, a fast command).
    if (wait.type === 'agent' && this.c.hub.isConnected(nodeId)) await this.c.deferred.schedule(nodeId, 'flow.continue', { token: wait.token });
    if (wait.type === 'command') {
      const cmd = await this.c.store.getCommand(wait.command_id);
      if (cmd && cmd.status !== 'PENDING' && cmd.status !== 'RUNNING') await this.c.deferred.schedule(nodeId, 'flow.continue', { token: wait.token });
    }
  }

  /** An event (agent connected, command finished) for a node: continue its flow if it waits on it. */
  async onAgentEvent(nodeId: number, kind: 'agent' | 'command', commandId?: string, bootId?: string): Promise<void> {
    const node = await this.c.store.getNodeById(nodeId);
    const flow = node?.driver_internal_info.flow as FlowState | undefined;
    const w = flow?.wait;
    if (!w) return;
    if (kind === 'agent' && w.type === 'command' && w.boot_id && bootId && bootId !== w.boot_id) {
      // The machine rebooted under the command: its result died with the old boot.
      await this.c.deferred.schedule(nodeId, 'flow.agent_lost', { token: w.token, reason: `the agent came back from a new boot (${bootId}); the command's result is lost` });
      return;
    }
    if ((kind === 'agent' && w.type === 'agent') || (kind === 'command' && w.type === 'command' && w.command_id === commandId)) {
      await this.c.deferred.schedule(nodeId, 'flow.continue', { token: w.token });
    }
  }

  /** The stream of an agent a flow waits on dropped: give it the grace period to come back. */
  private async onAgentGone(nodeId: number, reason: string): Promise<void> {
    if (this.c.isStopping) return;
    const node = await this.c.store.getNodeById(nodeId);
    const w = (node?.driver_internal_info.flow as FlowState | undefined)?.wait;
    if (w?.type !== 'command') return;
    await this.c.deferred.schedule(nodeId, 'flow.agent_lost', { token: w.token, reason: `connection lost (${reason}) and not back within ${this.cfg.agentLostGraceS}s` }, new Date(Date.now() + this.cfg.agentLostGraceS * 1000));
  }

  private async onAgentLost(task: Task, args: Json): Promise<void> {
    const flow = this.current(task, args.token);
    const w = flow?.wait;
    if (!flow || w?.type !== 'command') return;
    const cmd = await this.c.store.getCommand(w.command_id);
    if (cmd && cmd.status !== 'PENDING' && cmd.status !== 'RUNNING') return; // the result made it
    const back = this.c.hub.sessions.get(task.node.id);
    if (back && (!w.boot_id || back.bootId === w.boot_id)) return; // reconnected from the same boot
    // Connected now, but from another boot: the machine restarted under the command.
    await this.failFlow(task, flow, new Error(`agent ${back ? 'restarted' : 'lost'} while running ${cmd?.name ?? w.command_id}: ${String(args.reason)}`));
  }

  /** API unhold: a held flow moves on with its next step. */
  async unhold(task: Task): Promise<void> {
    const flow = task.node.driver_internal_info.flow as FlowState | undefined;
    if (!flow?.wait || flow.wait.type !== 'hold') return;
    await this.c.deferred.schedule(task.node.id, 'flow.continue', { token: flow.wait.token });
  }

  private current(task: Task, token: unknown): FlowState | undefined {
    const flow = task.node.driver_internal_info.flow as FlowState | undefined;
    if (!flow?.wait || flow.wait.token !== token) return undefined; // stale: the flow moved on
    return flow;
  }

  private async onContinue(task: Task, args: Json): Promise<void> {
    const flow = this.current(task, args.token);
    if (!flow) return;
    const wait = flow.wait!;
    const state = task.node.provision_state as ProvisionState;
    try {
      if (state === HOLD_STATE[flow.kind]) {
        if (wait.type !== 'hold') return;
      } else if (state !== WAIT_STATE[flow.kind]) return;
      flow.wait = null;
      // Resume from hold goes through unhold → wait → resume, as Ironic's machine does.
      if (state === HOLD_STATE[flow.kind]) await this.c.moveNode(task, 'unhold');
      await this.c.moveNode(task, 'resume');
      if (wait.type === 'command') {
        const cmd = await this.c.store.getCommand(wait.command_id);
        if (!cmd) throw new Error(`agent command ${wait.command_id} vanished`);
        if (cmd.status !== 'SUCCEEDED') {
          throw new Error(`${cmd.name} ${cmd.status.toLowerCase()}${cmd.error ? `: ${cmd.error.code}: ${cmd.error.message}` : ''}`);
        }
        await this.onCommandResult(task, flow, cmd.name, cmd.result ?? {});
      }
      if (wait.type === 'command' && wait.expansion) flow.expanded = true;
      else flow.index++;
      await this.save(task, flow);
      await this.advance(task, flow);
    } catch (err) {
      await this.failFlow(task, flow, err);
    }
  }

  private async onCommandResult(task: Task, flow: FlowState, name: string, result: Json): Promise<void> {
    if (name === 'clean.get_clean_steps') {
      const all = Object.values((result.clean_steps as Record<string, Array<Record<string, unknown>>>) ?? {}).flat();
      await this.c.patchInternal(task, { agent_clean_steps: all });
      // flow.index already points past boot_agent: the agent's steps follow from here.
      flow.steps.push(...this.cleanStepsFromAgent(all));
      return;
    }
    if (name === 'deploy.get_deploy_steps') {
      const all = Object.values((result.deploy_steps as Record<string, Array<Record<string, unknown>>>) ?? {}).flat();
      await this.c.patchInternal(task, { agent_deploy_steps: { boot_id: this.c.hub.sessions.get(task.node.id)?.bootId ?? null, steps: all } });
      this.mergeAgentDeploySteps(flow, all);
      return;
    }
    if (name === 'raid.create_configuration') {
      await this.c.patchInternal(task, { raid_config: result.logical_disks ?? [], raid_root_device: result.root_device ?? null });
    }
    if (name === 'raid.delete_configuration') await this.c.patchInternal(task, { raid_config: [], raid_root_device: null });
    if (name === 'deploy.write_image') {
      await this.c.history(task.node, `Image written: ${result.bytes_written} bytes to ${result.target} (${result.checksum_algo} verified, ${result.disk_format})`, 'deploy', 'INFO');
    }
  }

  private async onTimeout(task: Task, args: Json): Promise<void> {
    const flow = this.current(task, args.token);
    if (!flow) return;
    const w = flow.wait!;
    const what = w.type === 'agent' ? 'the agent to call back' : w.type === 'command' ? `agent command ${w.command_id}` : w.type;
    await this.failFlow(task, flow, new Error(`timed out waiting for ${what}`));
  }

  private async onPowerPoll(task: Task, args: Json): Promise<void | { again: Date }> {
    const flow = this.current(task, args.token);
    if (!flow || flow.wait?.type !== 'power') return;
    const w = flow.wait;
    const ps = await this.c.drivers.get(task.node.driver).power.getPowerState(task.node, this.c.driverContextFor(task)).catch(() => null);
    if (ps === w.target) {
      await this.c.store.updateNode(task.node.id, { power_state: ps });
      await this.c.deferred.schedule(task.node.id, 'flow.continue', { token: w.token });
      return;
    }
    if (Date.now() > Date.parse(w.until)) return this.failFlow(task, flow, new Error(`power state did not reach "${w.target}" within ${this.cfg.powerTimeoutS}s`));
    return { again: new Date(Date.now() + 1000) };
  }

  private async finish(task: Task, flow: FlowState): Promise<void> {
    const node = task.node;
    const event = flow.kind === 'clean' && node.target_provision_state === 'manageable' ? 'manage' : 'done';
    await this.c.patchInternal(task, { flow: null, clean_step: null, deploy_step: null, service_step: null });
    // Timeouts of this flow's earlier waits would be no-ops (their tokens are stale); drop them.
    await this.c.store.cancelDeferred(node.id, 'flow finished', 'flow.timeout');
    await this.c.moveNode(task, event);
    const agentUp = this.c.hub.isConnected(node.id);
    if (agentUp && this.cfg.fastTrack) await this.c.startLease(task);
    else if (agentUp && flow.kind === 'clean') {
      // No fast-track: the ramdisk is done; power the machine off (Ironic tears cleaning down).
      await this.powerCut(task, 'power off', 'cleaning finished', undefined);
      await this.c.store.updateNode(node.id, { power_state: 'power off' });
    }
    await this.c.history(task.node, `${flow.kind} finished (${flow.steps.length} steps${flow.fast_track ? ', fast-track' : ''}): now ${task.node.provision_state}`, 'provisioning', 'INFO');
  }

  private async failFlow(task: Task, flow: FlowState, err: unknown): Promise<void> {
    const step = flow.steps[flow.index];
    const msg = `${flow.kind} step ${step ? `${step.interface}.${step.step}` : '(get steps)'} failed: ${errorMessage(err)}`;
    if (flow.wait?.type === 'command') this.c.hub.cancelCommand(task.node.id, flow.wait.command_id, 'flow failed');
    flow.wait = null;
    await this.save(task, flow);
    await this.c.store.cancelDeferred(task.node.id, 'flow failed', 'flow.timeout');
    const state = task.node.provision_state as ProvisionState;
    if ([RUN_STATE[flow.kind], WAIT_STATE[flow.kind], HOLD_STATE[flow.kind]].includes(state)) await this.c.failNode(task, 'fail', msg);
    else await this.c.store.updateNode(task.node.id, { last_error: msg });
  }

  /** The agent lease ended: available/manageable → power off; active → reboot into the instance. */
  private async onLeaseExpired(task: Task, args: Json): Promise<void> {
    const node = task.node;
    if (node.driver_internal_info.fast_track_lease_until !== args.until) return; // renewed or superseded
    await this.c.patchInternal(task, { fast_track_lease_until: null });
    const state = node.provision_state;
    if (!['available', 'manageable', 'active', 'enroll'].includes(state)) return;
    if (state === 'active') {
      await this.powerCut(task, 'rebooting', 'fast-track lease expired');
      await this.c.history(node, 'Fast-track lease expired: rebooted into the instance', 'provisioning', 'INFO');
    } else {
      await this.powerCut(task, 'power off', 'fast-track lease expired');
      await this.c.store.updateNode(node.id, { power_state: 'power off' });
      await this.c.history(node, 'Fast-track lease expired: powered off', 'provisioning', 'INFO');
    }
  }

  /** Ironic's is_fast_track: enabled, agent alive, no error, and the BMC says the power is on. */
  private async fastTrackable(task: Task): Promise<boolean> {
    const node = task.node;
    if (!this.cfg.fastTrack || node.driver_info.fast_track === false) return false;
    if (!this.c.hub.isConnected(node.id)) return false;
    if (node.driver_internal_info.firmware_update) return false;
    try {
      return (await this.c.drivers.get(node.driver).power.getPowerState(node, this.c.driverContextFor(task))) === 'power on';
    } catch {
      return false;
    }
  }

  private async setCurrentStep(task: Task, flow: FlowState, step: Step): Promise<void> {
    const cur = { interface: step.interface, step: step.step, priority: step.priority, args: step.args };
    await this.c.patchInternal(task, { [`${flow.kind}_step`]: cur });
  }

  private async save(task: Task, flow: FlowState): Promise<void> {
    await this.c.patchInternal(task, { flow });
  }
}

/**
 * write_image parameters from instance_info; throws naming the field when the image is not
 * deployable. The API calls it before accepting a deploy, the deploy step when it runs.
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

function toStep(u: Record<string, unknown>, priority: number): Step {
  const iface = String(u.interface ?? 'deploy');
  const step = String(u.step);
  const name = `${iface}.${step}`;
  return { interface: iface, step, priority, args: (u.args as Json) ?? {}, runner: AGENT_STEP_COMMANDS[name] ? 'agent' : 'conductor' };
}

function softwareRaid(node: Node): boolean {
  const t = node.driver_internal_info.target_raid_config as { logical_disks?: Array<{ controller?: string }> } | undefined;
  return Boolean(t?.logical_disks?.length && t.logical_disks.every((l) => l.controller === 'software'));
}

/** Validate a target_raid_config for the API (the agent re-validates against its disks). */
export function validateTargetRaidConfig(v: unknown): void {
  const r = targetRaidConfigSchema.safeParse(v);
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw new InvalidInputError(`target_raid_config.${i.path.join('.')}: ${i.message}`, 'target_raid_config');
  }
  for (const [n, ld] of r.data.logical_disks.entries()) {
    if (ld.controller !== 'software') throw new InvalidInputError(`target_raid_config.logical_disks.${n}.controller: only "software" RAID is supported`, 'target_raid_config');
  }
}
