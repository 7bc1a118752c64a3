/**
 * The steps a hardware type can run, gathered from its interfaces (each interface owns its steps,
 * as in Ironic), plus the two flow-control steps every flow understands (`hold`, `wait`). The flow
 * engine plans and runs steps only through this registry; the API validates user step lists with
 * it before anything is saved.
 */
import type { Json, Node } from '../db/store.js';
import { INTERFACES, type HardwareType, type StepDefinition } from '../drivers/base.js';
import type { InternalInfo, Step } from '../internal-info.js';
import type { FlowKind } from '../states.js';

/** Flow-control steps accepted in any step list, under any interface name. */
export const FLOW_CONTROL_STEPS: ReadonlySet<string> = new Set(['hold', 'wait']);

export const stepName = (s: { interface?: unknown; step?: unknown }): string => `${String(s.interface)}.${String(s.step)}`;

export class StepRegistry {
  private readonly byName = new Map<string, StepDefinition>();

  constructor(hw: HardwareType) {
    for (const iface of INTERFACES) for (const def of hw[iface].steps ?? []) this.byName.set(stepName(def), def);
  }

  get(name: string): StepDefinition | undefined {
    return this.byName.get(name);
  }

  /** For people: the default deploy in order (a conditional step marked `?`) and how many steps in all. */
  describe(): { deploy: string[]; steps: number } {
    const deploy = [...this.byName.values()]
      .filter((d) => d.deployPriority !== undefined)
      .sort((a, b) => b.deployPriority! - a.deployPriority!)
      .map((d) => `${stepName(d)}${d.appliesTo ? '?' : ''}`);
    return { deploy, steps: this.byName.size };
  }

  /** Runs as an agent command? */
  isAgentStep(name: string): boolean {
    return Boolean(this.byName.get(name)?.agentCommand);
  }

  /** The default deploy: every step with a deploy priority that applies to this node, highest first; user steps merged in by priority. */
  deploySteps(node: Node, info: InternalInfo, userSteps?: Array<Record<string, unknown>>): Step[] {
    const steps: Step[] = [];
    for (const def of this.byName.values()) {
      if (def.deployPriority === undefined || (def.appliesTo && !def.appliesTo(node, info))) continue;
      steps.push({ interface: def.interface, step: def.step, priority: def.deployPriority, args: {}, runner: def.agentCommand ? 'agent' : 'conductor' });
    }
    for (const u of userSteps ?? []) steps.push(this.toStep(u, Number(u.priority ?? 0)));
    return steps.sort((a, b) => b.priority - a.priority);
  }

  /** A step from a user's (or the agent's) step description. */
  toStep(u: Record<string, unknown>, priority: number): Step {
    const iface = String(u.interface ?? 'deploy');
    const step = String(u.step);
    return { interface: iface, step, priority, args: (u.args as Json) ?? {}, runner: this.isAgentStep(`${iface}.${step}`) ? 'agent' : 'conductor' };
  }

  /** Agent-offered steps this hardware type knows, with a priority > 0 (after `override`), highest first. */
  fromAgent(agentSteps: Array<Record<string, unknown>>, override: (name: string, priority: number) => number = (_n, p) => p): Step[] {
    const out: Step[] = [];
    for (const s of agentSteps) {
      const name = stepName(s);
      const prio = override(name, Number(s.priority ?? 0));
      if (prio > 0 && this.isAgentStep(name)) out.push({ interface: String(s.interface), step: String(s.step), priority: prio, args: {}, runner: 'agent' });
    }
    return out.sort((a, b) => b.priority - a.priority);
  }

  /** Validates a user step list (clean_steps, deploy_steps, service_steps): the first problem, naming the field, or undefined. */
  validate(kind: FlowKind, steps: unknown[]): string | undefined {
    for (const [i, s] of steps.entries()) {
      const at = `${kind}_steps.${i}`;
      const o = s as Record<string, unknown>;
      if (typeof o !== 'object' || o === null || Array.isArray(o)) return `${at}: must be an object`;
      for (const k of Object.keys(o)) if (!['interface', 'step', 'args', 'priority'].includes(k)) return `${at}.${k}: unknown property`;
      if (typeof o.step !== 'string' || !o.step) return `${at}.step: required string`;
      if (o.interface !== undefined && typeof o.interface !== 'string') return `${at}.interface: must be a string`;
      if (o.priority !== undefined && (typeof o.priority !== 'number' || !Number.isInteger(o.priority) || o.priority < 0 || o.priority > 1000)) return `${at}.priority: must be an integer 0–1000`;
      if (o.args !== undefined && (typeof o.args !== 'object' || o.args === null || Array.isArray(o.args))) return `${at}.args: must be an object`;
      const args = (o.args ?? {}) as Record<string, unknown>;
      const name = `${o.interface ?? 'deploy'}.${o.step}`;
      if (o.step === 'wait') {
        const secs = args.seconds;
        if (typeof secs !== 'number' || !Number.isInteger(secs) || secs < 0 || secs > 86_400) return `${at}.args.seconds: wait needs an integer number of seconds (0–86400)`;
        const extra = Object.keys(args).find((k) => k !== 'seconds');
        if (extra !== undefined) return `${at}.args.${extra}: unknown argument of wait`;
        continue;
      }
      const def = FLOW_CONTROL_STEPS.has(o.step) ? undefined : this.byName.get(name);
      if (!def && !FLOW_CONTROL_STEPS.has(o.step)) return `${at}: unknown step ${name}`;
      if (def?.args) {
        // The step's own argument schema (for agent steps: the command catalogue both sides
        // share): a bad value is a 400 here, not an encoder error halfway through a flow.
        const r = def.args.safeParse(args);
        if (!r.success) {
          const issue = r.error.issues[0]!;
          const keys = issue.code === 'unrecognized_keys' ? [...issue.path, issue.keys[0]] : issue.path;
          return `${at}.args${keys.length ? '.' + keys.map(String).join('.') : ''}: ${issue.code === 'unrecognized_keys' ? `unknown argument of ${name}` : issue.message}`;
        }
      } else {
        const extra = Object.keys(args)[0];
        if (extra !== undefined) return `${at}.args.${extra}: step ${name} takes no arguments${def?.noArgsReason ? ` (${def.noArgsReason})` : ''}`;
      }
    }
    return undefined;
  }
}

const cache = new WeakMap<HardwareType, StepRegistry>();

/** The step registry of a hardware type (built once). */
export function stepsOf(hw: HardwareType): StepRegistry {
  let r = cache.get(hw);
  if (!r) cache.set(hw, (r = new StepRegistry(hw)));
  return r;
}
