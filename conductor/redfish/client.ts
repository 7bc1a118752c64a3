/**
 * A Redfish client for one (BMC origin, username): one keep-alive connection pool, one session
 * (single-flight login, reuse, refresh before the BMC's SessionTimeout, one re-login on 401, Basic
 * fallback only when the BMC has no SessionService), per-request deadlines, retries with backoff for
 * idempotent GETs only, ETag/If-None-Match, $select when the service supports it, an adaptive
 * per-BMC concurrency limit and a circuit breaker so a dead BMC costs one timeout, not a stall.
 */
import type { Socket } from 'node:net';
import { socketBudget, type SocketOwner } from './socket-budget.js';
import { BmcGate } from './gate.js';
import { classifyTransportError, forgetTlsSession, retryAfterMs } from './transport.js';
import { BmcLink, type Exchange } from './bmc-link.js';
import { BASE_LINES, basicLines, getLines, JSON_LINES, tokenLines, withSelect } from './request-lines.js';
import { LastOf } from './last-of.js';
import { EtagCache } from './etag-cache.js';
import { RedfishError, type RedfishErrorCode } from './errors.js';
import { readLoginAnswer } from './login-answer.js';
import type { RedfishTarget } from './driver-info.js';
import { compileClientOptions, type ClientStats, type CompiledClientOptions, type RedfishClientOptions, type SessionEvent, type SessionRecord } from './client-types.js';
export type { RedfishClientOptions, SessionRecord, ClientStats, SessionEvent };

const NO_EVENTS: readonly SessionEvent[] = Object.freeze([]);

export class RedfishClient implements SocketOwner {
  /** Requests in flight (their sockets are never closed by the descriptor budget). */
  busy = 0;
  readonly sockets = new Set<Socket>();
  readonly stats: ClientStats = { requests: 0, errors: 0, logins: 0, logins_failed: 0, relogins: 0, not_modified: 0, retries: 0, breaker_rejections: 0 };
  private readonly link: BmcLink;
  private session: SessionRecord | null = null;
  private sessionTimeoutMs = 1800_000;
  private lastUsed = 0;
  private login$: Promise<void> | null = null;
  private basicOnly: boolean;
  private sessionWorked = false;
  private blockedUntil = 0;
  private blockedError: RedfishError | null = null;
  private selectSupported: boolean | null = null;
  private readonly etags = new EtagCache();
  /** The last GET's path with $select, and its header lines (last-of.ts). */
  private readonly selectPath = new LastOf(withSelect);
  private readonly requestLines = new LastOf(getLines);
  private readonly gate: BmcGate;
  /** The worker thread, not the client, reads socketBudget (socket-budget.ts). */
  private readonly o: CompiledClientOptions;
  /** Session changes for the owner to persist (drained by takeSessionEvents). */
  private sessionEvents: SessionEvent[] = [];

  constructor(
    private target: RedfishTarget,
    opts: RedfishClientOptions = {},
  ) {
    this.o = compileClientOptions(opts);
    this.basicOnly = target.authType === 'basic';
    this.gate = new BmcGate(target.origin, this.o.maxInflight, this.o.breakerThreshold, this.o.breakerOpenMs);
    this.link = new BmcLink({ origin: target.origin, verify: target.verify, serverName: target.serverName, connections: this.o.maxInflight, timeoutMs: this.o.timeoutMs, connectTimeoutMs: this.o.connectTimeoutMs, keepAliveMs: this.o.keepAliveMs }, this);
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
    return this.gate.open;
  }

  readonly probeEarly = (): void => this.gate.probeEarly();

  /** How long to wait after `err` when the client knows: the breaker's probe, a login block's end, Retry-After. */
  waitHintMs(err: RedfishError): number | undefined {
    if (err.code === 'RF_CIRCUIT_OPEN') return Math.max(50, this.gate.openRemainingMs);
    if (err.code === 'RF_SESSION_CAP' || err.code === 'RF_AUTH') return this.blockedUntil > Date.now() ? this.blockedUntil - Date.now() : undefined;
    return err.retryAfterMs;
  }

