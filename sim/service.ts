/**
 * One simulated Redfish service (one BMC): sessions, auth, the resource tree, tasks, SSE events,
 * and the BMC realism — latency, a concurrency limit, session caps and expiry, faults — with
 * counters for every outcome. In per-address mode it manages one Machine; in single-address mode
 * (sushy-tools style) one service manages many.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { between, rngFor, type Rng } from './rng.js';
import type { BmcTraits, Profile } from './profiles.js';
import { BOOT_TARGETS, Machine, RESET_TYPES, type Health, type ResetType } from './machine.js';

export interface BmcCounters {
  requests_get: number;
  requests_login: number;
  requests_action: number;
  sessions_created: number;
  sessions_deleted: number;
  sessions_expired: number;
  sessions_refused_cap: number;
  sessions_live: number;
  inflight: number;
  peak_inflight: number;
  queued_peak: number;
  served_2xx: number;
  served_304: number;
  served_401: number;
  served_404: number;
  served_4xx_other: number;
  served_503: number;
  served_5xx_storm: number;
  black_holed: number;
  refused_down: number;
  resets: number;
  tasks_created: number;
  sse_clients: number;
}

export function emptyCounters(): BmcCounters {
  return {
    requests_get: 0, requests_login: 0, requests_action: 0, sessions_created: 0, sessions_deleted: 0, sessions_expired: 0,
    sessions_refused_cap: 0, sessions_live: 0, inflight: 0, peak_inflight: 0, queued_peak: 0, served_2xx: 0, served_304: 0,
    served_401: 0, served_404: 0, served_4xx_other: 0, served_503: 0, served_5xx_storm: 0, black_holed: 0, refused_down: 0,
    resets: 0, tasks_created: 0, sse_clients: 0,
  };
}

interface Session {
  id: string;
  token: string;
  user: string;
  created: number;
  lastUsed: number;
}

interface Task {
  id: string;
  state: 'New' | 'Running' | 'Completed' | 'Exception';
  percent: number;
  start: number;
  end: number;
  image: string;
  message: string;
  machineIndex: number;
}

/** Runtime faults injected through the admin API (on top of the profile's standing faults). */
export interface Faults {
  blackHole: boolean;
  down: boolean;
  stormRate: number;
  stormUntil: number;
  slowFactor: number;
}

type Reply = { status: number; body?: unknown; headers?: Record<string, string> };

const ODATA = (path: string, type: string) => ({ '@odata.id': path, '@odata.type': type });

function redfishError(status: number, messageId: string, message: string): Reply {
  return {
    status,
    body: { error: { code: `Base.1.8.GeneralError`, message, '@Message.ExtendedInfo': [{ '@odata.type': '#Message.v1_1_1.Message', MessageId: messageId, Message: message, Severity: 'Warning', Resolution: 'See the message.' }] } },
  };
}

function versionFromImage(uri: string, current: string): string {
  const m = uri.match(/(\d+\.\d+\.\d+(?:\.\d+)?)/);
  if (m) return m[1]!;
  const parts = current.split('.').map(Number);
  parts[parts.length - 1]! += 1;
  return parts.join('.');
}

