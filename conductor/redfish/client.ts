/**
 * A Redfish client for one (BMC origin, username): one keep-alive connection pool, one session
 * (single-flight login, reuse, refresh before the BMC's SessionTimeout, one re-login on 401, Basic
 * fallback only when the BMC has no SessionService), per-request deadlines, retries with backoff for
 * idempotent GETs only, ETag/If-None-Match, $select when the service supports it, an adaptive
 * per-BMC concurrency limit and a circuit breaker so a dead BMC costs one timeout, not a stall.
 */
import { Pool, buildConnector, errors as undiciErrors } from 'undici';
import { RedfishError, isUnreachable, type RedfishErrorCode } from './errors.js';
import type { RedfishTarget } from './driver-info.js';

export interface RedfishClientOptions {
  /** Whole-request deadline (connect + response). @default 10000 */
  timeoutMs?: number;
  /** @default 5000 */
  connectTimeoutMs?: number;
  /** Max requests in flight to this BMC (the adaptive limit never exceeds it). @default 2 */
  maxInflight?: number;
  /** Retries for idempotent GETs on 5xx / connection errors. @default 2 */
  getRetries?: number;
  /** Consecutive unreachable failures that open the breaker. @default 2 */
  breakerThreshold?: number;
  /** How long the breaker stays open before one probe. @default 30000 */
  breakerOpenMs?: number;
}

export interface SessionRecord {
  key: string;
  uri: string;
  token: string;
  createdAt: number;
}

export interface ClientStats {
  requests: number;
  errors: number;
  logins: number;
  logins_failed: number;
  relogins: number;
  not_modified: number;
  retries: number;
  breaker_rejections: number;
}

export type SessionEvent = { op: 'created'; session: SessionRecord } | { op: 'deleted'; key: string; uri: string };

interface Cached {
  etag: string;
  doc: Record<string, unknown>;
}

const BASE_HEADERS = { 'OData-Version': '4.0', Accept: 'application/json' };

/**
 * At most this many TCP+TLS handshakes at once per thread. Opening thousands of BMC connections at
 * once (first sweep, restart) would otherwise saturate the CPU so badly that every connect looks
 * like a BMC timeout. Queued connects have not started their clock yet.
 */
const MAX_CONCURRENT_HANDSHAKES = 96;
let handshakes = 0;
const handshakeQueue: Array<() => void> = [];

function limitedConnector(inner: buildConnector.connector): buildConnector.connector {
  return (opts, cb) => {
    const start = () => {
      handshakes++;
      let done = false;
      inner(opts, ((err: Error | null, sock: unknown) => {
        if (!done) {
          done = true;
          handshakes--;
          handshakeQueue.shift()?.();
        }
        (cb as (e: Error | null, s: unknown) => void)(err, sock);
      }) as buildConnector.Callback);
    };
    if (handshakes < MAX_CONCURRENT_HANDSHAKES) start();
    else handshakeQueue.push(start);
  };
}

function retryAfterMs(h: string | string[] | undefined, fallback: number): number {
  const v = Array.isArray(h) ? h[0] : h;
  const n = Number(v);
  return Number.isFinite(n) && n >= 0 ? n * 1000 : fallback;
}

export class RedfishClient {
  readonly stats: ClientStats = { requests: 0, errors: 0, logins: 0, logins_failed: 0, relogins: 0, not_modified: 0, retries: 0, breaker_rejections: 0 };
  private readonly pool: Pool;
  private session: SessionRecord | null = null;
  private sessionTimeoutMs = 1800_000;
  private lastUsed = 0;
  private login$: Promise<void> | null = null;
  private basicOnly: boolean;
  private sessionWorked = false;
  private blockedUntil = 0;
  private blockedError: RedfishError | null = null;
  private selectSupported: boolean | null = null;
  private readonly etags = new Map<string, Cached>();
  private inflight = 0;
  private limit: number;
  private readonly waiters: Array<() => void> = [];
  private failures = 0;
  private breakerUntil = 0;
  private probing = false;
  private readonly o: Required<RedfishClientOptions>;
  /** Session changes for the owner to persist (drained by takeSessionEvents). */
  private sessionEvents: SessionEvent[] = [];

