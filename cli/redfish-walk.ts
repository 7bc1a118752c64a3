/**
 * Walks a Redfish service's /redfish/v1/Systems for enrolment: every member's path, Id, Name, UUID
 * and the MACs of its EthernetInterfaces. Works against services with a SessionService (one
 * session for the walk, logged out at the end) and against those without one — stock sushy-tools
 * serves every system behind one address, Basic auth on every request, from one single-threaded
 * process — so the walk keeps few requests in flight and rides through 503s and resets.
 */
import { readFileSync } from 'node:fs';
import { Agent, request, type Dispatcher } from 'undici';
import { IronfleetError, errorMessage } from '../shared/errors.js';
import { forEachLimit } from '../shared/pool.js';

export interface WalkOptions {
  url: string;
  username: string;
  password: string;
  /** true (system CAs), false (no verification) or a CA bundle's path. */
  verifyCa: boolean | string;
  /** Requests in flight against the service. @default 4 */
  concurrency?: number;
  /** Called after each system is read. */
  progress?: (done: number, total: number) => void;
}

export interface WalkedSystem {
  /** The member's path, e.g. /redfish/v1/Systems/abc (Ironic's redfish_system_id). */
  path: string;
  id: string;
  name: string | null;
  uuid: string | null;
  macs: string[];
}

type Doc = Record<string, unknown>;
const ATTEMPTS = 5;

/** The service's origin; a URL with credentials in it is refused without echoing them. */
export function serviceOrigin(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new IronfleetError('IRF_INVALID_INPUT', '--redfish: not a URL (expected http(s)://host[:port])');
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new IronfleetError('IRF_INVALID_INPUT', '--redfish: only http and https are supported');
  if (u.username || u.password) throw new IronfleetError('IRF_INVALID_INPUT', '--redfish: put credentials in --username/--password, not in the URL');
  return u.origin;
}

export async function walkRedfishSystems(o: WalkOptions): Promise<WalkedSystem[]> {
  const origin = serviceOrigin(o.url);
  const dispatcher = new Agent({
    connections: o.concurrency ?? 4,
    connect: typeof o.verifyCa === 'string' ? { ca: readFileSync(o.verifyCa) } : { rejectUnauthorized: o.verifyCa },
  });
  let auth: Record<string, string> = {};
  let logout: string | undefined;
  const get = (p: string) => call(dispatcher, origin, 'GET', p, auth);
  try {
    const root = (await call(dispatcher, origin, 'GET', '/redfish/v1/', {})).doc;
    const sessionsPath = linkOf((root.Links as Doc | undefined)?.Sessions) ?? (root.SessionService ? '/redfish/v1/SessionService/Sessions' : undefined);
    if (sessionsPath) {
      const r = await call(dispatcher, origin, 'POST', sessionsPath, {}, { UserName: o.username, Password: o.password });
      const token = r.headers['x-auth-token'];
      if (typeof token !== 'string') throw new IronfleetError('IRF_REDFISH_SERVICE', `${origin}: login answered without X-Auth-Token`);
      auth = { 'x-auth-token': token };
      logout = typeof r.headers.location === 'string' ? new URL(r.headers.location, origin).pathname : undefined;
    } else {
      auth = { authorization: `Basic ${Buffer.from(`${o.username}:${o.password}`).toString('base64')}` };
    }
    const systemsPath = linkOf(root.Systems) ?? '/redfish/v1/Systems';
    const members: string[] = [];
    for (let next: string | undefined = systemsPath; next; ) {
      const page: Doc = (await get(next)).doc;
      for (const m of (page.Members as Doc[] | undefined) ?? []) {
        const p = linkOf(m);
        if (p) members.push(p);
      }
      next = typeof page['Members@odata.nextLink'] === 'string' ? page['Members@odata.nextLink'] : undefined;
    }
    const out: WalkedSystem[] = new Array(members.length);
    let done = 0;
    await forEachLimit(members, o.concurrency ?? 4, async (p, i) => {
      const sys = (await get(p)).doc;
      const macs: string[] = [];
      const nics = linkOf(sys.EthernetInterfaces);
      if (nics) {
        for (const m of ((await get(nics)).doc.Members as Doc[] | undefined) ?? []) {
          const nicPath = linkOf(m);
          const mac = nicPath ? (await get(nicPath)).doc.MACAddress : undefined;
          if (typeof mac === 'string' && /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(mac)) macs.push(mac.toLowerCase());
        }
      }
      out[i] = { path: p.replace(/\/+$/, ''), id: typeof sys.Id === 'string' ? sys.Id : p.split('/').pop()!, name: typeof sys.Name === 'string' ? sys.Name : null, uuid: typeof sys.UUID === 'string' ? sys.UUID : null, macs };
      o.progress?.(++done, members.length);
    });
    return out;
  } finally {
    if (logout) await call(dispatcher, origin, 'DELETE', logout, auth).catch(() => {});
    await dispatcher.close();
  }
}

function linkOf(v: unknown): string | undefined {
  const id = (v as Doc | undefined)?.['@odata.id'];
  return typeof id === 'string' ? id : undefined;
}

/**
 * One request, tried again on 503 (honouring Retry-After), 5xx and lost connections — a busy
 * single-threaded service answers so — never on 401/403 (a wrong password must not lock the account).
 */
async function call(d: Dispatcher, origin: string, method: 'GET' | 'POST' | 'DELETE', p: string, headers: Record<string, string>, body?: unknown): Promise<{ doc: Doc; headers: Record<string, string | string[] | undefined> }> {
  let last = '';
  for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
    let wait = 250 * 2 ** attempt;
    try {
      const res = await request(`${origin}${p}`, {
        dispatcher: d,
        method,
        headers: { accept: 'application/json', ...headers, ...(body ? { 'content-type': 'application/json' } : {}) },
        body: body ? JSON.stringify(body) : undefined,
        headersTimeout: 60_000,
        bodyTimeout: 60_000,
      });
      const text = await res.body.text();
      if (res.statusCode === 401 || res.statusCode === 403) throw new IronfleetError('IRF_REDFISH_SERVICE', `${origin}: ${method} ${p} refused the credentials (HTTP ${res.statusCode})`);
      if (res.statusCode >= 500) {
        last = `HTTP ${res.statusCode}`;
        const ra = Number(res.headers['retry-after']);
        if (Number.isFinite(ra) && ra >= 0) wait = Math.min(ra * 1000, 30_000);
      } else if (res.statusCode >= 400) {
        throw new IronfleetError('IRF_REDFISH_SERVICE', `${origin}: ${method} ${p} answered HTTP ${res.statusCode}`);
      } else {
        let doc: Doc = {};
        if (text) {
          try {
            doc = JSON.parse(text) as Doc;
          } catch {
            throw new IronfleetError('IRF_REDFISH_SERVICE', `${origin}: ${method} ${p} answered a body that is not JSON`);
          }
        }
        return { doc, headers: res.headers };
      }
    } catch (err) {
      if (err instanceof IronfleetError) throw err;
      last = errorMessage(err);
    }
    if (attempt < ATTEMPTS) await new Promise((r) => setTimeout(r, wait));
  }
  throw new IronfleetError('IRF_REDFISH_SERVICE', `${origin}: ${method} ${p} failed ${ATTEMPTS} times (last: ${last})`);
}
