/**
 * One simulated Redfish service (one BMC): sessions, auth, the resource tree, tasks, SSE events,
 * and the BMC realism — latency, a concurrency limit, session caps and expiry, faults — with
 * counters for every outcome. In per-address mode it manages one Machine; in single-address mode
 * (sushy-tools style) one service manages many. This module is the request pipeline (auth,
 * latency, limits, faults, routing, SSE); the resources it routes to live in redfish/, one module
 * per part of the tree.
 */
import { createHash } from 'node:crypto';
import type { FaultRequest } from './protocol.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { between, rngFor, type Rng } from './rng.js';
import type { BmcTraits, Profile } from './profiles.js';
import { Machine, type Health } from './machine.js';
import { ODATA, collection, emptyCounters, redfishError, select, type BmcCounters, type Reply, type Session, type Task } from './redfish/common.js';
import { login, sessionService } from './redfish/sessions.js';
import { systems } from './redfish/systems.js';
import { chassis, manager } from './redfish/chassis.js';
import { taskService, updateService } from './redfish/update.js';

export { emptyCounters, type BmcCounters };





/** Runtime faults injected through the admin API (on top of the profile's standing faults). */
export interface Faults {
  blackHole: boolean;
  down: boolean;
  stormRate: number;
  stormUntil: number;
  slowFactor: number;
  /** Scripted answers for matching requests, spent in order (admin API `script`). */
  script: ScriptedFault[];
}

export type ScriptedFault = NonNullable<FaultRequest['script']>[number];





export class BmcService {
  readonly counters = emptyCounters();
  readonly faults: Faults = { blackHole: false, down: false, stormRate: 0, stormUntil: 0, slowFactor: 1, script: [] };
  readonly sessions = new Map<string, Session>(); // by token
  readonly tasks = new Map<string, Task>();
  private nextTask = 1;

  nextTaskId(): number {
    return this.nextTask++;
  }
  private readonly events: Array<{ id: number; data: string }> = [];
  private nextEvent = 1;
  private readonly sse = new Set<ServerResponse>();
  private readonly queue: Array<() => void> = [];
  readonly rng: Rng;
  private readonly started = Date.now();
  private healthTimer: NodeJS.Timeout | undefined;
  /** Sockets held open by black-holed requests (destroyed on shutdown). */
  readonly heldSockets = new Set<import('node:net').Socket>();
  readonly machinesById = new Map<string, Machine>();

  constructor(
    readonly index: number,
    readonly machines: Machine[],
    readonly profile: Profile,
    readonly traits: BmcTraits,
    readonly username: string,
    readonly password: string,
    seed: string,
  ) {
    this.rng = rngFor(seed, index, 'service');
    for (const m of machines) {
      this.machinesById.set(m.id, m);
      m.on('power', (p) => this.emitEvent(m, 'ResourceEvent.1.0.ResourceChanged', `The power state of the system changed to ${p}.`, 'OK', { PowerState: p }));
      m.on('health', (h) => this.emitEvent(m, `ResourceEvent.1.0.ResourceStatusChanged${h}`, `The health of the system changed to ${h}.`, h === 'OK' ? 'OK' : h, { Health: h }));
      m.on('firmware', (c, v) => this.emitEvent(m, 'ResourceEvent.1.0.ResourceChanged', `Firmware ${c} updated to ${v}.`, 'OK', { Component: c, Version: v }));
    }
    if (profile.health_changes_per_hour > 0) this.scheduleHealthChange();
  }

  private scheduleHealthChange(): void {
    const meanMs = 3600_000 / this.profile.health_changes_per_hour;
    const delay = -Math.log(1 - this.rng()) * meanMs;
    this.healthTimer = setTimeout(() => {
      const m = this.machines[Math.floor(this.rng() * this.machines.length)]!;
      const r = this.rng();
      m.setHealth(m.health !== 'OK' ? 'OK' : r < 0.8 ? 'Warning' : 'Critical');
      this.scheduleHealthChange();
    }, Math.min(delay, 2 ** 31 - 1));
    this.healthTimer.unref();
  }

  stop(): void {
    if (this.healthTimer) clearTimeout(this.healthTimer);
    for (const m of this.machines) m.stop();
    for (const r of this.sse) r.destroy();
    for (const s of this.heldSockets) s.destroy();
  }

  expireSessions(): number {
    const n = this.sessions.size;
    this.sessions.clear();
    this.counters.sessions_expired += n;
    this.counters.sessions_live = 0;
    return n;
  }

  private isDown(now: number): boolean {
    if (this.faults.down) return true;
    if (!this.traits.flapping) return false;
    const { period_s, down_s } = this.profile.flap;
    const t = ((now - this.started) / 1000 + this.traits.flapPhaseS) % period_s;
    return t < down_s;
  }

