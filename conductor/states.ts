/**
 * The provision state machine: Ironic's states and transitions, as one table.
 *
 * TRANSITIONS[state][event] = { to, target? }. `target` is the target_provision_state recorded
 * when the event starts a long action (e.g. deploy from available targets active); transitions
 * without `target` keep whatever target the action set (and a stable destination clears it).
 * Nothing else in the conductor decides which moves are legal.
 */
import { InvalidStateError, InvalidInputError } from '../shared/errors.js';

export const STATES = [
  'enroll', 'verifying', 'manageable', 'inspecting', 'inspect wait', 'inspect failed', 'available',
  'deploying', 'wait call-back', 'deploy hold', 'deploy failed', 'active', 'deleting', 'cleaning',
  'clean wait', 'clean hold', 'clean failed', 'error', 'adopting', 'adopt failed', 'rescuing',
  'rescue wait', 'rescue', 'rescue failed', 'unrescuing', 'unrescue failed', 'servicing',
  'service wait', 'service hold', 'service failed'
] as const;
export type ProvisionState = (typeof STATES)[number];

export const EVENTS = [
  'manage', 'provide', 'inspect', 'clean', 'deploy', 'rebuild', 'delete', 'done', 'fail', 'wait',
  'resume', 'abort', 'hold', 'unhold', 'adopt', 'rescue', 'unrescue', 'service'
] as const;
export type ProvisionEvent = (typeof EVENTS)[number];

interface Edge {
  to: ProvisionState;
  target?: ProvisionState;
}

type Table = { [S in ProvisionState]: Partial<Record<ProvisionEvent, Edge>> };

export const TRANSITIONS: Table = {
  enroll: { manage: { to: 'verifying', target: 'manageable' } },
  verifying: { done: { to: 'manageable' }, fail: { to: 'enroll' } },
  manageable: {
    provide: { to: 'cleaning', target: 'available' },
    clean: { to: 'cleaning', target: 'manageable' },
    inspect: { to: 'inspecting', target: 'manageable' },
    adopt: { to: 'adopting', target: 'active' },
    manage: { to: 'verifying', target: 'manageable' },
  },
  inspecting: {
    done: { to: 'manageable' },
    fail: { to: 'inspect failed' },
    wait: { to: 'inspect wait' },
  },
  'inspect wait': {
    done: { to: 'manageable' },
    resume: { to: 'inspecting' },
    fail: { to: 'inspect failed' },
    abort: { to: 'inspect failed' },
  },
  'inspect failed': {
    manage: { to: 'manageable' },
    inspect: { to: 'inspecting', target: 'manageable' },
  },
  available: {
    deploy: { to: 'deploying', target: 'active' },
    manage: { to: 'manageable' },
  },
  deploying: {
    done: { to: 'active' },
    fail: { to: 'deploy failed' },
    wait: { to: 'wait call-back' },
    hold: { to: 'deploy hold' },
  },
  'wait call-back': {
    resume: { to: 'deploying' },
    hold: { to: 'deploy hold' },
    fail: { to: 'deploy failed' },
    abort: { to: 'deploy failed' },
    delete: { to: 'deleting', target: 'available' },
  },
  'deploy hold': {
    unhold: { to: 'wait call-back' },
    fail: { to: 'deploy failed' },
    abort: { to: 'deploy failed' },
    delete: { to: 'deleting', target: 'available' },
  },
  'deploy failed': {
    deploy: { to: 'deploying', target: 'active' },
    rebuild: { to: 'deploying', target: 'active' },
    delete: { to: 'deleting', target: 'available' },
  },
  active: {
    rebuild: { to: 'deploying', target: 'active' },
    delete: { to: 'deleting', target: 'available' },
    rescue: { to: 'rescuing', target: 'rescue' },
    service: { to: 'servicing', target: 'active' },
  },
  deleting: {
    clean: { to: 'cleaning', target: 'available' },
    fail: { to: 'error' },
  },
  cleaning: {
    done: { to: 'available' },
    manage: { to: 'manageable' },
    fail: { to: 'clean failed' },
    wait: { to: 'clean wait' },
    hold: { to: 'clean hold' },
  },
  'clean wait': {
    resume: { to: 'cleaning' },
    hold: { to: 'clean hold' },
    fail: { to: 'clean failed' },
    abort: { to: 'clean failed' },
  },
  'clean hold': {
    unhold: { to: 'clean wait' },
    resume: { to: 'cleaning' },
    fail: { to: 'clean failed' },
    abort: { to: 'clean failed' },
  },
  'clean failed': { manage: { to: 'manageable' } },
  error: {
    rebuild: { to: 'deploying', target: 'active' },
    delete: { to: 'deleting', target: 'available' },
  },
  adopting: { done: { to: 'active' }, fail: { to: 'adopt failed' } },
  'adopt failed': {
    adopt: { to: 'adopting', target: 'active' },
    manage: { to: 'manageable' },
  },
  rescuing: {
    done: { to: 'rescue' },
    wait: { to: 'rescue wait' },
    fail: { to: 'rescue failed' },
  },
  'rescue wait': {
    resume: { to: 'rescuing' },
    fail: { to: 'rescue failed' },
    abort: { to: 'rescue failed' },
    delete: { to: 'deleting', target: 'available' },
  },
  rescue: {
    rescue: { to: 'rescuing', target: 'rescue' },
    unrescue: { to: 'unrescuing', target: 'active' },
    delete: { to: 'deleting', target: 'available' },
  },
  'rescue failed': {
    rescue: { to: 'rescuing', target: 'rescue' },
    unrescue: { to: 'unrescuing', target: 'active' },
    delete: { to: 'deleting', target: 'available' },
  },
  unrescuing: { done: { to: 'active' }, fail: { to: 'unrescue failed' } },
  'unrescue failed': {
    rescue: { to: 'rescuing', target: 'rescue' },
    unrescue: { to: 'unrescuing', target: 'active' },
    delete: { to: 'deleting', target: 'available' },
  },
  servicing: {
    done: { to: 'active' },
    fail: { to: 'service failed' },
    wait: { to: 'service wait' },
    hold: { to: 'service hold' },
  },
  'service wait': {
    resume: { to: 'servicing' },
    hold: { to: 'service hold' },
    fail: { to: 'service failed' },
    abort: { to: 'service failed' },
  },
  'service hold': {
    unhold: { to: 'service wait' },
    fail: { to: 'service failed' },
    abort: { to: 'service failed' },
  },
  'service failed': {
    service: { to: 'servicing', target: 'active' },
    abort: { to: 'active' },
    rescue: { to: 'rescuing', target: 'rescue' },
    delete: { to: 'deleting', target: 'available' },
  },
};

