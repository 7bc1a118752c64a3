/**
 * The HTTP side of a BMC client: one undici keep-alive pool per BMC origin whose TCP+TLS
 * handshakes go through a per-thread limiter and descriptor budget, the Redfish base headers, and
 * Retry-After parsing.
 */
import type { Socket } from 'node:net';
import tls from 'node:tls';
import { Client, Pool, buildConnector, errors as undiciErrors, type Dispatcher } from 'undici';
import { RedfishError } from './errors.js';
import { socketBudget, type SocketOwner } from './socket-budget.js';
import type { RedfishTarget } from './driver-info.js';

export const BASE_HEADERS = { 'OData-Version': '4.0', Accept: 'application/json' };

/**
 * At most this many TCP+TLS handshakes at once per thread. Opening thousands of BMC connections at
 * once (first sweep, restart) would otherwise saturate the CPU so badly that every connect looks
 * like a BMC timeout. Queued connects have not started their clock yet.
 */
const MAX_CONCURRENT_HANDSHAKES = 96;
let handshakes = 0;
const handshakeQueue: Array<() => void> = [];

/** Connects inside this thread's descriptor budget (socket-budget.ts) and handshake limit. */
function limitedConnector(inner: buildConnector.connector, owner: SocketOwner): buildConnector.connector {
  return (opts, cb) => {
    const start = () => {
      handshakes++;
      let done = false;
      inner(opts, ((err: Error | null, sock: unknown) => {
        if (!done) {
          done = true;
          handshakes--;
          handshakeQueue.shift()?.();
          if (err) socketBudget.unreserve();
          else socketBudget.adopt(owner, sock as Socket);
        }
        (cb as (e: Error | null, s: unknown) => void)(err, sock);
      }) as buildConnector.Callback);
    };
    socketBudget.reserve(owner, () => {
      if (handshakes < MAX_CONCURRENT_HANDSHAKES) start();
      else handshakeQueue.push(start);
    });
  };
}

/**
 * One TLS context per CA per thread, shared by every BMC connection that trusts it. Why: a context
 * per connection parsed the CA again and kept its own OpenSSL context — about 12 KiB per BMC.
 */
const contexts = new Map<string, tls.SecureContext>();

function secureContextFor(verify: boolean | string): tls.SecureContext {
  const k = typeof verify === 'string' ? verify : String(verify);
  let c = contexts.get(k);
  if (!c) contexts.set(k, (c = tls.createSecureContext(typeof verify === 'string' ? { ca: verify } : {})));
  return c;
}

/**
 * The connection of one BMC: `connections` sockets at most (one by default: a single undici Client;
 * a Pool only when more are configured — its queue alone is ~18 KiB), kept alive, TLS verified as
 * the target says.
 */
export function bmcPool(target: RedfishTarget, o: { connections: number; timeoutMs: number; connectTimeoutMs: number }, owner: SocketOwner): Dispatcher {
  const opts = {
    pipelining: 1,
    keepAliveTimeout: 30_000,
    keepAliveMaxTimeout: 60_000,
    headersTimeout: o.timeoutMs,
    bodyTimeout: o.timeoutMs,
    connect: limitedConnector(
      buildConnector({
        timeout: o.connectTimeoutMs,
        maxCachedSessions: 1,
        rejectUnauthorized: target.verify !== false,
        ...(target.origin.startsWith('https:') ? { secureContext: secureContextFor(target.verify) } : {}),
        ...(target.serverName ? { servername: target.serverName } : {}),
      }),
      owner,
    ),
  };
  return o.connections > 1 ? new Pool(target.origin, { ...opts, connections: o.connections }) : new Client(target.origin, opts);
}

/** Retry-After in ms (delta-seconds form), else `fallback`. */
export function retryAfterMs(h: string | string[] | undefined, fallback: number): number {
  const v = Array.isArray(h) ? h[0] : h;
  const n = Number(v);
  return Number.isFinite(n) && n >= 0 ? n * 1000 : fallback;
}

/** A transport failure as a stable code: RF_TIMEOUT (any phase deadline), RF_TLS, else RF_CONNECT. */
export function classifyTransportError(err: unknown, where: string, timeoutMs: number): RedfishError {
  if (err instanceof RedfishError) return err;
  const e = err as { name?: string; code?: string; message?: string };
  if (e.name === 'TimeoutError' || e.name === 'AbortError' || e instanceof undiciErrors.HeadersTimeoutError || e instanceof undiciErrors.BodyTimeoutError || e.code === 'UND_ERR_CONNECT_TIMEOUT') {
    return new RedfishError('RF_TIMEOUT', `BMC ${where} did not answer within ${timeoutMs} ms`, undefined, where);
  }
  if (/CERT|SSL|TLS|self.signed|altnames/i.test(`${e.code} ${e.message}`)) return new RedfishError('RF_TLS', `TLS to ${where} failed: ${e.message}`, undefined, where);
  return new RedfishError('RF_CONNECT', `cannot reach BMC ${where}: ${e.code ?? ''} ${e.message ?? ''}`.trim(), undefined, where);
}
