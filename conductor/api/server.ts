/**
 * The REST API (Fastify) in Ironic's v1 shapes. It reads and writes the database for CRUD and
 * asks the Conductor for every action; it never talks to a BMC or an agent itself.
 */
import { timingSafeEqual } from 'node:crypto';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply } from 'fastify';
import type { Logger } from 'pino';
import { IronfleetError, InvalidInputError, UnauthorizedError } from '../../shared/errors.js';
import type { Conductor } from '../manager.js';
import { parseInput, type ApiContext } from './context.js';
import { MAX_VERSION, MIN_VERSION, fmt, parseRequestedVersion, type ApiVersion } from './versions.js';
import { registerNodeRoutes } from './routes-nodes.js';
import { registerNodeAgentRoutes } from './routes-node-agent.js';
import { registerPortRoutes } from './routes-ports.js';
import { registerMiscRoutes } from './routes-misc.js';
import { CONSOLE_SHELL, registerConsoleRoutes } from './routes-console.js';
import { registerForwarding } from './forward.js';
import { UnsafeJsonError, parseUntrustedJson } from '../../shared/safe-json.js';
import { isTransientDbError } from '../db/retry.js';
import { scrubText } from '../../shared/redact.js';

declare module 'fastify' {
  interface FastifyRequest {
    apiVersion: ApiVersion;
    user: string | null;
  }
}

export { parseInput, type ApiContext };

const LIST = ['limit', 'marker', 'sort_key', 'sort_dir', 'fields', 'detail'];
/**
 * Query parameters each route understands; any other is a 400 naming it (a misspelt filter
 * must not silently list the whole fleet). Routes not listed take none.
 */
export const QUERY_KEYS: Readonly<Record<string, readonly string[]>> = {
  'GET /v1/nodes': [...LIST, 'provision_state', 'maintenance', 'associated', 'driver', 'conductor_group'],
  'GET /v1/nodes/detail': [...LIST, 'provision_state', 'maintenance', 'associated', 'driver', 'conductor_group'],
  'GET /v1/nodes/:ident': ['fields'],
  'GET /v1/nodes/:ident/history': ['limit', 'marker', 'detail'],
  'GET /v1/nodes/:ident/ports': ['detail'],
  'GET /v1/nodes/:ident/steps': ['kind'],
  'GET /v1/ports': ['limit', 'marker', 'fields', 'detail', 'node', 'node_uuid', 'address'],
  'GET /v1/ports/detail': ['limit', 'marker', 'fields', 'detail', 'node', 'node_uuid', 'address'],
  'GET /console/api/events': ['last_event_id'],
};

/** Routes that take a request body; any other refuses one (a body must never be silently ignored). */
const BODY_ROUTES: ReadonlySet<string> = new Set([
  'POST /v1/nodes',
  'PATCH /v1/nodes/:ident',
  'PUT /v1/nodes/:ident/states/raid',
  'PUT /v1/nodes/:ident/states/power',
  'PUT /v1/nodes/:ident/states/provision',
  'PUT /v1/nodes/:ident/maintenance',
  'POST /v1/nodes/:ident/firmware/update',
  'POST /v1/nodes/:ident/agent/commands',
  'POST /v1/ports',
  'PATCH /v1/ports/:uuid',
]);

function ironicError(reply: FastifyReply, status: number, message: string, code?: string): FastifyReply {
  // Ironic wraps a JSON document in a string under error_message; python-ironicclient unwraps it.
  const faultcode = status >= 500 ? 'Server' : 'Client';
  return reply
    .status(status)
    .header('content-type', 'application/json')
    // An error may quote what it was given (a URL with credentials): masked on the way out.
    .send({ error_message: JSON.stringify({ faultcode, faultstring: scrubText(message), debuginfo: null, ...(code ? { code } : {}) }) });
}

function safeEqual(a: string, b: string): boolean {
  const ab = Buffer.from(a);
  const bb = Buffer.from(b);
  return ab.length === bb.length && timingSafeEqual(ab, bb);
}

