/**
 * Several conductors, one API: any conductor accepts any request. Reads are served from the
 * database wherever they arrive. A change to a node (every non-GET route under /v1/nodes/{node})
 * is carried out by the node's owner on the hash ring — the conductor that holds its BMC session,
 * its agent stream and its deferred work — so this conductor forwards the request there, once
 * (a forwarded request is never forwarded again, even if the rings briefly disagree), with the
 * caller's own credentials, and relays the answer. An owner that does not answer is a 503 the
 * caller may retry (the ring moves the node within the heartbeat timeout if the owner died).
 */
import os from 'node:os';
import type { FastifyInstance } from 'fastify';
import { request } from 'undici';
import { IronfleetError } from '../../shared/errors.js';
import type { ApiContext } from './context.js';

export const FORWARDED_BY = 'x-ironfleet-forwarded-by';
export const SERVED_BY = 'x-ironfleet-served-by';
const HOP_BY_HOP = new Set(['host', 'connection', 'content-length', 'transfer-encoding', 'keep-alive', 'upgrade', 'expect']);

/** host:port peers and agents dial: a wildcard listen address becomes this machine's name. */
export function advertisedAgentAddress(host: string, port: number): string {
  const h = host === '0.0.0.0' || host === '::' ? os.hostname() : host;
  return `${h.includes(':') ? `[${h}]` : h}:${port}`;
}

/** The URL peers reach this conductor's API at. */
export function advertisedApiUrl(cfg: { public_url: string; host: string }, port: number): string {
  return cfg.public_url ? cfg.public_url.replace(/\/$/, '') : `http://${advertisedAgentAddress(cfg.host, port)}`;
}

export function registerForwarding(app: FastifyInstance, ctx: ApiContext): void {
  const { conductor } = ctx;
  app.addHook('preHandler', async (req, reply) => {
    if (req.method === 'GET' || req.method === 'HEAD') return;
    if (!(req.routeOptions.url ?? '').startsWith('/v1/nodes/:ident')) return;
    const m = conductor.membership;
    if (req.headers[FORWARDED_BY] !== undefined || m.peerCount() === 0) return;
    const node = await conductor.store.findNode((req.params as { ident: string }).ident);
    if (!node) return; // the route answers 404
    const owner = m.ownerOf(node);
    if (!owner || owner === m.host) return;
    const url = m.record(owner)?.api_url;
    if (!url) throw new IronfleetError('IRF_CONDUCTOR_UNAVAILABLE', `Node ${node.uuid} is owned by conductor ${owner}, which has not advertised an API address yet; retry shortly.`, { httpStatus: 503 });
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) if (!HOP_BY_HOP.has(k) && typeof v === 'string') headers[k] = v;
    headers[FORWARDED_BY] = m.host;
    let res;
    try {
      res = await request(`${url}${req.url}`, {
        method: req.method as 'PUT',
        headers,
        body: req.body === undefined ? undefined : JSON.stringify(req.body),
        headersTimeout: 30_000,
        bodyTimeout: 30_000,
      });
    } catch (err) {
      reply.header('Retry-After', '2');
      throw new IronfleetError('IRF_CONDUCTOR_UNAVAILABLE', `Node ${node.uuid} is owned by conductor ${owner}, which did not answer (${(err as Error).message}); retry shortly.`, { httpStatus: 503, cause: err });
    }
    const text = await res.body.text();
    for (const [k, v] of Object.entries(res.headers)) if (!HOP_BY_HOP.has(k) && v !== undefined) reply.header(k, v);
    reply.header(SERVED_BY, owner);
    return reply.code(res.statusCode).send(text);
  });
}