  private stormRate(now: number): number {
    if (this.faults.stormUntil > now) return this.faults.stormRate;
    return this.traits.storm ? this.profile.storm_error_rate : 0;
  }

  private emitEvent(m: Machine, messageId: string, message: string, severity: string, oem: Record<string, unknown>): void {
    const id = this.nextEvent++;
    const data = JSON.stringify({
      '@odata.type': '#Event.v1_7_0.Event',
      Id: String(id),
      Name: 'Event',
      Events: [
        {
          EventId: String(id),
          EventTimestamp: new Date().toISOString(),
          EventType: 'Other',
          Severity: severity,
          Message: message,
          MessageId: messageId,
          OriginOfCondition: { '@odata.id': `/redfish/v1/Systems/${m.id}` },
          Oem: { Ironfleet: oem },
        },
      ],
    });
    this.events.push({ id, data });
    if (this.events.length > 200) this.events.shift();
    for (const r of this.sse) r.write(`id: ${id}\ndata: ${data}\n\n`);
  }

  // ------------------------------------------------------------------ request pipeline

  handle(req: IncomingMessage, res: ServerResponse, path: string, query: URLSearchParams): void {
    const now = Date.now();
    const method = req.method ?? 'GET';
    const isLogin = method === 'POST' && /^\/redfish\/v1\/SessionService\/Sessions\/?$/.test(path);
    const kind = isLogin ? 'login' : method === 'GET' || method === 'HEAD' ? 'get' : 'action';
    if (kind === 'login') this.counters.requests_login++;
    else if (kind === 'get') this.counters.requests_get++;
    else this.counters.requests_action++;

    if (this.isDown(now)) {
      this.counters.refused_down++;
      req.socket.destroy();
      return;
    }
    if (this.traits.blackHole || this.faults.blackHole) {
      this.counters.black_holed++;
      this.heldSockets.add(req.socket);
      req.socket.once('close', () => this.heldSockets.delete(req.socket));
      req.resume();
      return;
    }
    const run = () => void this.process(req, res, path, query, method, kind);
    if (this.counters.inflight >= this.traits.maxConcurrent) {
      if (this.profile.overload === '503' || this.queue.length >= this.profile.queue_limit) {
        this.send(res, { ...redfishError(503, 'Base.1.8.ServiceTemporarilyUnavailable', 'The service is busy; too many concurrent requests.'), headers: { 'Retry-After': '1' } });
        return;
      }
      this.queue.push(run);
      this.counters.queued_peak = Math.max(this.counters.queued_peak, this.queue.length);
      return;
    }
    run();
  }

  /** The first scripted rule matching this request, spent once (see FaultRequest.script). */
  private takeScripted(method: string, path: string): ScriptedFault | undefined {
    const i = this.faults.script.findIndex((r) => (!r.method || r.method === method) && (!r.path || path.includes(r.path)));
    if (i < 0) return undefined;
    const r = this.faults.script[i]!;
    if (--r.times <= 0) this.faults.script.splice(i, 1);
    this.counters.scripted_faults++;
    return r;
  }

  private answerScripted(res: ServerResponse, r: ScriptedFault): void {
    if (r.chunked) {
      // Chunked, in small pieces, and Connection: close — framing a BMC's web server may choose.
      const doc = JSON.stringify({ '@odata.id': '/redfish/v1/Chunked', Chunks: Array.from({ length: 40 }, (_, i) => `part-${i}`) });
      res.writeHead(r.status ?? 200, { 'Content-Type': 'application/json', Connection: 'close' });
      for (let i = 0; i < doc.length; i += 37) res.write(doc.slice(i, i + 37));
      res.end();
      return;
    }
    if (r.body_bytes !== undefined || r.truncate) {
      const doc = Buffer.from(JSON.stringify({ Padding: 'x'.repeat(Math.max(0, (r.body_bytes ?? 4096) - 15)) }));
      res.writeHead(r.status ?? 200, { 'Content-Type': 'application/json', 'Content-Length': doc.length });
      if (!r.truncate) return void res.end(doc);
      // Half the promised body, then the connection goes: the client must not take it as an answer.
      res.write(doc.subarray(0, doc.length >> 1), () => res.socket?.destroy());
      return;
    }
    if (r.reset || !r.status) {
      res.socket?.destroy();
      return;
    }
    this.send(res, { ...redfishError(r.status, 'Base.1.8.InternalError', `scripted fault: HTTP ${r.status}`), ...(r.retry_after_s !== undefined ? { headers: { 'Retry-After': String(r.retry_after_s) } } : {}) });
  }