export async function buildApi(conductor: Conductor, log: Logger): Promise<FastifyInstance> {
  const cfg = conductor.cfg;
  const app = Fastify({
    loggerInstance: log.child({ component: 'api' }) as unknown as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 2 * 1024 * 1024,
    routerOptions: { ignoreTrailingSlash: true },
    return503OnClosing: true,
    // Errors the router raises before any route runs (undecodable URL, path parameter too long):
    // in the Ironic envelope too, never Fastify's own shape.
    frameworkErrors: (err, _req, reply) => {
      const e = err as { code?: string; statusCode?: number; message: string };
      const status = e.statusCode && e.statusCode >= 400 && e.statusCode < 500 ? e.statusCode : 400;
      return ironicError(reply, status, e.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 'A path parameter is too long' : e.code === 'FST_ERR_BAD_URL' ? 'The URL is not valid (undecodable percent-encoding)' : e.message, 'IRF_INVALID_INPUT');
    },
  });

  const metrics = conductor.metrics;

  const ctx: ApiContext = {
    conductor,
    metrics,
    baseUrl(req) {
      if (cfg.api.public_url) return cfg.api.public_url.replace(/\/$/, '');
      return `${req.protocol}://${req.headers.host ?? `${cfg.api.host}:${cfg.api.port}`}`;
    },
  };

  // Strict JSON, but an empty body is "no body" (clients send Content-Type on DELETE/PUT too).
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text.trim() === '') return done(null, undefined);
    try {
      done(null, parseUntrustedJson(text));
    } catch (err) {
      const what = err instanceof UnsafeJsonError ? 'Refused JSON in request body' : 'Malformed JSON in request body';
      done(new InvalidInputError(`${what}: ${(err as Error).message}`, '(body)'), undefined);
    }
  });

  // Any other media type is accepted only when the body is empty (python-ironicclient sends
  // DELETE with application/octet-stream and no body).
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (req, body, done) => {
    if ((body as Buffer).length === 0) return done(null, undefined);
    const msg = `Unsupported media type ${req.headers['content-type'] ?? '(none)'}: request bodies must be application/json`;
    done(new IronfleetError('IRF_INVALID_INPUT', msg, { httpStatus: 415 }), undefined);
  });

  app.decorateRequest('apiVersion', null as unknown as ApiVersion);
  app.decorateRequest('user', null);

  app.addHook('onRequest', async (req) => {
    // Fastify never parses a GET body: refuse one rather than ignore it.
    if ((req.method === 'GET' || req.method === 'HEAD') && (Number(req.headers['content-length'] ?? 0) > 0 || req.headers['transfer-encoding'] !== undefined)) {
      throw new InvalidInputError(`${req.method} requests take no body`, '(body)');
    }
    req.apiVersion = parseRequestedVersion(req.headers);
    // Exact paths only: version discovery is open (as Ironic's); /metrics only when metrics_auth is off.
    const p = req.url.split('?')[0]!;
    const open = p === '/' || p === '/v1' || p === '/v1/' || (p === '/metrics' && !cfg.api.metrics_auth);
    const auth = cfg.api.auth;
    if (open || auth.strategy === 'noauth') return;
    // Under token auth the console's shell (no data) loads without one and asks for it.
    if (auth.strategy === 'token' && cfg.api.console && CONSOLE_SHELL.has(p)) return;
    if (auth.strategy === 'token') {
      const tok = req.headers['x-auth-token'];
      if (typeof tok === 'string' && auth.tokens.some((t) => safeEqual(t, tok))) {
        req.user = 'token';
        return;
      }
      throw new UnauthorizedError('The request you have made requires authentication (X-Auth-Token).');
    }
    const h = req.headers.authorization;
    if (h?.startsWith('Basic ')) {
      const decoded = Buffer.from(h.slice(6), 'base64').toString('utf8');
      const idx = decoded.indexOf(':');
      const user = decoded.slice(0, idx);
      const pass = decoded.slice(idx + 1);
      const expected = auth.users[user];
      if (idx > 0 && expected !== undefined && safeEqual(expected, pass)) {
        req.user = user;
        return;
      }
    }
    throw new UnauthorizedError('The request you have made requires authentication (HTTP basic).');
  });

  app.addHook('preValidation', async (req) => {
    if (req.body !== undefined && !BODY_ROUTES.has(`${req.method} ${req.routeOptions.url ?? ''}`)) {
      throw new InvalidInputError(`${req.method} ${req.routeOptions.url ?? req.url.split('?')[0]} takes no request body`, '(body)');
    }
    const q = req.query as Record<string, unknown> | undefined;
    if (!q) return;
    const allowed = QUERY_KEYS[`${req.method} ${req.routeOptions.url ?? ''}`] ?? [];
    for (const [k, v] of Object.entries(q)) {
      if (!allowed.includes(k)) throw new InvalidInputError(`Unknown query parameter "${k.slice(0, 64)}"${allowed.length ? `; this resource takes ${allowed.join(', ')}` : '; this resource takes none'}`, k.slice(0, 64));
      if (typeof v !== 'string') throw new InvalidInputError(`Query parameter "${k}" given more than once`, k);
    }
  });

  app.addHook('onSend', async (req, reply) => {
    reply.header('X-OpenStack-Ironic-API-Minimum-Version', fmt(MIN_VERSION));
    reply.header('X-OpenStack-Ironic-API-Maximum-Version', fmt(MAX_VERSION));
    const v = req.apiVersion ?? MAX_VERSION;
    reply.header('X-OpenStack-Ironic-API-Version', fmt(v));
    reply.header('OpenStack-API-Version', `baremetal ${fmt(v)}`);
    if (reply.statusCode === 401) reply.header('WWW-Authenticate', cfg.api.auth.strategy === 'http_basic' ? 'Basic realm="ironfleet"' : 'Token');
  });

  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    metrics.apiRequests.inc({ method: req.method, route, status: String(reply.statusCode) });
    metrics.apiLatency.observe({ method: req.method, route }, reply.elapsedTime / 1000);
    req.log.info({ method: req.method, url: req.url.split('?')[0], status: reply.statusCode, ms: Math.round(reply.elapsedTime) }, 'api request');
  });

  app.setErrorHandler((err: unknown, req, reply) => {
    if (err instanceof IronfleetError) {
      if (err.httpStatus >= 500) req.log.error({ err }, 'api error');
      return ironicError(reply, err.httpStatus, err.message, err.code);
    }
    const e = err as { statusCode?: number; code?: string; message?: string };
    if (e.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || e.code === 'FST_ERR_CTP_EMPTY_JSON_BODY' || (e.statusCode === 400 && e instanceof SyntaxError)) {
      return ironicError(reply, 400, `Malformed JSON in request body: ${e.message}`, 'IRF_INVALID_INPUT');
    }
    if (e.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return ironicError(reply, 415, `Unsupported media type: ${e.message}`, 'IRF_INVALID_INPUT');
    if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return ironicError(reply, 413, 'Request body too large', 'IRF_INVALID_INPUT');
    if (e.statusCode && e.statusCode >= 400 && e.statusCode < 500) return ironicError(reply, e.statusCode, e.message ?? 'Bad request');
    if (isTransientDbError(err)) {
      // Busy or reconnecting database: nothing was changed; the client may retry.
      req.log.warn({ err }, 'database busy or unavailable during an API request');
      reply.header('Retry-After', '1');
      return ironicError(reply, 503, 'The database is busy or unavailable; nothing was changed. Retry later.', 'IRF_DB_UNAVAILABLE');
    }
    req.log.error({ err }, 'unhandled api error');
    return ironicError(reply, 500, 'Internal server error', 'IRF_INTERNAL');
  });

  app.setNotFoundHandler((req, reply) => ironicError(reply, 404, `The resource could not be found: ${req.method} ${req.url.split('?')[0]}`, 'IRF_NOT_FOUND'));

  registerForwarding(app, ctx);
  registerMiscRoutes(app, ctx);
  registerNodeRoutes(app, ctx);
  registerNodeAgentRoutes(app, ctx);
  registerPortRoutes(app, ctx);
  if (cfg.api.console) registerConsoleRoutes(app, ctx);
  return app;
}
