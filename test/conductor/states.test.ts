import { describe, expect, it } from 'vitest';
import { EVENTS, STATES, STABLE_STATES, TRANSITIONS, transition, eventForVerb, canTransition, type ProvisionEvent, type ProvisionState } from '../../conductor/states.js';
import { InvalidStateError, InvalidInputError } from '../../shared/errors.js';

// The expected machine, written out independently from Ironic's state table
// (../shared/reference/ironic-facts.md §11). Every (state, event) pair not listed must be refused.
const EXPECTED: Array<[ProvisionState, ProvisionEvent, ProvisionState]> = [
  ['enroll', 'manage', 'verifying'],
  ['verifying', 'done', 'manageable'],
  ['verifying', 'fail', 'enroll'],
  ['manageable', 'provide', 'cleaning'],
  ['manageable', 'clean', 'cleaning'],
  ['manageable', 'inspect', 'inspecting'],
  ['manageable', 'adopt', 'adopting'],
  ['manageable', 'manage', 'verifying'],
  ['inspecting', 'done', 'manageable'],
  ['inspecting', 'fail', 'inspect failed'],
  ['inspecting', 'wait', 'inspect wait'],
  ['inspect wait', 'done', 'manageable'],
  ['inspect wait', 'resume', 'inspecting'],
  ['inspect wait', 'fail', 'inspect failed'],
  ['inspect wait', 'abort', 'inspect failed'],
  ['inspect failed', 'manage', 'manageable'],
  ['inspect failed', 'inspect', 'inspecting'],
  ['available', 'deploy', 'deploying'],
  ['available', 'manage', 'manageable'],
  ['deploying', 'done', 'active'],
  ['deploying', 'fail', 'deploy failed'],
  ['deploying', 'wait', 'wait call-back'],
  ['deploying', 'hold', 'deploy hold'],
  ['wait call-back', 'resume', 'deploying'],
  ['wait call-back', 'hold', 'deploy hold'],
  ['wait call-back', 'fail', 'deploy failed'],
  ['wait call-back', 'abort', 'deploy failed'],
  ['wait call-back', 'delete', 'deleting'],
  ['deploy hold', 'unhold', 'wait call-back'],
  ['deploy hold', 'fail', 'deploy failed'],
  ['deploy hold', 'abort', 'deploy failed'],
  ['deploy hold', 'delete', 'deleting'],
  ['deploy failed', 'deploy', 'deploying'],
  ['deploy failed', 'rebuild', 'deploying'],
  ['deploy failed', 'delete', 'deleting'],
  ['active', 'rebuild', 'deploying'],
  ['active', 'delete', 'deleting'],
  ['active', 'rescue', 'rescuing'],
  ['active', 'service', 'servicing'],
  ['deleting', 'clean', 'cleaning'],
  ['deleting', 'fail', 'error'],
  ['cleaning', 'done', 'available'],
  ['cleaning', 'manage', 'manageable'],
  ['cleaning', 'fail', 'clean failed'],
  ['cleaning', 'wait', 'clean wait'],
  ['cleaning', 'hold', 'clean hold'],
  ['clean wait', 'resume', 'cleaning'],
  ['clean wait', 'hold', 'clean hold'],
  ['clean wait', 'fail', 'clean failed'],
  ['clean wait', 'abort', 'clean failed'],
  ['clean hold', 'unhold', 'clean wait'],
  ['clean hold', 'resume', 'cleaning'],
  ['clean hold', 'fail', 'clean failed'],
  ['clean hold', 'abort', 'clean failed'],
  ['clean failed', 'manage', 'manageable'],
  ['error', 'rebuild', 'deploying'],
  ['error', 'delete', 'deleting'],
  ['adopting', 'done', 'active'],
  ['adopting', 'fail', 'adopt failed'],
  ['adopt failed', 'adopt', 'adopting'],
  ['adopt failed', 'manage', 'manageable'],
  ['rescuing', 'done', 'rescue'],
  ['rescuing', 'wait', 'rescue wait'],
  ['rescuing', 'fail', 'rescue failed'],
  ['rescue wait', 'resume', 'rescuing'],
  ['rescue wait', 'fail', 'rescue failed'],
  ['rescue wait', 'abort', 'rescue failed'],
  ['rescue wait', 'delete', 'deleting'],
  ['rescue', 'rescue', 'rescuing'],
  ['rescue', 'unrescue', 'unrescuing'],
  ['rescue', 'delete', 'deleting'],
  ['rescue failed', 'rescue', 'rescuing'],
  ['rescue failed', 'unrescue', 'unrescuing'],
  ['rescue failed', 'delete', 'deleting'],
  ['unrescuing', 'done', 'active'],
  ['unrescuing', 'fail', 'unrescue failed'],
  ['unrescue failed', 'rescue', 'rescuing'],
  ['unrescue failed', 'unrescue', 'unrescuing'],
  ['unrescue failed', 'delete', 'deleting'],
  ['servicing', 'done', 'active'],
  ['servicing', 'fail', 'service failed'],
  ['servicing', 'wait', 'service wait'],
  ['servicing', 'hold', 'service hold'],
  ['service wait', 'resume', 'servicing'],
  ['service wait', 'hold', 'service hold'],
  ['service wait', 'fail', 'service failed'],
  ['service wait', 'abort', 'service failed'],
  ['service hold', 'unhold', 'service wait'],
  ['service hold', 'fail', 'service failed'],
  ['service hold', 'abort', 'service failed'],
  ['service failed', 'service', 'servicing'],
  ['service failed', 'abort', 'active'],
  ['service failed', 'rescue', 'rescuing'],
  ['service failed', 'delete', 'deleting'],
];