export const STABLE_STATES: ReadonlySet<ProvisionState> = new Set(['enroll', 'manageable', 'available', 'active', 'error', 'rescue']);

/** States in which a conductor crash leaves work that cannot be resumed (Ironic's takeover list). */
export const STUCK_STATES_TREATED_AS_FAIL: ReadonlySet<ProvisionState> = new Set([
  'deploying',
  'cleaning',
  'verifying',
  'inspecting',
  'adopting',
  'rescuing',
  'unrescuing',
  'deleting',
  'servicing',
]);

export const DELETE_ALLOWED_STATES: ReadonlySet<ProvisionState> = new Set(['manageable', 'enroll', 'adopt failed']);

/** Power sync skips nodes in these states (an action owns the power). */
export const SYNC_EXCLUDED_STATES: ReadonlySet<ProvisionState> = new Set([
  'deploying',
  'wait call-back',
  'deleting',
  'cleaning',
  'clean wait',
  'inspecting',
  'inspect wait',
  'rescuing',
  'rescue wait',
  'unrescuing',
  'servicing',
  'service wait',
  'enroll',
  'verifying',
  'adopting',
]);

/** States in which an agent may look itself up and be issued a token (Ironic's LOOKUP_ALLOWED_STATES). */
export const LOOKUP_ALLOWED_STATES: ReadonlySet<ProvisionState> = new Set([
  'deploying',
  'wait call-back',
  'cleaning',
  'clean wait',
  'inspecting',
  'inspect wait',
  'rescuing',
  'rescue wait',
  'servicing',
  'service wait',
]);
/** With fast-track on, an agent may also be issued a token in these (Ironic's FASTTRACK_LOOKUP_ALLOWED_STATES). */
export const FASTTRACK_LOOKUP_ALLOWED_STATES: ReadonlySet<ProvisionState> = new Set([...LOOKUP_ALLOWED_STATES, 'enroll', 'manageable', 'available']);
/**
 * States where an agent that already holds this boot's token may reconnect, but nobody is issued a
 * new one: a paused flow (hold) and — with fast-track — an active node under its lease. An active
 * node normally carries no token: issuing one there would let anyone who knows a MAC of a tenant's
 * machine lock the real agent out and receive the next deploy's commands.
 */
export const HOLD_STATES: ReadonlySet<ProvisionState> = new Set(['deploy hold', 'clean hold', 'service hold']);

export type LookupVerdict = 'issue' | 'reconnect-only' | 'refuse';

