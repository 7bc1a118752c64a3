/** Typed errors: `instanceof` is per class (each class its own marker), and survives module copies. */
import { describe, expect, it } from 'vitest';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { ROOT } from '../helpers.js';
import {
  AgentBusyError,
  ConcurrentActionLimitError,
  ConflictError,
  DriverError,
  InvalidInputError,
  IronfleetError,
  NodeLockedError,
  NotFoundError,
} from '../../shared/errors.js';

describe('typed errors', () => {
  it('instanceof is true only for the class and its ancestors, never for a sibling', () => {
    const locked = new NodeLockedError('u', 'h');
    const input = new InvalidInputError('bad', 'f');
    expect(locked instanceof NodeLockedError).toBe(true);
    expect(locked instanceof IronfleetError).toBe(true);
    expect(locked instanceof Error).toBe(true);
    expect(input instanceof NodeLockedError).toBe(false);
    expect(new ConflictError('x') instanceof NodeLockedError).toBe(false); // same HTTP status, another class
    expect(new IronfleetError('IRF_INTERNAL', 'x') instanceof NodeLockedError).toBe(false);
    expect(new NotFoundError('Node', 'x') instanceof InvalidInputError).toBe(false);
    expect(new AgentBusyError('u', 'c') instanceof DriverError).toBe(false);
    expect(new ConcurrentActionLimitError('deploy', 1, 1).name).toBe('ConcurrentActionLimitError');
    expect({ code: 'IRF_NODE_LOCKED' } instanceof NodeLockedError).toBe(false);
    expect(null instanceof IronfleetError).toBe(false);
  });

  it('a subclass without its own kind still carries the markers of its ancestors', () => {
    class Custom extends NodeLockedError {}
    const e = new Custom('u', 'h');
    expect(e instanceof NodeLockedError).toBe(true);
    expect(e instanceof IronfleetError).toBe(true);
    expect(e instanceof InvalidInputError).toBe(false);
  });

  it('works across a second copy of the module (Symbol.for markers, not class identity)', async () => {
    // The compiled build is a second copy of the module (as in the worker threads and the agent bundle).
    const copy = (await import(pathToFileURL(path.join(ROOT, 'dist/shared/errors.js')).href)) as typeof import('../../shared/errors.js');
    expect(copy.NodeLockedError).not.toBe(NodeLockedError);
    expect(new copy.NodeLockedError('u', 'h') instanceof NodeLockedError).toBe(true);
    expect(new copy.InvalidInputError('x') instanceof NodeLockedError).toBe(false);
  });
});