  private async process(req: IncomingMessage, res: ServerResponse, path: string, query: URLSearchParams, method: string, kind: 'get' | 'login' | 'action'): Promise<void> {
    this.counters.inflight++;
    this.counters.peak_inflight = Math.max(this.counters.peak_inflight, this.counters.inflight);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.counters.inflight--;
      this.queue.shift()?.();
    };
    try {
      const body = method === 'GET' || method === 'HEAD' || method === 'DELETE' ? undefined : await readJson(req);
      const lat = between(this.rng, this.profile.latency_ms[kind]) * this.traits.slowFactor * this.faults.slowFactor;
      if (lat > 0) await new Promise((r) => setTimeout(r, lat));
      if (res.destroyed) return;
      const rate = this.stormRate(Date.now());
      if (rate > 0 && this.rng() < rate) {
        this.counters.served_5xx_storm++;
        this.send(res, redfishError(this.rng() < 0.5 ? 500 : 503, 'Base.1.8.InternalError', 'The request failed due to an internal service error.'));
        return;
      }
      const scripted = this.takeScripted(method, path);
      if (scripted && !scripted.after_apply) {
        this.answerScripted(res, scripted);
        return;
      }
      if (body === INVALID_JSON) {
        this.send(res, redfishError(400, 'Base.1.8.MalformedJSON', 'The request body submitted was malformed JSON.'));
        return;
      }
      const reply = this.route(req, res, path, query, method, body as Record<string, unknown> | undefined, release);
      // after_apply: the request took effect; its answer is lost or replaced by an error.
      if (reply && scripted) this.answerScripted(res, scripted);
      else if (reply) this.send(res, reply, req);
    } catch (err) {
      this.send(res, redfishError(500, 'Base.1.8.InternalError', (err as Error).message));
    } finally {
      release();
    }
  }

  private send(res: ServerResponse, r: Reply, req?: IncomingMessage): void {
    if (res.headersSent || res.destroyed) return;
    const s = r.status;
    if (s === 401) this.counters.served_401++;
    else if (s === 404) this.counters.served_404++;
    else if (s === 503) this.counters.served_503++;
    else if (s >= 400 && s < 500) this.counters.served_4xx_other++;
    else if (s < 300) this.counters.served_2xx++;
    const headers: Record<string, string> = { 'OData-Version': '4.0', ...r.headers };
    if (r.body === undefined) {
      res.writeHead(s, headers);
      res.end();
      return;
    }
    const text = JSON.stringify(r.body);
    if (req && req.method === 'GET' && s === 200) {
      const etag = `W/"${createHash('sha1').update(text).digest('base64url').slice(0, 16)}"`;
      headers.ETag = etag;
      if (req.headers['if-none-match'] === etag) {
        this.counters.served_2xx--;
        this.counters.served_304++;
        res.writeHead(304, headers);
        res.end();
        return;
      }
    }
    headers['Content-Type'] = 'application/json; charset=utf-8';
    headers['Content-Length'] = String(Buffer.byteLength(text));
    res.writeHead(s, headers);
    res.end(text);
  }

  // ------------------------------------------------------------------ auth

  private authenticate(req: IncomingMessage): Session | 'basic' | undefined {
    const tok = req.headers['x-auth-token'];
    if (typeof tok === 'string') {
      const s = this.sessions.get(tok);
      if (!s) return undefined;
      const now = Date.now();
      if (now - s.lastUsed > this.traits.sessionTimeoutS * 1000) {
        this.sessions.delete(tok);
        this.counters.sessions_expired++;
        this.counters.sessions_live = this.sessions.size;
        return undefined;
      }
      s.lastUsed = now;
      return s;
    }
    const auth = req.headers.authorization;
    if (this.profile.basic_auth && auth?.startsWith('Basic ')) {
      const [u, ...p] = Buffer.from(auth.slice(6), 'base64').toString('utf8').split(':');
      if (u === this.username && p.join(':') === this.password) return 'basic';
    }
    return undefined;
  }

  // ------------------------------------------------------------------ resources

  private machineFor(id: string | undefined): Machine | undefined {
    return id ? this.machinesById.get(id) : undefined;
  }

  private route(req: IncomingMessage, res: ServerResponse, path: string, query: URLSearchParams, method: string, body: Record<string, unknown> | undefined, release: () => void): Reply | undefined {
    const p = path.replace(/\/+$/, '') || '/';
    if (p === '/redfish') return { status: 200, body: { v1: '/redfish/v1/' } };
    if (p === '/redfish/v1' && method === 'GET') return select(this.serviceRoot(), query);
    // Without a SessionService (stock sushy-tools) there is nothing to log into: 404, as it answers.
    const sessions = this.profile.session_service;
    if (!sessions && (p === '/redfish/v1/SessionService' || p.startsWith('/redfish/v1/SessionService/'))) return redfishError(404, 'Base.1.8.ResourceMissingAtURI', `The resource at the URI ${p} was not found.`);
    if (p === '/redfish/v1/SessionService/Sessions' && method === 'POST') return login(this, body);
    if (!p.startsWith('/redfish/v1/')) return redfishError(404, 'Base.1.8.ResourceMissingAtURI', `The resource at the URI ${p} was not found.`);
    const who = this.authenticate(req);
    if (!who) return redfishError(401, 'Base.1.8.NoValidSession', 'There is no valid session established with the implementation.');
    const seg = p.slice('/redfish/v1/'.length).split('/');
    const [top, id, sub, sub2] = seg;
    switch (top) {
      case 'SessionService':
        return sessionService(this, seg, method, query);
      case 'Systems':
        if (!id) return collection('/redfish/v1/Systems', '#ComputerSystemCollection.ComputerSystemCollection', 'Computer System Collection', this.machines.map((m) => m.id));
        return systems(this, this.machineFor(id), sub, sub2, seg, method, body, query);
      case 'Chassis':
        if (!id) return collection('/redfish/v1/Chassis', '#ChassisCollection.ChassisCollection', 'Chassis Collection', this.machines.map((m) => m.id));
        return chassis(this, this.machineFor(id), sub, method, query);
      case 'Managers':
        if (!id) return collection('/redfish/v1/Managers', '#ManagerCollection.ManagerCollection', 'Manager Collection', this.machines.map((m) => m.id));
        return manager(this, this.machineFor(id), method, query);
      case 'UpdateService':
        return updateService(this, seg, method, body, query);
      case 'TaskService':
        return taskService(this, seg, method, query);
      case 'EventService':
        if (id === 'SSE' && method === 'GET') {
          this.openSse(req, res);
          release();
          return undefined;
        }
        if (!id && method === 'GET') {
          return select(
            {
              ...ODATA('/redfish/v1/EventService', '#EventService.v1_8_0.EventService'),
              Id: 'EventService',
              Name: 'Event Service',
              ServiceEnabled: true,
              ServerSentEventUri: '/redfish/v1/EventService/SSE',
              EventTypesForSubscription: ['Other'],
              Status: { State: 'Enabled', Health: 'OK' },
            },
            query,
          );
        }
        break;
    }
    return redfishError(404, 'Base.1.8.ResourceMissingAtURI', `The resource at the URI ${p} was not found.`);
  }



  private serviceRoot(): Record<string, unknown> {
    const m = this.machines[0]!;
    return {
      ...ODATA('/redfish/v1/', '#ServiceRoot.v1_15_0.ServiceRoot'),
      Id: 'RootService',
      Name: 'Root Service',
      RedfishVersion: '1.15.0',
      UUID: m.uuid,
      Product: 'ironfleet simulated BMC',
      Vendor: 'ironfleet',
      ProtocolFeaturesSupported: { SelectQuery: true, ExpandQuery: { ExpandAll: false } },
      Systems: { '@odata.id': '/redfish/v1/Systems' },
      Chassis: { '@odata.id': '/redfish/v1/Chassis' },
      Managers: { '@odata.id': '/redfish/v1/Managers' },
      ...(this.profile.session_service ? { SessionService: { '@odata.id': '/redfish/v1/SessionService' } } : {}),
      UpdateService: { '@odata.id': '/redfish/v1/UpdateService' },
      TaskService: { '@odata.id': '/redfish/v1/TaskService' },
      EventService: { '@odata.id': '/redfish/v1/EventService' },
      ...(this.profile.session_service ? { Links: { Sessions: { '@odata.id': '/redfish/v1/SessionService/Sessions' } } } : {}),
    };
  }

  private openSse(req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive' });
    this.counters.served_2xx++;
    const last = Number(req.headers['last-event-id']);
    if (Number.isFinite(last)) {
      for (const e of this.events) if (e.id > last) res.write(`id: ${e.id}\ndata: ${e.data}\n\n`);
    } else {
      res.write(': connected\n\n');
    }
    this.sse.add(res);
    this.counters.sse_clients = this.sse.size;
    res.on('close', () => {
      this.sse.delete(res);
      this.counters.sse_clients = this.sse.size;
    });
  }

  /** Admin: set a machine's health now. */
  setHealth(h: Health, machine = 0): void {
    this.machines[machine]?.setHealth(h);
  }
}

const INVALID_JSON = Symbol('invalid json');

function readJson(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= 1024 * 1024) chunks.push(c);
    });
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      if (!text.trim()) return resolve(undefined);
      try {
        resolve(JSON.parse(text));
      } catch {
        resolve(INVALID_JSON);
      }
    });
    req.on('error', () => resolve(INVALID_JSON));
  });
}
