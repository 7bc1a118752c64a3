/**
 * The flow engine: deploy, clean (automated or manual) and service run as ordered steps with
 * Ironic's semantics (interface, step, priority, args). It is a generic runner — every step comes
 * from the node's hardware type (steps/registry.ts); only the flow-control steps `hold` and `wait`
 * are its own. The flow's state lives on the node (driver_internal_info.flow) and each advance runs
 * under the node lock from a deferred action, so nothing waits while holding a node: a step either
 * finishes now or parks the node in a wait state (agent call-back, an agent command, a power
 * transition, a timer, a hold) and the event that ends the wait schedules the next advance.
 * A conductor restart loses nothing.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Json, Node, Store } from './db/store.js';
import type { Task } from './task-manager.js';
import type { NodeOps } from './node-ops.js';
import type { AgentLink } from './agent-link.js';
import type { DeferredScheduler } from './deferred.js';
import type { DriverRegistry } from './drivers/registry.js';
import type { StepContext, StepOutcome } from './drivers/base.js';
import { fastTrackable, type FastTrackLease } from './fast-track.js';
import { internalInfo, type FlowState, type Step, type Wait } from './internal-info.js';
import { FLOW_STATES, flowInProgressStates, type FlowKind, type ProvisionState } from './states.js';
import { cleanStepsFromAgent, mergeAgentDeploySteps, planFlow, type FlowSettings } from './flow-plan.js';
import { stepName, stepsOf } from './steps/registry.js';
import type { CommandName } from '../shared/commands.js';
import { errorMessage } from '../shared/errors.js';

export type { FlowKind, FlowState, Step, FlowSettings };

export interface FlowDeps {
  store: Store;
  ops: NodeOps;
  agents: AgentLink;
  deferred: Pick<DeferredScheduler, 'register' | 'schedule'>;
  drivers: DriverRegistry;
  lease: FastTrackLease;
  settings: FlowSettings;
  log: Logger;
  /** A stopping conductor does not start agent-lost grace timers (the agents are being closed on purpose). */
  isStopping(): boolean;
}

export class FlowEngine {
  private readonly store: Store;
  private readonly ops: NodeOps;
  private readonly agents: AgentLink;
  private readonly cfg: FlowSettings;

  constructor(private readonly d: FlowDeps) {
    this.store = d.store;
    this.ops = d.ops;
    this.agents = d.agents;
    this.cfg = d.settings;
    const def = d.deferred;
    def.register('flow.continue', (task, args) => this.onContinue(task, args));
    def.register('flow.timeout', (task, args) => this.onTimeout(task, args));
    def.register('flow.power', (task, args) => this.onPowerPoll(task, args));
    def.register('flow.agent_lost', (task, args) => this.onAgentLost(task, args));
    const warn = (what: string) => (err: unknown) => d.log.warn({ err }, what);
    d.agents.on('connected', (node, session) => void this.onAgentEvent(node.id, 'agent', undefined, session.bootId ?? undefined).catch(warn('agent connect hook failed')));
    d.agents.on('disconnected', (nodeId, reason) => void this.onAgentGone(nodeId, reason).catch(warn('agent disconnect hook failed')));
  }

  /**
   * Start a flow on a node already moved to deploying/cleaning/servicing (lock held). Runs the
   * first steps now; returns when the flow finished or parked.
   */
  async start(task: Task, kind: FlowKind, userSteps?: Array<Record<string, unknown>>): Promise<void> {
    const flow = planFlow(this.d.drivers.get(task.node.driver), task.node, kind, this.cfg, userSteps);
    await this.save(task, flow);
    await this.d.lease.cancel(task.node.id, 'a new flow started');
    try {
      await this.advance(task, flow);
    } catch (err) {
      // A step that fails right away fails the flow the way a resumed one does: naming the step.
      await this.failFlow(task, flow, err);
    }
  }

  /** Its conductor died mid-flow (no wait, lock released by takeover): safe to go on here? Between boot_agent and the agent's step list (a read), or in a repeatable step. */
  canResumeOrphaned(node: Node): boolean {
    const flow = internalInfo(node).flow;
    if (!flow || flow.wait) return false;
    if (!flow.expanded && flow.steps[flow.index - 1]?.step === 'boot_agent') return true;
    const step = flow.steps[flow.index];
    return Boolean(step && stepsOf(this.d.drivers.get(node.driver)).get(stepName(step))?.repeatable);
  }