  constructor(
    private target: RedfishTarget,
    opts: RedfishClientOptions = {},
  ) {
    this.o = {
      timeoutMs: opts.timeoutMs ?? 10_000,
      connectTimeoutMs: opts.connectTimeoutMs ?? 5_000,
      maxInflight: opts.maxInflight ?? 2,
      getRetries: opts.getRetries ?? 2,
      breakerThreshold: opts.breakerThreshold ?? 2,
      breakerOpenMs: opts.breakerOpenMs ?? 30_000,
    };
    this.limit = this.o.maxInflight;
    this.basicOnly = target.authType === 'basic';
    this.pool = new Pool(target.origin, {
      connections: this.o.maxInflight,
      pipelining: 1,
      keepAliveTimeout: 30_000,
      keepAliveMaxTimeout: 60_000,
      headersTimeout: this.o.timeoutMs,
      bodyTimeout: this.o.timeoutMs,
      connect: limitedConnector(
        buildConnector({
          timeout: this.o.connectTimeoutMs,
          rejectUnauthorized: target.verify !== false,
          ...(typeof target.verify === 'string' ? { ca: target.verify } : {}),
          ...(target.serverName ? { servername: target.serverName } : {}),
        }),
      ),
    });
  }

  get key(): string {
    return this.target.key;
  }

  /** Credentials or TLS settings changed: keep the pool only if the origin is the same. */
  updateTarget(t: RedfishTarget): void {
    if (t.password !== this.target.password) {
      this.blockedUntil = 0;
      this.blockedError = null;
    }
    this.target = t;
  }

  get hasSession(): boolean {
    return this.session !== null;
  }

  get breakerOpen(): boolean {
    return this.breakerUntil > Date.now();
  }

  takeSessionEvents(): SessionEvent[] {
    const e = this.sessionEvents;
    this.sessionEvents = [];
    return e;
  }

  /** Adopt a session persisted by an earlier run or handed over by another worker. */
  adoptSession(s: SessionRecord): void {
    this.session = s;
    this.lastUsed = Date.now();
    this.sessionWorked = true;
  }

  /** Give up the session without deleting it (it moves to another worker). */
  releaseSession(): SessionRecord | null {
    const s = this.session;
    this.session = null;
    return s;
  }

  // ------------------------------------------------------------------ limiter & breaker

  private async acquire(): Promise<void> {
    if (this.inflight < this.limit) {
      this.inflight++;
      return;
    }
    await new Promise<void>((r) => this.waiters.push(r));
    this.inflight++;
  }

  private releaseSlot(): void {
    this.inflight--;
    if (this.inflight < this.limit) this.waiters.shift()?.();
  }

  private onSuccess(): void {
    this.failures = 0;
    this.breakerUntil = 0;
    // Additive increase back to the configured ceiling.
    if (this.limit < this.o.maxInflight) {
      this.limit++;
      this.waiters.shift()?.();
    }
  }

  private onFailure(code: RedfishErrorCode): void {
    if (code === 'RF_BUSY' || code === 'RF_TIMEOUT') this.limit = Math.max(1, Math.floor(this.limit / 2));
    if (isUnreachable(code)) {
      this.failures++;
      if (this.failures >= this.o.breakerThreshold) this.breakerUntil = Date.now() + this.o.breakerOpenMs;
    }
  }

  // ------------------------------------------------------------------ auth

  private async ensureAuth(): Promise<Record<string, string>> {
    if (this.blockedUntil > Date.now()) throw this.blockedError!;
    if (this.basicOnly) return { Authorization: `Basic ${Buffer.from(`${this.target.username}:${this.target.password}`).toString('base64')}` };
    const stale = this.session && Date.now() - this.lastUsed > this.sessionTimeoutMs * 0.9;
    if (stale) this.dropSession(true);
    if (!this.session) {
      this.login$ ??= this.login().finally(() => (this.login$ = null));
      await this.login$;
      if (this.basicOnly) return this.ensureAuth();
    }
    return { 'X-Auth-Token': this.session!.token };
  }