  /** Pending session changes, handed over (a shared empty list when none: no array per sweep read). */
  takeSessionEvents(): readonly SessionEvent[] {
    const e = this.sessionEvents;
    if (!e.length) return NO_EVENTS;
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

  // ------------------------------------------------------------------ auth

  /** The auth header line in use, built once per session token (or per target, for Basic). */
  private authCache: { key: string | RedfishTarget; lines: string } | null = null;

  private authLines(key: string | RedfishTarget, make: () => string): string {
    if (this.authCache?.key !== key) this.authCache = { key, lines: make() };
    return this.authCache.lines;
  }

  /** Auth header lines: at once while the session is good (no promise per request), else after a login. */
  private ensureAuth(): string | Promise<string> {
    if (this.blockedUntil > Date.now()) throw this.blockedError!;
    if (this.basicOnly) return this.authLines(this.target, () => basicLines(this.target.username, this.target.password));
    const stale = this.session && Date.now() - this.lastUsed > this.sessionTimeoutMs * 0.9;
    if (stale) this.dropSession(true);
    const token = this.session?.token;
    if (token) return this.authLines(token, () => tokenLines(token));
    this.login$ ??= this.login().finally(() => (this.login$ = null));
    return this.login$.then(() => this.ensureAuth());
  }

  private dropSession(deleteOnBmc: boolean): void {
    const s = this.session;
    if (!s) return;
    this.session = null;
    this.sessionEvents.push({ op: 'deleted', key: s.key, uri: s.uri });
    if (deleteOnBmc) void this.working(() => this.raw('DELETE', s.uri, { lines: tokenLines(s.token) })).catch(() => {});
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
    const answer = readLoginAnswer(res.statusCode, res.headers, res.body, this.target, this.sessionWorked);
    if (answer.kind === 'no-session-service') {
      this.basicOnly = true;
      return;
    }
    if (answer.kind === 'error') {
      this.stats.logins_failed++;
      if (answer.blockMs !== undefined) {
        this.blockedUntil = Date.now() + answer.blockMs;
        this.blockedError = answer.error;
      }
      throw answer.error;
    }
    const { token, uri } = answer;
    this.session = { key: this.target.key, uri, token, createdAt: Date.now() };
    this.lastUsed = Date.now();
    this.sessionWorked = true;
    this.sessionEvents.push({ op: 'created', session: this.session });
    // Learn the idle timeout once, to refresh before the BMC expires us.
    try {
      const ss = await this.raw('GET', `${this.target.rootPrefix}/SessionService`, { lines: tokenLines(token) });
      const doc = JSON.parse(ss.body) as { SessionTimeout?: number };
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
      await this.working(() => this.raw('DELETE', s.uri, { lines: tokenLines(s.token) }));
    } catch {
      /* best effort: the BMC may be gone */
    }
  }

  async close(): Promise<void> {
    socketBudget.forget(this);
    await this.link.close();
    forgetTlsSession(this.target.origin);
  }

  /** Marks this BMC busy for the descriptor budget while `fn` runs (its sockets stay open). */
  private async working<T>(fn: () => Promise<T>): Promise<T> {
    this.busy++;
    try {
      return await fn();
    } finally {
      if (--this.busy === 0) socketBudget.idle(this);
    }
  }

  // ------------------------------------------------------------------ requests

  /**
   * One exchange on the BMC link. Deadlines (connect, then the answer) start only when that phase
   * starts, so time queued behind our own connection limits never reads as a BMC timeout.
   */
  private async raw(method: 'GET' | 'POST' | 'PATCH' | 'DELETE', path: string, o: { body?: string; lines?: string } = {}): Promise<Exchange> {
    try {
      const lines = (o.body ? JSON_LINES : BASE_LINES) + (o.lines ?? '');
      return await this.link.exchange(method, path, lines, o.body);
    } catch (err) {
      throw this.classify(err);
    }
  }

  private classify(err: unknown): RedfishError {
    return classifyTransportError(err, this.target.origin);
  }

  /** Paths relative to the root prefix are accepted ("Systems/1") as well as absolute ones. */
  private abs(path: string): string {
    return path.startsWith('/') ? path : `${this.target.rootPrefix}/${path}`;
  }

  async request(method: 'GET' | 'POST' | 'PATCH' | 'DELETE', path: string, o: { body?: unknown; select?: string[]; retries?: number } = {}): Promise<{ status: number; doc: Record<string, unknown>; headers: Record<string, string | string[] | undefined> }> {
    let halfOpen: boolean;
    try {
      halfOpen = this.gate.enter();
    } catch (err) {
      this.stats.breaker_rejections++;
      throw err;
    }
    let full = this.abs(path);
    if (method === 'GET' && o.select?.length) {
      if (this.selectSupported === null) await this.probeRoot();
      if (this.selectSupported) full = this.selectPath.get(full, o.select);
    }
    const wait = this.gate.acquire();
    if (wait) await wait;
    this.busy++; // working(), inlined: every sweep read comes this way; each async layer is a promise more
    try {
      return await this.send(method, full, o.body, method === 'GET' ? (o.retries ?? this.o.getRetries) : 0, true);
    } finally {
      if (--this.busy === 0) socketBudget.idle(this);
      this.gate.release();
      this.gate.exit(halfOpen);
    }
  }

  private probeRoot(): Promise<void> {
    return this.working(() => this.probeRootOnce());
  }

  private async probeRootOnce(): Promise<void> {
    try {
      const r = await this.raw('GET', `${this.target.rootPrefix}/`);
      // A 503 body is not the service root (read as one, it switched a BMC to Basic auth for good).
      if (r.statusCode !== 200) return; // probed again next time
      const doc = JSON.parse(r.body) as { ProtocolFeaturesSupported?: { SelectQuery?: boolean }; SessionService?: unknown };
      this.selectSupported = doc.ProtocolFeaturesSupported?.SelectQuery === true;
      if (!doc.SessionService && this.target.authType === 'auto') this.basicOnly = true;
    } catch {
      this.selectSupported = false;
    }
  }

  private async send(method: 'GET' | 'POST' | 'PATCH' | 'DELETE', path: string, body: unknown, retries: number, mayReauth: boolean): Promise<{ status: number; doc: Record<string, unknown>; headers: Record<string, string | string[] | undefined> }> {
    this.stats.requests++;
    let auth: string;
    try {
      const a = this.ensureAuth();
      auth = typeof a === 'string' ? a : await a;
    } catch (err) {
      this.stats.errors++;
      const e = this.classify(err);
      this.gate.onFailure(e.code);
      throw e;
    }
    const cached = method === 'GET' ? this.etags.get(path) : undefined;
    let res;
    try {
      res = body === undefined ? await this.link.exchange(method, path, this.requestLines.get(auth, cached?.line ?? '')) : await this.link.exchange(method, path, JSON_LINES + auth, JSON.stringify(body));
    } catch (err) {
      const e = this.classify(err);
      if (method === 'GET' && retries > 0 && e.code === 'RF_CONNECT') {
        this.stats.retries++;
        await new Promise((r) => setTimeout(r, 200 * (this.o.getRetries - retries + 1)));
        return this.send(method, path, body, retries - 1, mayReauth);
      }
      this.stats.errors++;
      this.gate.onFailure(e.code);
      throw e;
    }
    this.lastUsed = Date.now();
    const status = res.statusCode;
    if (status === 304 && cached) {
      this.stats.not_modified++;
      this.gate.onSuccess();
      return { status: 200, doc: cached.doc, headers: res.headers };
    }
    const text = res.body;
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
      this.gate.onFailure(code);
      if (method === 'GET' && retries > 0) {
        this.stats.retries++;
        await new Promise((r) => setTimeout(r, Math.min(retryAfterMs(res.headers['retry-after'], 300), 2000) * (this.o.getRetries - retries + 1)));
        return this.send(method, path, body, retries - 1, mayReauth);
      }
      this.stats.errors++;
      throw new RedfishError(code, `BMC answered ${method} ${path} with HTTP ${status}: ${text.slice(0, 200)}`, status, this.target.origin, res.headers['retry-after'] === undefined ? undefined : retryAfterMs(res.headers['retry-after'], 1000));
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
    this.gate.onSuccess();
    const etag = res.headers.etag;
    if (method === 'GET' && typeof etag === 'string') this.etags.remember(path, etag, doc);
    return { status, doc, headers: res.headers };
  }
}
