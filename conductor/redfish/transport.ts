/**
 * The socket side of a BMC client: TCP+TLS connects through a per-thread handshake limiter and
 * descriptor budget with TLS session resumption, one TLS context per CA, transport error codes, the
 * Redfish base headers and Retry-After parsing.
 */
import net, { type Socket } from 'node:net';
import tls from 'node:tls';
import { RedfishError } from './errors.js';
import { socketBudget, type SocketOwner } from './socket-budget.js';

export const BASE_HEADERS = { 'OData-Version': '4.0', Accept: 'application/json' };

/**
 * At most this many TCP+TLS handshakes at once per thread. Opening thousands of BMC connections at
 * once (first sweep, restart) would otherwise saturate the CPU so badly that every connect looks
 * like a BMC timeout. Queued connects have not started their clock yet.
 */
const MAX_CONCURRENT_HANDSHAKES = 96;
let handshakes = 0;
const handshakeQueue: Array<() => void> = [];

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

export interface SocketOptions {
  /** scheme://host[:port] of the BMC. */
  origin: string;
  connectTimeoutMs: number;
  /** false = no verification; true = system CAs; string = PEM CA bundle. */
  verify: boolean | string;
  serverName: string | null;
}

/** TLS sessions to resume, per origin (the last one each BMC gave this thread). */
const tlsSessions = new Map<string, Buffer>();

/** The BMC is no longer this thread's: its TLS session goes too. */
export function forgetTlsSession(origin: string): void {
  tlsSessions.delete(origin);
}

/**
 * A connected socket to the BMC (TLS verified as the target says), opened inside this thread's
 * descriptor budget and handshake limit; TLS resumes the BMC's last session when it has one.
 * Rejects with RF_TIMEOUT, RF_TLS or RF_CONNECT.
 */
export function openSocket(o: SocketOptions, owner: SocketOwner): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const start = () => {
      handshakes++;
      let done = false;
      const u = new URL(o.origin);
      const port = Number(u.port) || (u.protocol === 'https:' ? 443 : 80);
      const host = u.hostname.replace(/^\[|\]$/g, '');
      const settle = (err: unknown, s: Socket) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        handshakes--;
        handshakeQueue.shift()?.();
        if (err) {
          s.destroy();
          socketBudget.unreserve();
          return reject(classifyTransportError(err, o.origin));
        }
        s.removeAllListeners('error');
        s.on('error', () => {}); // the link listens from here on; until then an error must not throw
        socketBudget.adopt(owner, s);
        resolve(s);
      };
      let s: Socket;
      if (u.protocol === 'https:') {
        const servername = o.serverName ?? (net.isIP(host) ? undefined : host);
        const t = tls.connect({ host, port, servername, secureContext: secureContextFor(o.verify), rejectUnauthorized: o.verify !== false, session: tlsSessions.get(o.origin) });
        t.on('session', (sess: Buffer) => tlsSessions.set(o.origin, sess));
        t.once('secureConnect', () => settle(null, t));
        s = t;
      } else {
        s = net.connect({ host, port });
        s.once('connect', () => settle(null, s));
      }
      s.setNoDelay(true);
      s.setKeepAlive(true, 60_000);
      s.once('error', (err) => settle(err, s));
      const timer = setTimeout(() => settle(new RedfishError('RF_TIMEOUT', `BMC ${o.origin} did not accept a connection within ${o.connectTimeoutMs} ms`, undefined, o.origin), s), o.connectTimeoutMs);
    };
    socketBudget.reserve(owner, () => {
      if (handshakes < MAX_CONCURRENT_HANDSHAKES) start();
      else handshakeQueue.push(start);
    });
  });
}

/** Retry-After in ms (delta-seconds form), else `fallback`. */
export function retryAfterMs(h: string | string[] | undefined, fallback: number): number {
  const v = Array.isArray(h) ? h[0] : h;
  const n = Number(v);
  return Number.isFinite(n) && n >= 0 ? n * 1000 : fallback;
}

/** A transport failure as a stable code: ours as they are (RF_TIMEOUT comes from the link and the connect deadline), else RF_TLS or RF_CONNECT. */
export function classifyTransportError(err: unknown, where: string): RedfishError {
  if (err instanceof RedfishError) return err;
  const e = err as { name?: string; code?: string; message?: string };
  if (/CERT|SSL|TLS|self.signed|altnames/i.test(`${e.code} ${e.message}`)) return new RedfishError('RF_TLS', `TLS to ${where} failed: ${e.message}`, undefined, where);
  return new RedfishError('RF_CONNECT', `cannot reach BMC ${where}: ${e.code ?? ''} ${e.message ?? ''}`.trim(), undefined, where);
}
