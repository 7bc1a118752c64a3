/**
 * What every route module gets: the conductor (every change to a node goes through its methods),
 * link building, the metrics registry — and the one input parser that turns a zod failure into a
 * 400 naming the field. Kept apart from server.ts so route modules do not import the server.
 */
import type { FastifyRequest } from 'fastify';
import type { z } from 'zod';
import type { ConductorMetrics } from '../metrics.js';
import type { Conductor } from '../manager.js';
import { InvalidInputError, NotFoundError } from '../../shared/errors.js';
import type { Node, Store } from '../db/store.js';

export interface ApiContext {
  conductor: Conductor;
  /** Base URL for links, without trailing slash. */
  baseUrl(req: FastifyRequest): string;
  metrics: ConductorMetrics;
}

/** Parses with zod; a failure becomes a 400 naming the offending field. */
export function parseInput<S extends z.ZodType>(schema: S, input: unknown, resource: string): z.output<S> {
  const r = schema.safeParse(input);
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  const path = issue.path.map(String).join('.');
  if (issue.code === 'unrecognized_keys') {
    const keys = issue.keys.join(', ');
    throw new InvalidInputError(`Unknown attribute for argument ${resource}: ${path ? `${path}.` : ''}${keys}`, issue.keys[0]);
  }
  if (issue.code === 'invalid_type' && input === undefined) {
    throw new InvalidInputError(`Missing request body for ${resource}`, '(body)');
  }
  throw new InvalidInputError(`Invalid input for field/attribute ${path || resource}: ${issue.message}`, path || resource);
}


/** The node named by a uuid or name, or a 404. */
export async function findNodeOr404(store: Store, ident: string): Promise<Node> {
  const n = await store.findNode(ident);
  if (!n) throw new NotFoundError('Node', ident);
  return n;
}