/** May an agent look this node up, and may it be issued a token? */
export function agentLookupVerdict(state: string, fastTrack: boolean): LookupVerdict {
  if (!isProvisionState(state)) return 'refuse';
  if ((fastTrack ? FASTTRACK_LOOKUP_ALLOWED_STATES : LOOKUP_ALLOWED_STATES).has(state)) return 'issue';
  if (HOLD_STATES.has(state) || (fastTrack && state === 'active')) return 'reconnect-only';
  return 'refuse';
}

export function isProvisionState(s: string): s is ProvisionState {
  return (STATES as readonly string[]).includes(s);
}

export interface TransitionResult {
  from: ProvisionState;
  event: ProvisionEvent;
  to: ProvisionState;
  /** target_provision_state after the move: the edge's target, or null once stable. */
  target: ProvisionState | null;
}

/** Applies `event` in `from`; throws InvalidStateError (HTTP 400) when not allowed. */
export function transition(
  from: ProvisionState,
  event: ProvisionEvent,
  currentTarget: ProvisionState | null,
  nodeUuid = '',
): TransitionResult {
  const edge = TRANSITIONS[from][event];
  if (!edge) {
    throw new InvalidStateError(
      `The requested action "${event}" can not be performed on node "${nodeUuid}" while it is in state "${from}".`,
      nodeUuid,
      from,
    );
  }
  const target = STABLE_STATES.has(edge.to) ? null : (edge.target ?? currentTarget);
  return { from, event, to: edge.to, target };
}

export function canTransition(from: ProvisionState, event: ProvisionEvent): boolean {
  return TRANSITIONS[from][event] !== undefined;
}

/** API verbs of PUT /v1/nodes/{id}/states/provision {"target": verb} → state machine events. */
export const API_VERBS: Record<string, ProvisionEvent> = {
  manage: 'manage',
  provide: 'provide',
  inspect: 'inspect',
  clean: 'clean',
  active: 'deploy',
  deploy: 'deploy',
  rebuild: 'rebuild',
  deleted: 'delete',
  undeploy: 'delete',
  abort: 'abort',
  adopt: 'adopt',
  rescue: 'rescue',
  unrescue: 'unrescue',
  service: 'service',
  unhold: 'unhold',
  hold: 'hold',
};

export function eventForVerb(verb: string): ProvisionEvent {
  const ev = Object.hasOwn(API_VERBS, verb) ? API_VERBS[verb] : undefined;
  if (!ev) throw new InvalidInputError(`target: "${verb}" is not a valid provision state target; expected one of ${Object.keys(API_VERBS).join(', ')}`, 'target');
  return ev;
}

// ---------------------------------------------------------------- state groups used by the conductor
// Named once here so no module retypes a list of states as literals.

export type FlowKind = 'deploy' | 'clean' | 'service';

/** The three states of each step-running flow: running a step, waiting on an event, paused by a hold step. */
export const FLOW_STATES: Readonly<Record<FlowKind, { run: ProvisionState; wait: ProvisionState; hold: ProvisionState }>> = {
  deploy: { run: 'deploying', wait: 'wait call-back', hold: 'deploy hold' },
  clean: { run: 'cleaning', wait: 'clean wait', hold: 'clean hold' },
  service: { run: 'servicing', wait: 'service wait', hold: 'service hold' },
};

/** Every state in which a flow of `kind` is in progress. */
export function flowInProgressStates(kind: FlowKind): ProvisionState[] {
  const f = FLOW_STATES[kind];
  return [f.run, f.wait, f.hold];
}

/** States in which a flow runs a step or waits on an event (not held): a flow action that ran out of retries fails the node from these. */
export const FLOW_ACTIVE_STATES: ReadonlySet<ProvisionState> = new Set(Object.values(FLOW_STATES).flatMap((f) => [f.run, f.wait]));

/** A node's driver may change only here (or in maintenance): no action owns its hardware. */
export const DRIVER_CHANGE_STATES: ReadonlySet<ProvisionState> = new Set(['enroll', 'manageable', 'available', 'inspect failed']);

/** Disk- and firmware-changing agent commands through the API only here: no tenant owns the disks, no flow owns the agent. */
export const DESTRUCTIVE_COMMAND_STATES: ReadonlySet<ProvisionState> = new Set(['enroll', 'manageable', 'available', 'inspect failed', 'clean failed']);

/** A fast-track lease that expires acts only on a node at rest in one of these. */
export const LEASE_STATES: ReadonlySet<ProvisionState> = new Set(['available', 'manageable', 'active', 'enroll']);

/** Events refused while a node is in maintenance. */
export const MAINTENANCE_BLOCKED_EVENTS: ReadonlySet<ProvisionEvent> = new Set(['deploy', 'rebuild', 'provide', 'clean', 'inspect']);