  /** Runs the orphaned flow on from its current step (see canResumeOrphaned), under the node lock. */
  async resumeOrphaned(task: Task, dead: string): Promise<void> {
    const found = internalInfo(task.node).flow;
    if (!found || found.wait || !this.canResumeOrphaned(task.node)) return;
    const flow = structuredClone(found);
    const step = flow.steps[flow.index];
    await this.ops.history(task.node, `Conductor ${dead} went offline in the middle of ${flow.kind}${step ? ` step ${stepName(step)}` : ''}; resuming it here (the step is safe to repeat)`, 'takeover', 'WARNING');
    try {
      await this.advance(task, flow);
    } catch (err) {
      await this.failFlow(task, flow, err);
    }
  }

  private async advance(task: Task, flow: FlowState): Promise<void> {
    const hw = this.d.drivers.get(task.node.driver);
    for (;;) {
      if (!flow.expanded && flow.steps[flow.index - 1]?.step === 'boot_agent') {
        // The agent is up: ask which steps it offers (automated clean: all of them; deploy: those
        // it gives a priority) and continue with them. A deploy reuses the list of the same boot.
        if (flow.kind === 'deploy') {
          const cached = internalInfo(task.node).agent_deploy_steps;
          const bootId = this.agents.bootId(task.node.id);
          if (cached && bootId && cached.boot_id === bootId) {
            mergeAgentDeploySteps(hw, flow, cached.steps);
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
      await this.ops.patchInternal(task, { [`${flow.kind}_step`]: { interface: step.interface, step: step.step, priority: step.priority, args: step.args } });
      const outcome = await this.runStep(task, flow, step);
      if (outcome === 'done') {
        flow.index++;
        await this.save(task, flow);
        continue;
      }
      return this.park(task, flow, outcome.wait, outcome.timeoutS);
    }
  }

  private async runStep(task: Task, flow: FlowState, step: Step): Promise<StepOutcome> {
    if (step.step === 'hold') return { wait: { type: 'hold', token: randomUUID() } };
    if (step.step === 'wait') return { wait: { type: 'timer', token: randomUUID(), until: new Date(Date.now() + Number(step.args.seconds ?? 0) * 1000).toISOString() } };
    const def = stepsOf(this.d.drivers.get(task.node.driver)).get(stepName(step));
    if (!def) throw new Error(`step ${stepName(step)} is not offered by hardware type ${task.node.driver}`);
    const ctx = this.stepContext(task, flow);
    if (def.agentCommand) return ctx.agentCommand(def.agentCommand, def.params ? def.params(ctx, step.args) : step.args);
    if (!def.run) throw new Error(`step ${stepName(step)} has no implementation`);
    return def.run(ctx, step.args);
  }

  private stepContext(task: Task, flow: FlowState): StepContext {
    return {
      task,
      info: internalInfo(task.node),
      flow,
      ops: this.ops,
      hw: this.d.drivers.get(task.node.driver),
      settings: this.cfg,
      log: this.d.log,
      agentCommand: async (name, params) => ({ wait: { type: 'command', token: randomUUID(), command_id: await this.sendAgent(task, name, params) }, timeoutS: this.cfg.callbackTimeoutS }),
      fastTrackable: () => fastTrackable({ enabled: this.cfg.fastTrack, agents: this.agents, drivers: this.d.drivers, ops: this.ops }, task),
    };
  }

  private async sendAgent(task: Task, name: CommandName, params: Json): Promise<string> {
    if (!this.agents.isConnected(task.node.id)) throw new Error(`the agent is not connected (needed for ${name})`);
    const id = randomUUID();
    await this.agents.sendCommand(task.node, id, name, params);
    return id;
  }

  /** Move to the wait (or hold) state, persist the wait, schedule whatever ends it. */
  private async park(task: Task, flow: FlowState, wait: Wait, timeoutS?: number): Promise<void> {
    if (wait.type === 'command') wait.boot_id ??= this.agents.bootId(task.node.id);
    flow.wait = wait;
    await this.save(task, flow);
    await this.ops.move(task, wait.type === 'hold' ? 'hold' : 'wait');
    const nodeId = task.node.id;
    const sched = this.d.deferred;
    if (wait.type === 'timer') await sched.schedule(nodeId, 'flow.continue', { token: wait.token }, new Date(wait.until));
    if (wait.type === 'power') await sched.schedule(nodeId, 'flow.power', { token: wait.token }, new Date(Date.now() + 500));
    if (timeoutS) await sched.schedule(nodeId, 'flow.timeout', { token: wait.token }, new Date(Date.now() + timeoutS * 1000));
    // The event may already have happened (agent connected during the reboot call, a fast command).
    if (wait.type === 'agent' && this.agents.isConnected(nodeId)) await sched.schedule(nodeId, 'flow.continue', { token: wait.token });
    if (wait.type === 'command') {
      const cmd = await this.store.getCommand(wait.command_id);
      if (cmd && cmd.status !== 'PENDING' && cmd.status !== 'RUNNING') await sched.schedule(nodeId, 'flow.continue', { token: wait.token });
    }
  }

  /** An event (agent connected, command finished) for a node: continue its flow if it waits on it. */
  async onAgentEvent(nodeId: number, kind: 'agent' | 'command', commandId?: string, bootId?: string): Promise<void> {
    const node = await this.store.getNodeById(nodeId);
    const w = node ? internalInfo(node).flow?.wait : undefined;
    if (!w) return;
    if (kind === 'agent' && w.type === 'command' && w.boot_id && bootId && bootId !== w.boot_id) {
      // The machine rebooted under the command: its result died with the old boot.
      await this.d.deferred.schedule(nodeId, 'flow.agent_lost', { token: w.token, reason: `the agent came back from a new boot (${bootId}); the command's result is lost` });
      return;
    }
    if ((kind === 'agent' && w.type === 'agent') || (kind === 'command' && w.type === 'command' && w.command_id === commandId)) {
      await this.d.deferred.schedule(nodeId, 'flow.continue', { token: w.token });
    }
  }

  /** The stream of an agent a flow waits on dropped: give it the grace period to come back. */
  private async onAgentGone(nodeId: number, reason: string): Promise<void> {
    if (this.d.isStopping()) return;
    const node = await this.store.getNodeById(nodeId);
    const w = node ? internalInfo(node).flow?.wait : undefined;
    if (w?.type !== 'command') return;
    await this.d.deferred.schedule(nodeId, 'flow.agent_lost', { token: w.token, reason: `connection lost (${reason}) and not back within ${this.cfg.agentLostGraceS}s` }, new Date(Date.now() + this.cfg.agentLostGraceS * 1000));
  }

  private async onAgentLost(task: Task, args: Json): Promise<void> {
    const flow = this.current(task, args.token);
    const w = flow?.wait;
    if (!flow || w?.type !== 'command') return;
    const cmd = await this.store.getCommand(w.command_id);
    if (cmd && cmd.status !== 'PENDING' && cmd.status !== 'RUNNING') return; // the result made it
    const back = this.agents.bootId(task.node.id);
    if (back !== undefined && (!w.boot_id || back === w.boot_id)) return; // reconnected from the same boot
    // Connected now, but from another boot: the machine restarted under the command.
    await this.failFlow(task, flow, new Error(`agent ${back !== undefined ? 'restarted' : 'lost'} while running ${cmd?.name ?? w.command_id}: ${String(args.reason)}`));
  }

  /** API unhold: a held flow moves on with its next step. */
  async unhold(task: Task): Promise<void> {
    const flow = internalInfo(task.node).flow;
    if (!flow?.wait || flow.wait.type !== 'hold') return;
    await this.d.deferred.schedule(task.node.id, 'flow.continue', { token: flow.wait.token });
  }

  /** API abort (the node already moved): the flow stops here — no more steps, nothing waiting on its behalf. */
  async abort(task: Task): Promise<void> {
    const w = internalInfo(task.node).flow?.wait;
    if (w?.type === 'command') this.agents.cancelCommand(task.node.id, w.command_id, 'aborted');
    await this.store.cancelDeferred(task.node.id, 'aborted');
    await this.ops.patchInternal(task, { flow: null });
  }

  private current(task: Task, token: unknown): FlowState | undefined {
    const flow = internalInfo(task.node).flow;
    if (!flow?.wait || flow.wait.token !== token) return undefined; // stale: the flow moved on
    return structuredClone(flow);
  }

  private async onContinue(task: Task, args: Json): Promise<void> {
    const flow = this.current(task, args.token);
    if (!flow) return;
    const wait = flow.wait!;
    const state = task.node.provision_state as ProvisionState;
    const fs = FLOW_STATES[flow.kind];
    try {
      if (state === fs.hold) {
        if (wait.type !== 'hold') return;
      } else if (state !== fs.wait) return;
      flow.wait = null;
      // Resume from hold goes through unhold → wait → resume, as Ironic's machine does.
      if (state === fs.hold) await this.ops.move(task, 'unhold');
      await this.ops.move(task, 'resume');
      if (wait.type === 'command') {
        const cmd = await this.store.getCommand(wait.command_id);
        if (!cmd) throw new Error(`agent command ${wait.command_id} vanished`);
        if (cmd.status !== 'SUCCEEDED') throw new Error(`${cmd.name} ${cmd.status.toLowerCase()}${cmd.error ? `: ${cmd.error.code}: ${cmd.error.message}` : ''}`);
        await this.onCommandResult(task, flow, cmd.name, cmd.result ?? {}, Boolean(wait.expansion));
      }
      if (wait.type === 'command' && wait.expansion) flow.expanded = true;
      else flow.index++;
      await this.save(task, flow);
      await this.advance(task, flow);
    } catch (err) {
      await this.failFlow(task, flow, err);
    }
  }

  private async onCommandResult(task: Task, flow: FlowState, name: string, result: Json, expansion: boolean): Promise<void> {
    const hw = this.d.drivers.get(task.node.driver);
    if (expansion && name === 'clean.get_clean_steps') {
      const all = Object.values((result.clean_steps as Record<string, Array<Record<string, unknown>>>) ?? {}).flat();
      await this.ops.patchInternal(task, { agent_clean_steps: all });
      // flow.index already points past boot_agent: the agent's steps follow from here.
      flow.steps.push(...cleanStepsFromAgent(hw, this.cfg, all));
      return;
    }
    if (expansion && name === 'deploy.get_deploy_steps') {
      const all = Object.values((result.deploy_steps as Record<string, Array<Record<string, unknown>>>) ?? {}).flat();
      await this.ops.patchInternal(task, { agent_deploy_steps: { boot_id: this.agents.bootId(task.node.id) ?? null, steps: all } });
      mergeAgentDeploySteps(hw, flow, all);
      return;
    }
    // The step that sent the command handles its result (RAID results, image written, …).
    const step = flow.steps[flow.index];
    const def = step ? stepsOf(hw).get(stepName(step)) : undefined;
    if (def?.onResult) await def.onResult(this.stepContext(task, flow), result);
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
    const ps = await this.d.drivers.get(task.node.driver).power.getPowerState(task.node, this.ops.driverContext(task)).catch(() => null);
    if (ps === w.target) {
      await this.store.updateNode(task.node.id, { power_state: ps });
      await this.d.deferred.schedule(task.node.id, 'flow.continue', { token: w.token });
      return;
    }
    if (Date.now() > Date.parse(w.until)) return this.failFlow(task, flow, new Error(`power state did not reach "${w.target}" within ${this.cfg.powerTimeoutS}s`));
    return { again: new Date(Date.now() + 1000) };
  }

  private async finish(task: Task, flow: FlowState): Promise<void> {
    const node = task.node;
    const event = flow.kind === 'clean' && node.target_provision_state === 'manageable' ? 'manage' : 'done';
    await this.ops.patchInternal(task, { flow: null, clean_step: null, deploy_step: null, service_step: null });
    // Timeouts of this flow's earlier waits would be no-ops (their tokens are stale); drop them.
    await this.store.cancelDeferred(node.id, 'flow finished', 'flow.timeout');
    await this.ops.move(task, event);
    const agentUp = this.agents.isConnected(node.id);
    if (agentUp && this.cfg.fastTrack) await this.d.lease.start(task);
    else if (agentUp && flow.kind === 'clean') {
      // No fast-track: the ramdisk is done; power the machine off (Ironic tears cleaning down).
      await this.ops.powerCut(task, 'power off', 'cleaning finished');
      await this.store.updateNode(node.id, { power_state: 'power off' });
    }
    await this.ops.history(task.node, `${flow.kind} finished (${flow.steps.length} steps${flow.fast_track ? ', fast-track' : ''}): now ${task.node.provision_state}`, 'provisioning', 'INFO');
  }

  private async failFlow(task: Task, flow: FlowState, err: unknown): Promise<void> {
    const step = flow.steps[flow.index];
    const msg = `${flow.kind} step ${step ? stepName(step) : '(get steps)'} failed: ${errorMessage(err)}`;
    if (flow.wait?.type === 'command') this.agents.cancelCommand(task.node.id, flow.wait.command_id, 'flow failed');
    flow.wait = null;
    await this.save(task, flow);
    await this.store.cancelDeferred(task.node.id, 'flow failed', 'flow.timeout');
    if (flowInProgressStates(flow.kind).includes(task.node.provision_state as ProvisionState)) await this.ops.fail(task, 'fail', msg);
    else await this.store.updateNode(task.node.id, { last_error: msg });
  }

  private async save(task: Task, flow: FlowState): Promise<void> {
    await this.ops.patchInternal(task, { flow });
  }
}