describe('provision state machine', () => {
  const expected = new Map(EXPECTED.map(([f, e, t]) => [`${f}|${e}`, t]));

  it('has 30 Ironic states and every table row is a known state', () => {
    expect(STATES).toHaveLength(30);
    expect(Object.keys(TRANSITIONS).sort()).toEqual([...STATES].sort());
  });

  // Exhaustive: all 30 × 18 (state, event) pairs.
  for (const from of STATES) {
    for (const ev of EVENTS) {
      const want = expected.get(`${from}|${ev}`);
      it(`${from} --${ev}--> ${want ?? 'refused'}`, () => {
        if (want) {
          const r = transition(from, ev, null, 'n1');
          expect(r.to).toBe(want);
          expect(canTransition(from, ev)).toBe(true);
          if (STABLE_STATES.has(r.to)) expect(r.target).toBeNull();
        } else {
          expect(canTransition(from, ev)).toBe(false);
          expect(() => transition(from, ev, null, 'n1')).toThrow(InvalidStateError);
        }
      });
    }
  }

  it('sets the target for action starts and keeps it through intermediate states', () => {
    const deploy = transition('available', 'deploy', null);
    expect(deploy).toMatchObject({ to: 'deploying', target: 'active' });
    const wait = transition('deploying', 'wait', deploy.target);
    expect(wait).toMatchObject({ to: 'wait call-back', target: 'active' });
    expect(transition('wait call-back', 'resume', wait.target)).toMatchObject({ to: 'deploying', target: 'active' });
    expect(transition('deploying', 'done', 'active')).toMatchObject({ to: 'active', target: null });
    expect(transition('manageable', 'clean', null)).toMatchObject({ to: 'cleaning', target: 'manageable' });
  });

  it('the refusal message names the action and the state', () => {
    expect(() => transition('active', 'provide', null, 'node-x')).toThrow(/"provide".*node-x.*"active"/);
  });

  it('maps Ironic API verbs to events and rejects unknown verbs with a 400', () => {
    expect(eventForVerb('active')).toBe('deploy');
    expect(eventForVerb('deleted')).toBe('delete');
    expect(eventForVerb('provide')).toBe('provide');
    try {
      eventForVerb('explode');
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(InvalidInputError);
      expect((err as InvalidInputError).httpStatus).toBe(400);
      expect((err as Error).message).toMatch(/explode/);
    }
  });
});