  private dropSession(deleteOnBmc: boolean): void {
    const s = this.session;
    if (!s) return;
    this.session = null;
    this.sessionEvents.push({ op: 'deleted', key: s.key, uri: s.uri });
    if (deleteOnBmc) void this.raw('DELETE', s.uri, { headers: { 'X-Auth-Token': s.token } }).catch(() => {});
  }

  private async login(): Promise<void> {
    this.stats.logins++;
    const path = `${this.target.rootPrefix}/SessionService/Sessions`;
    let res;
    try {
      res = await this.raw('POST', path, { body: JSON.stringify({ UserName: this.target.username, Password: this.target.password }) });
    } catch (err) {
      this.stats.logins_failed++;
      throw err;
    }
    const text = await res.body.text();
    if (res.statusCode === 404 || res.statusCode === 405 || res.statusCode === 501) {
      if (this.target.authType === 'session') throw new RedfishError('RF_AUTH', `BMC has no SessionService (HTTP ${res.statusCode}) and redfish_auth_type is session`, res.statusCode, this.target.origin);
      if (!this.sessionWorked) {
        this.basicOnly = true;
        return;
      }
    }
    if (res.statusCode === 503 && /SessionLimitExceeded|maximum number of user sessions/i.test(text)) {
      this.stats.logins_failed++;
      // Back off: a full session table is not fixed by hammering it (no login storm).
      this.blockedUntil = Date.now() + retryAfterMs(res.headers['retry-after'], 30_000);
      this.blockedError = new RedfishError('RF_SESSION_CAP', `BMC session limit reached: ${text.slice(0, 200)}`, 503, this.target.origin);
      throw this.blockedError;
    }
    if (res.statusCode === 401 || res.statusCode === 403) {
      this.stats.logins_failed++;
      // Never retry a failed login quickly: it counts towards BMC account lockouts.
      this.blockedUntil = Date.now() + 60_000;
      this.blockedError = new RedfishError('RF_AUTH', `BMC rejected the credentials of ${this.target.username} (HTTP ${res.statusCode})`, res.statusCode, this.target.origin);
      throw this.blockedError;
    }
    const token = res.headers['x-auth-token'];
    const location = res.headers.location;
    if (res.statusCode >= 300 || typeof token !== 'string') {
      this.stats.logins_failed++;
      throw new RedfishError(res.statusCode >= 500 ? 'RF_HTTP' : 'RF_PROTOCOL', `session login failed: HTTP ${res.statusCode}${typeof token !== 'string' ? ' without X-Auth-Token' : ''}`, res.statusCode, this.target.origin);
    }
    let uri = typeof location === 'string' ? location : '';
    if (!uri) {
      try {
        uri = String((JSON.parse(text) as Record<string, unknown>)['@odata.id'] ?? '');
      } catch {
        /* no body */
      }
    }
    if (/^https?:\/\//.test(uri)) uri = new URL(uri).pathname;
    this.session = { key: this.target.key, uri, token, createdAt: Date.now() };
    this.lastUsed = Date.now();
    this.sessionWorked = true;
    this.sessionEvents.push({ op: 'created', session: this.session });
    // Learn the idle timeout once, to refresh before the BMC expires us.
    try {
      const ss = await this.raw('GET', `${this.target.rootPrefix}/SessionService`, { headers: { 'X-Auth-Token': token } });
      const doc = (await ss.body.json()) as { SessionTimeout?: number };
      if (typeof doc.SessionTimeout === 'number' && doc.SessionTimeout > 0) this.sessionTimeoutMs = doc.SessionTimeout * 1000;
    } catch {
      /* keep the default */
    }
  }

  /** DELETE our session on the BMC (shutdown / eviction). */
  async logout(): Promise<void> {
    const s = this.session;
    this.session = null;
    if (!s) return;
    this.sessionEvents.push({ op: 'deleted', key: s.key, uri: s.uri });
    try {
      const r = await this.raw('DELETE', s.uri, { headers: { 'X-Auth-Token': s.token } });
      await r.body.dump();
    } catch {
      /* best effort: the BMC may be gone */
    }
  }

  async close(): Promise<void> {
    await this.pool.close().catch(() => {});
  }

  // ------------------------------------------------------------------ requests

  private async raw(method: 'GET' | 'POST' | 'PATCH' | 'DELETE', path: string, o: { body?: string; headers?: Record<string, string> } = {}) {
    try {
      return await this.pool.request({
        method,
        path,
        headers: { ...BASE_HEADERS, ...(o.body ? { 'Content-Type': 'application/json' } : {}), ...o.headers },
        body: o.body,
        // Phase deadlines (connect / headers / body), each started when that phase starts, so time
        // spent queued behind our own connection limits never reads as a BMC timeout.
        headersTimeout: this.o.timeoutMs,
        bodyTimeout: this.o.timeoutMs,
      });
    } catch (err) {
      throw this.classify(err);
    }
  }

  private classify(err: unknown): RedfishError {
    if (err instanceof RedfishError) return err;
    const e = err as { name?: string; code?: string; message?: string };
    const where = this.target.origin;
    if (e.name === 'TimeoutError' || e.name === 'AbortError' || e instanceof undiciErrors.HeadersTimeoutError || e instanceof undiciErrors.BodyTimeoutError || e.code === 'UND_ERR_CONNECT_TIMEOUT') {
      return new RedfishError('RF_TIMEOUT', `BMC ${where} did not answer within ${this.o.timeoutMs} ms`, undefined, where);
    }
    if (/CERT|SSL|TLS|self.signed|altnames/i.test(`${e.code} ${e.message}`)) return new RedfishError('RF_TLS', `TLS to ${where} failed: ${e.message}`, undefined, where);
    return new RedfishError('RF_CONNECT', `cannot reach BMC ${where}: ${e.code ?? ''} ${e.message ?? ''}`.trim(), undefined, where);
  }

  /** Paths relative to the root prefix are accepted ("Systems/1") as well as absolute ones. */
  private abs(path: string): string {
    return path.startsWith('/') ? path : `${this.target.rootPrefix}/${path}`;
  }

  async request(method: 'GET' | 'POST' | 'PATCH' | 'DELETE', path: string, o: { body?: unknown; select?: string[]; retries?: number } = {}): Promise<{ status: number; doc: Record<string, unknown>; headers: Record<string, string | string[] | undefined> }> {
    const now = Date.now();
    if (this.breakerUntil > now) {
      this.stats.breaker_rejections++;
      throw new RedfishError('RF_CIRCUIT_OPEN', `BMC ${this.target.origin} is unreachable; circuit open for ${Math.ceil((this.breakerUntil - now) / 1000)} s more`, undefined, this.target.origin);
    }
    // Half-open: after the open period, let exactly one probe through.
    const halfOpen = this.failures >= this.o.breakerThreshold;
    if (halfOpen) {
      if (this.probing) throw new RedfishError('RF_CIRCUIT_OPEN', `BMC ${this.target.origin} is being probed`, undefined, this.target.origin);
      this.probing = true;
    }
    let full = this.abs(path);
    if (method === 'GET' && o.select?.length) {
      if (this.selectSupported === null) await this.probeRoot();
      if (this.selectSupported) full += `${full.includes('?') ? '&' : '?'}$select=${o.select.join(',')}`;
    }
    await this.acquire();
    try {
      return await this.send(method, full, o.body, method === 'GET' ? (o.retries ?? this.o.getRetries) : 0, true);
    } finally {
      this.releaseSlot();
      if (halfOpen) this.probing = false;
    }
  }

  private async probeRoot(): Promise<void> {
    try {
      const r = await this.raw('GET', `${this.target.rootPrefix}/`);
      const doc = (await r.body.json()) as { ProtocolFeaturesSupported?: { SelectQuery?: boolean }; SessionService?: unknown };
      this.selectSupported = doc.ProtocolFeaturesSupported?.SelectQuery === true;
      if (!doc.SessionService && this.target.authType === 'auto') this.basicOnly = true;
    } catch {
      this.selectSupported = false;
    }
  }

  private async send(method: 'GET' | 'POST' | 'PATCH' | 'DELETE', path: string, body: unknown, retries: number, mayReauth: boolean): Promise<{ status: number; doc: Record<string, unknown>; headers: Record<string, string | string[] | undefined> }> {
    this.stats.requests++;
    let auth: Record<string, string>;
    try {
      auth = await this.ensureAuth();
    } catch (err) {
      this.stats.errors++;
      const e = this.classify(err);
      this.onFailure(e.code);
      throw e;
    }
    const cached = method === 'GET' ? this.etags.get(path) : undefined;
    const headers = { ...auth, ...(cached ? { 'If-None-Match': cached.etag } : {}) };
    let res;
    try {
      res = await this.raw(method, path, { body: body === undefined ? undefined : JSON.stringify(body), headers });
    } catch (err) {
      const e = err as RedfishError;
      if (method === 'GET' && retries > 0 && e.code === 'RF_CONNECT') {
        this.stats.retries++;
        await new Promise((r) => setTimeout(r, 200 * (this.o.getRetries - retries + 1)));
        return this.send(method, path, body, retries - 1, mayReauth);
      }
      this.stats.errors++;
      this.onFailure(e.code);
      throw e;
    }
    this.lastUsed = Date.now();
    const status = res.statusCode;
    if (status === 304 && cached) {
      await res.body.dump();
      this.stats.not_modified++;
      this.onSuccess();
      return { status: 200, doc: cached.doc, headers: res.headers };
    }
    const text = await res.body.text().catch(() => '');
    if ((status === 401 || status === 403) && mayReauth && !this.basicOnly) {
      // The BMC forgot our session (expiry, reboot, admin): log in again once, retry once.
      this.stats.relogins++;
      this.dropSession(false);
      return this.send(method, path, body, retries, false);
    }
    if (status === 401 || status === 403) {
      this.stats.errors++;
      throw new RedfishError('RF_AUTH', `BMC refused ${method} ${path}: HTTP ${status}`, status, this.target.origin);
    }
    if (status >= 500) {
      const code: RedfishErrorCode = status === 503 ? 'RF_BUSY' : 'RF_HTTP';
      this.onFailure(code);
      if (method === 'GET' && retries > 0) {
        this.stats.retries++;
        await new Promise((r) => setTimeout(r, Math.min(retryAfterMs(res.headers['retry-after'], 300), 2000) * (this.o.getRetries - retries + 1)));
        return this.send(method, path, body, retries - 1, mayReauth);
      }
      this.stats.errors++;
      throw new RedfishError(code, `BMC answered ${method} ${path} with HTTP ${status}: ${text.slice(0, 200)}`, status, this.target.origin);
    }
    let doc: Record<string, unknown> = {};
    if (text) {
      try {
        doc = JSON.parse(text) as Record<string, unknown>;
      } catch {
        this.stats.errors++;
        throw new RedfishError('RF_PROTOCOL', `BMC sent invalid JSON for ${method} ${path}`, status, this.target.origin);
      }
    }
    if (status >= 400) {
      this.stats.errors++;
      const msg = (doc.error as { message?: string } | undefined)?.message ?? text.slice(0, 200);
      throw new RedfishError('RF_HTTP', `BMC answered ${method} ${path} with HTTP ${status}: ${msg}`, status, this.target.origin);
    }
    this.onSuccess();
    const etag = res.headers.etag;
    if (method === 'GET' && typeof etag === 'string') this.etags.set(path, { etag, doc });
    return { status, doc, headers: res.headers };
  }
}
