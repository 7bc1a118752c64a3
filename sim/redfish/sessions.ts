/** SessionService: login (session caps as a real BMC enforces them), list, show, logout. */
import { randomBytes } from 'node:crypto';
import { ODATA, collection, redfishError, select, type Reply, type ResourceContext } from './common.js';

export function login(ctx: ResourceContext, body: Record<string, unknown> | undefined): Reply {
  const user = body?.UserName;
  const pass = body?.Password;
  if (typeof user !== 'string' || typeof pass !== 'string') return redfishError(400, 'Base.1.8.PropertyMissing', 'The properties UserName and Password are required.');
  if (user !== ctx.username || pass !== ctx.password) return redfishError(401, 'Base.1.8.NoValidSession', 'Invalid username or password.');
  if (ctx.sessions.size >= ctx.traits.maxSessions) {
    ctx.counters.sessions_refused_cap++;
    return {
      ...redfishError(503, 'Base.1.8.SessionLimitExceeded', 'RAC0218: The maximum number of user sessions is reached.'),
      headers: { 'Retry-After': '30' },
    };
  }
  const id = randomBytes(8).toString('hex');
  const token = randomBytes(24).toString('base64url');
  const now = Date.now();
  ctx.sessions.set(token, { id, token, user, created: now, lastUsed: now });
  ctx.counters.sessions_created++;
  ctx.counters.sessions_live = ctx.sessions.size;
  const loc = `/redfish/v1/SessionService/Sessions/${id}`;
  return { status: 201, headers: { 'X-Auth-Token': token, Location: loc }, body: { ...ODATA(loc, '#Session.v1_6_0.Session'), Id: id, Name: 'User Session', UserName: user } };
}

export function sessionService(ctx: ResourceContext, seg: string[], method: string, query: URLSearchParams): Reply {
  const [, sub, sid] = seg;
  if (!sub && method === 'GET') {
    return select(
      {
        ...ODATA('/redfish/v1/SessionService', '#SessionService.v1_1_8.SessionService'),
        Id: 'SessionService',
        Name: 'Session Service',
        ServiceEnabled: true,
        SessionTimeout: ctx.traits.sessionTimeoutS,
        Sessions: { '@odata.id': '/redfish/v1/SessionService/Sessions' },
      },
      query,
    );
  }
  if (sub === 'Sessions' && !sid && method === 'GET') {
    return collection('/redfish/v1/SessionService/Sessions', '#SessionCollection.SessionCollection', 'Session Collection', [...ctx.sessions.values()].map((s) => s.id));
  }
  if (sub === 'Sessions' && sid) {
    const s = [...ctx.sessions.values()].find((x) => x.id === sid);
    if (!s) return redfishError(404, 'Base.1.8.ResourceMissingAtURI', `Session ${sid} not found.`);
    if (method === 'DELETE') {
      ctx.sessions.delete(s.token);
      ctx.counters.sessions_deleted++;
      ctx.counters.sessions_live = ctx.sessions.size;
      return { status: 204 };
    }
    if (method === 'GET') return { status: 200, body: { ...ODATA(`/redfish/v1/SessionService/Sessions/${sid}`, '#Session.v1_6_0.Session'), Id: sid, Name: 'User Session', UserName: s.user } };
  }
  return redfishError(405, 'Base.1.8.OperationNotAllowed', `${method} is not allowed here.`);
}