export class BmcService {
  readonly counters = emptyCounters();
  readonly faults: Faults = { blackHole: false, down: false, stormRate: 0, stormUntil: 0, slowFactor: 1 };
  private readonly sessions = new Map<string, Session>(); // by token
  private readonly tasks = new Map<string, Task>();
  private nextTask = 1;
  private readonly events: Array<{ id: number; data: string }> = [];
  private nextEvent = 1;
  private readonly sse = new Set<ServerResponse>();
  private readonly queue: Array<() => void> = [];
  private readonly rng: Rng;
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
      if (body === INVALID_JSON) {
        this.send(res, redfishError(400, 'Base.1.8.MalformedJSON', 'The request body submitted was malformed JSON.'));
        return;
      }
      const reply = this.route(req, res, path, query, method, body as Record<string, unknown> | undefined, release);
      if (reply) this.send(res, reply, req);
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
    if (p === '/redfish/v1' && method === 'GET') return this.select(this.serviceRoot(), query);
    if (p === '/redfish/v1/SessionService/Sessions' && method === 'POST') return this.login(body);
    if (!p.startsWith('/redfish/v1/')) return redfishError(404, 'Base.1.8.ResourceMissingAtURI', `The resource at the URI ${p} was not found.`);
    const who = this.authenticate(req);
    if (!who) return redfishError(401, 'Base.1.8.NoValidSession', 'There is no valid session established with the implementation.');
    const seg = p.slice('/redfish/v1/'.length).split('/');
    const [top, id, sub, sub2] = seg;
    switch (top) {
      case 'SessionService':
        return this.sessionService(seg, method, query);
      case 'Systems':
        if (!id) return this.collection('/redfish/v1/Systems', '#ComputerSystemCollection.ComputerSystemCollection', 'Computer System Collection', this.machines.map((m) => m.id));
        return this.systems(this.machineFor(id), sub, sub2, seg, method, body, query);
      case 'Chassis':
        if (!id) return this.collection('/redfish/v1/Chassis', '#ChassisCollection.ChassisCollection', 'Chassis Collection', this.machines.map((m) => m.id));
        return this.chassis(this.machineFor(id), sub, method, query);
      case 'Managers':
        if (!id) return this.collection('/redfish/v1/Managers', '#ManagerCollection.ManagerCollection', 'Manager Collection', this.machines.map((m) => m.id));
        return this.manager(this.machineFor(id), method, query);
      case 'UpdateService':
        return this.updateService(seg, method, body, query);
      case 'TaskService':
        return this.taskService(seg, method, query);
      case 'EventService':
        if (id === 'SSE' && method === 'GET') {
          this.openSse(req, res);
          release();
          return undefined;
        }
        if (!id && method === 'GET') {
          return this.select(
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

  private select(doc: Record<string, unknown>, query: URLSearchParams): Reply {
    const sel = query.get('$select');
    if (!sel) return { status: 200, body: doc };
    const keep = new Set(sel.split(',').map((s) => s.trim().split('/')[0]!));
    return { status: 200, body: Object.fromEntries(Object.entries(doc).filter(([k]) => k.startsWith('@odata') || keep.has(k))) };
  }

  private collection(path: string, type: string, name: string, ids: string[]): Reply {
    return { status: 200, body: { ...ODATA(path, type), Name: name, 'Members@odata.count': ids.length, Members: ids.map((i) => ({ '@odata.id': `${path}/${i}` })) } };
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
      SessionService: { '@odata.id': '/redfish/v1/SessionService' },
      UpdateService: { '@odata.id': '/redfish/v1/UpdateService' },
      TaskService: { '@odata.id': '/redfish/v1/TaskService' },
      EventService: { '@odata.id': '/redfish/v1/EventService' },
      Links: { Sessions: { '@odata.id': '/redfish/v1/SessionService/Sessions' } },
    };
  }

  private login(body: Record<string, unknown> | undefined): Reply {
    const user = body?.UserName;
    const pass = body?.Password;
    if (typeof user !== 'string' || typeof pass !== 'string') return redfishError(400, 'Base.1.8.PropertyMissing', 'The properties UserName and Password are required.');
    if (user !== this.username || pass !== this.password) return redfishError(401, 'Base.1.8.NoValidSession', 'Invalid username or password.');
    if (this.sessions.size >= this.traits.maxSessions) {
      this.counters.sessions_refused_cap++;
      return {
        ...redfishError(503, 'Base.1.8.SessionLimitExceeded', 'RAC0218: The maximum number of user sessions is reached.'),
        headers: { 'Retry-After': '30' },
      };
    }
    const id = randomBytes(8).toString('hex');
    const token = randomBytes(24).toString('base64url');
    const now = Date.now();
    this.sessions.set(token, { id, token, user, created: now, lastUsed: now });
    this.counters.sessions_created++;
    this.counters.sessions_live = this.sessions.size;
    const loc = `/redfish/v1/SessionService/Sessions/${id}`;
    return { status: 201, headers: { 'X-Auth-Token': token, Location: loc }, body: { ...ODATA(loc, '#Session.v1_6_0.Session'), Id: id, Name: 'User Session', UserName: user } };
  }

  private sessionService(seg: string[], method: string, query: URLSearchParams): Reply {
    const [, sub, sid] = seg;
    if (!sub && method === 'GET') {
      return this.select(
        {
          ...ODATA('/redfish/v1/SessionService', '#SessionService.v1_1_8.SessionService'),
          Id: 'SessionService',
          Name: 'Session Service',
          ServiceEnabled: true,
          SessionTimeout: this.traits.sessionTimeoutS,
          Sessions: { '@odata.id': '/redfish/v1/SessionService/Sessions' },
        },
        query,
      );
    }
    if (sub === 'Sessions' && !sid && method === 'GET') {
      return this.collection('/redfish/v1/SessionService/Sessions', '#SessionCollection.SessionCollection', 'Session Collection', [...this.sessions.values()].map((s) => s.id));
    }
    if (sub === 'Sessions' && sid) {
      const s = [...this.sessions.values()].find((x) => x.id === sid);
      if (!s) return redfishError(404, 'Base.1.8.ResourceMissingAtURI', `Session ${sid} not found.`);
      if (method === 'DELETE') {
        this.sessions.delete(s.token);
        this.counters.sessions_deleted++;
        this.counters.sessions_live = this.sessions.size;
        return { status: 204 };
      }
      if (method === 'GET') return { status: 200, body: { ...ODATA(`/redfish/v1/SessionService/Sessions/${sid}`, '#Session.v1_6_0.Session'), Id: sid, Name: 'User Session', UserName: s.user } };
    }
    return redfishError(405, 'Base.1.8.OperationNotAllowed', `${method} is not allowed here.`);
  }

  private systems(m: Machine | undefined, sub: string | undefined, sub2: string | undefined, seg: string[], method: string, body: Record<string, unknown> | undefined, query: URLSearchParams): Reply {
    if (!m) return redfishError(404, 'Base.1.8.ResourceMissingAtURI', `System ${seg[1]} not found.`);
    const base = `/redfish/v1/Systems/${m.id}`;
    if (!sub) {
      if (method === 'PATCH') return this.patchSystem(m, body);
      if (method !== 'GET') return redfishError(405, 'Base.1.8.OperationNotAllowed', `${method} is not allowed on a system.`);
      return this.select(
        {
          ...ODATA(base, '#ComputerSystem.v1_20_0.ComputerSystem'),
          Id: m.id,
          Name: `System ${m.index}`,
          UUID: m.uuid,
          Manufacturer: 'ironfleet-sim',
          Model: 'PowerEdge R650 (simulated)',
          SerialNumber: m.serial,
          SystemType: 'Physical',
          PowerState: m.redfishPower,
          Status: { State: 'Enabled', Health: m.health, HealthRollup: m.health },
          BiosVersion: m.biosVersion,
          Boot: {
            BootSourceOverrideEnabled: m.boot.enabled,
            BootSourceOverrideTarget: m.boot.target,
            BootSourceOverrideMode: m.boot.mode,
            'BootSourceOverrideTarget@Redfish.AllowableValues': [...BOOT_TARGETS],
          },
          ProcessorSummary: { Count: 2, LogicalProcessorCount: 64, Model: 'Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz', Status: { State: 'Enabled', Health: 'OK' } },
          MemorySummary: { TotalSystemMemoryGiB: 256, Status: { State: 'Enabled', Health: 'OK' } },
          EthernetInterfaces: { '@odata.id': `${base}/EthernetInterfaces` },
          Links: { Chassis: [{ '@odata.id': `/redfish/v1/Chassis/${m.id}` }], ManagedBy: [{ '@odata.id': `/redfish/v1/Managers/${m.id}` }] },
          Actions: {
            '#ComputerSystem.Reset': { target: `${base}/Actions/ComputerSystem.Reset`, 'ResetType@Redfish.AllowableValues': [...RESET_TYPES] },
          },
        },
        query,
      );
    }
    if (sub === 'Actions' && sub2 === 'ComputerSystem.Reset') {
      if (method !== 'POST') return redfishError(405, 'Base.1.8.OperationNotAllowed', 'Use POST.');
      const t = body?.ResetType;
      if (typeof t !== 'string' || !(RESET_TYPES as readonly string[]).includes(t)) {
        return redfishError(400, 'Base.1.8.ActionParameterNotSupported', `The parameter ResetType with value ${JSON.stringify(t)} is not supported; allowed: ${RESET_TYPES.join(', ')}.`);
      }
      const refused = m.reset(t as ResetType);
      this.counters.resets++;
      if (refused) return redfishError(409, 'Base.1.8.ResourceInUse', refused);
      return { status: 204 };
    }
    if (sub === 'EthernetInterfaces') {
      const nics = m.macs.map((_, i) => `NIC.Integrated.1-${i + 1}`);
      if (!sub2) return this.collection(`${base}/EthernetInterfaces`, '#EthernetInterfaceCollection.EthernetInterfaceCollection', 'Ethernet Interfaces', nics);
      const i = nics.indexOf(sub2);
      if (i < 0) return redfishError(404, 'Base.1.8.ResourceMissingAtURI', `Interface ${sub2} not found.`);
      return this.select(
        {
          ...ODATA(`${base}/EthernetInterfaces/${sub2}`, '#EthernetInterface.v1_9_0.EthernetInterface'),
          Id: sub2,
          Name: sub2,
          MACAddress: m.macs[i]!.toUpperCase(),
          PermanentMACAddress: m.macs[i]!.toUpperCase(),
          SpeedMbps: 25000,
          LinkStatus: i === 0 ? 'LinkUp' : 'LinkDown',
          Status: { State: 'Enabled', Health: 'OK' },
        },
        query,
      );
    }
    return redfishError(404, 'Base.1.8.ResourceMissingAtURI', `The resource ${seg.join('/')} was not found.`);
  }

  private patchSystem(m: Machine, body: Record<string, unknown> | undefined): Reply {
    const boot = body?.Boot as Record<string, unknown> | undefined;
    if (!boot || typeof boot !== 'object') return redfishError(400, 'Base.1.8.PropertyNotWritable', 'Only Boot properties can be changed.');
    const target = boot.BootSourceOverrideTarget;
    const enabled = boot.BootSourceOverrideEnabled;
    const mode = boot.BootSourceOverrideMode;
    if (target !== undefined && !(BOOT_TARGETS as readonly string[]).includes(String(target))) {
      return redfishError(400, 'Base.1.8.PropertyValueNotInList', `BootSourceOverrideTarget ${JSON.stringify(target)} is not one of ${BOOT_TARGETS.join(', ')}.`);
    }
    if (enabled !== undefined && !['Disabled', 'Once', 'Continuous'].includes(String(enabled))) {
      return redfishError(400, 'Base.1.8.PropertyValueNotInList', `BootSourceOverrideEnabled ${JSON.stringify(enabled)} is not one of Disabled, Once, Continuous.`);
    }
    if (mode !== undefined && !['UEFI', 'Legacy'].includes(String(mode))) {
      return redfishError(400, 'Base.1.8.PropertyValueNotInList', `BootSourceOverrideMode ${JSON.stringify(mode)} is not one of UEFI, Legacy.`);
    }
    m.setBoot({ target: target as string | undefined, enabled: enabled as string | undefined, mode: mode as string | undefined });
    return { status: 204 };
  }

  private chassis(m: Machine | undefined, sub: string | undefined, method: string, query: URLSearchParams): Reply {
    if (!m) return redfishError(404, 'Base.1.8.ResourceMissingAtURI', 'Chassis not found.');
    if (method !== 'GET') return redfishError(405, 'Base.1.8.OperationNotAllowed', `${method} is not allowed here.`);
    const base = `/redfish/v1/Chassis/${m.id}`;
    const s = m.sensors();
    if (!sub) {
      return this.select(
        {
          ...ODATA(base, '#Chassis.v1_23_0.Chassis'),
          Id: m.id,
          Name: `Chassis ${m.index}`,
          ChassisType: 'RackMount',
          PowerState: m.power,
          Status: { State: 'Enabled', Health: m.health, HealthRollup: m.health },
          Thermal: { '@odata.id': `${base}/Thermal` },
          Power: { '@odata.id': `${base}/Power` },
          Links: { ComputerSystems: [{ '@odata.id': `/redfish/v1/Systems/${m.id}` }], ManagedBy: [{ '@odata.id': `/redfish/v1/Managers/${m.id}` }] },
        },
        query,
      );
    }
    if (sub === 'Thermal') {
      return this.select(
        {
          ...ODATA(`${base}/Thermal`, '#Thermal.v1_7_1.Thermal'),
          Id: 'Thermal',
          Name: 'Thermal',
          Temperatures: s.temps.map(([name, reading, crit], i) => ({
            '@odata.id': `${base}/Thermal#/Temperatures/${i}`,
            MemberId: String(i),
            Name: name,
            ReadingCelsius: reading,
            UpperThresholdCritical: crit,
            PhysicalContext: name.startsWith('CPU') ? 'CPU' : name.includes('Inlet') ? 'Intake' : 'Exhaust',
            Status: { State: 'Enabled', Health: reading >= crit ? 'Critical' : 'OK' },
          })),
          Fans: s.fans.map(([name, rpm], i) => ({
            '@odata.id': `${base}/Thermal#/Fans/${i}`,
            MemberId: String(i),
            Name: name,
            Reading: rpm,
            ReadingUnits: 'RPM',
            Status: { State: m.power === 'On' ? 'Enabled' : 'StandbyOffline', Health: 'OK' },
          })),
        },
        query,
      );
    }
    if (sub === 'Power') {
      return this.select(
        {
          ...ODATA(`${base}/Power`, '#Power.v1_7_1.Power'),
          Id: 'Power',
          Name: 'Power',
          PowerControl: [{ '@odata.id': `${base}/Power#/PowerControl/0`, MemberId: '0', Name: 'System Power Control', PowerConsumedWatts: s.watts, PowerCapacityWatts: 2200, PowerMetrics: { AverageConsumedWatts: s.watts } }],
          PowerSupplies: s.psus.map(([name, watts, cap], i) => ({
            '@odata.id': `${base}/Power#/PowerSupplies/${i}`,
            MemberId: String(i),
            Name: name,
            PowerInputWatts: watts + 8,
            PowerOutputWatts: watts,
            PowerCapacityWatts: cap,
            LineInputVoltage: 230,
            Status: { State: 'Enabled', Health: 'OK' },
          })),
          Voltages: [{ '@odata.id': `${base}/Power#/Voltages/0`, MemberId: '0', Name: 'PS1 Voltage 1', ReadingVolts: 230, Status: { State: 'Enabled', Health: 'OK' } }],
        },
        query,
      );
    }
    return redfishError(404, 'Base.1.8.ResourceMissingAtURI', `Chassis resource ${sub} not found.`);
  }

  private manager(m: Machine | undefined, method: string, query: URLSearchParams): Reply {
    if (!m) return redfishError(404, 'Base.1.8.ResourceMissingAtURI', 'Manager not found.');
    if (method !== 'GET') return redfishError(405, 'Base.1.8.OperationNotAllowed', `${method} is not allowed here.`);
    return this.select(
      {
        ...ODATA(`/redfish/v1/Managers/${m.id}`, '#Manager.v1_19_0.Manager'),
        Id: m.id,
        Name: 'Manager',
        ManagerType: 'BMC',
        FirmwareVersion: m.bmcVersion,
        Status: { State: 'Enabled', Health: 'OK' },
        Links: { ManagerForServers: [{ '@odata.id': `/redfish/v1/Systems/${m.id}` }] },
      },
      query,
    );
  }

  private updateService(seg: string[], method: string, body: Record<string, unknown> | undefined, query: URLSearchParams): Reply {
    const [, sub, item] = seg;
    const m = this.machines[0]!;
    if (!sub && method === 'GET') {
      return this.select(
        {
          ...ODATA('/redfish/v1/UpdateService', '#UpdateService.v1_11_0.UpdateService'),
          Id: 'UpdateService',
          Name: 'Update Service',
          ServiceEnabled: true,
          FirmwareInventory: { '@odata.id': '/redfish/v1/UpdateService/FirmwareInventory' },
          Actions: { '#UpdateService.SimpleUpdate': { target: '/redfish/v1/UpdateService/Actions/UpdateService.SimpleUpdate', 'TransferProtocol@Redfish.AllowableValues': ['HTTP', 'HTTPS'] } },
        },
        query,
      );
    }
    if (sub === 'FirmwareInventory' && method === 'GET') {
      if (!item) return this.collection('/redfish/v1/UpdateService/FirmwareInventory', '#SoftwareInventoryCollection.SoftwareInventoryCollection', 'Firmware Inventory', ['BIOS', 'BMC']);
      if (item !== 'BIOS' && item !== 'BMC') return redfishError(404, 'Base.1.8.ResourceMissingAtURI', `Firmware ${item} not found.`);
      return this.select(
        { ...ODATA(`/redfish/v1/UpdateService/FirmwareInventory/${item}`, '#SoftwareInventory.v1_10_0.SoftwareInventory'), Id: item, Name: item, Version: item === 'BIOS' ? m.biosVersion : m.bmcVersion, Updateable: true, Status: { State: 'Enabled', Health: 'OK' } },
        query,
      );
    }
    if (sub === 'Actions' && item === 'UpdateService.SimpleUpdate' && method === 'POST') {
      const uri = body?.ImageURI;
      if (typeof uri !== 'string' || !/^https?:\/\//.test(uri)) return redfishError(400, 'Base.1.8.ActionParameterMissing', 'ImageURI (http or https URL) is required.');
      const targets = (body?.Targets as string[] | undefined) ?? [];
      const component = targets.some((t) => /Managers/.test(t)) ? 'BMC' : 'BIOS';
      const id = String(this.nextTask++);
      const dur = between(this.rng, this.profile.firmware_update_ms);
      const now = Date.now();
      const task: Task = { id, state: 'New', percent: 0, start: now, end: now + dur, image: uri, message: `Update of ${component} from ${uri}`, machineIndex: 0 };
      this.tasks.set(id, task);
      this.counters.tasks_created++;
      const done = setTimeout(() => {
        task.state = 'Completed';
        task.percent = 100;
        m.setFirmware(component, versionFromImage(uri, component === 'BIOS' ? m.biosVersion : m.bmcVersion));
      }, dur);
      done.unref();
      const loc = `/redfish/v1/TaskService/Tasks/${id}`;
      return { status: 202, headers: { Location: loc }, body: this.taskDoc(task) };
    }
    return redfishError(405, 'Base.1.8.OperationNotAllowed', `${method} is not allowed here.`);
  }

  private taskDoc(t: Task): Record<string, unknown> {
    const now = Date.now();
    if (t.state !== 'Completed' && t.state !== 'Exception') {
      t.state = now > t.start + 500 ? 'Running' : 'New';
      t.percent = Math.min(99, Math.floor(((now - t.start) / (t.end - t.start)) * 100));
    }
    return {
      ...ODATA(`/redfish/v1/TaskService/Tasks/${t.id}`, '#Task.v1_7_0.Task'),
      Id: t.id,
      Name: 'Firmware update',
      TaskState: t.state,
      TaskStatus: 'OK',
      PercentComplete: t.percent,
      StartTime: new Date(t.start).toISOString(),
      ...(t.state === 'Completed' ? { EndTime: new Date(t.end).toISOString() } : {}),
      Messages: [{ MessageId: 'TaskEvent.1.0.TaskProgressChanged', Message: t.message }],
    };
  }

  private taskService(seg: string[], method: string, query: URLSearchParams): Reply {
    const [, sub, id] = seg;
    if (method !== 'GET') return redfishError(405, 'Base.1.8.OperationNotAllowed', `${method} is not allowed here.`);
    if (!sub) {
      return this.select(
        { ...ODATA('/redfish/v1/TaskService', '#TaskService.v1_2_0.TaskService'), Id: 'TaskService', Name: 'Task Service', ServiceEnabled: true, Tasks: { '@odata.id': '/redfish/v1/TaskService/Tasks' } },
        query,
      );
    }
    if (sub === 'Tasks' && !id) return this.collection('/redfish/v1/TaskService/Tasks', '#TaskCollection.TaskCollection', 'Task Collection', [...this.tasks.keys()]);
    const t = id ? this.tasks.get(id) : undefined;
    if (!t) return redfishError(404, 'Base.1.8.ResourceMissingAtURI', `Task ${id} not found.`);
    return this.select(this.taskDoc(t), query);
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
