/**
 * What a BMC's answer to a session login means, read without side effects: a session (token and
 * URI), "this BMC has no SessionService" (use Basic auth), or an error — with how long the client
 * must keep away from the login (a full session table or rejected credentials are not fixed by
 * trying again at once: no login storm, no account lockout).
 */
import { RedfishError, type RedfishErrorCode } from './errors.js';
import type { RedfishTarget } from './driver-info.js';
import { retryAfterMs } from './transport.js';

export type LoginAnswer =
  | { kind: 'session'; token: string; uri: string }
  | { kind: 'no-session-service' }
  | { kind: 'error'; error: RedfishError; blockMs?: number };

export function readLoginAnswer(status: number, headers: Record<string, string | string[] | undefined>, text: string, t: RedfishTarget, sessionWorked: boolean): LoginAnswer {
  if ((status === 404 || status === 405 || status === 501) && t.authType === 'session') {
    return { kind: 'error', error: new RedfishError('RF_AUTH', `BMC has no SessionService (HTTP ${status}) and redfish_auth_type is session`, status, t.origin) };
  }
  // A BMC whose sessions once worked does not lose its SessionService: that 404 is an error.
  if ((status === 404 || status === 405 || status === 501) && !sessionWorked) return { kind: 'no-session-service' };
  if (status === 503 && /SessionLimitExceeded|maximum number of user sessions/i.test(text)) {
    return { kind: 'error', error: new RedfishError('RF_SESSION_CAP', `BMC session limit reached: ${text.slice(0, 200)}`, 503, t.origin), blockMs: retryAfterMs(headers['retry-after'], 30_000) };
  }
  if (status === 401 || status === 403) {
    return { kind: 'error', error: new RedfishError('RF_AUTH', `BMC rejected the credentials of ${t.username} (HTTP ${status})`, status, t.origin), blockMs: 60_000 };
  }
  const token = headers['x-auth-token'];
  if (status >= 300 || typeof token !== 'string') {
    const code: RedfishErrorCode = status === 503 ? 'RF_BUSY' : status >= 500 ? 'RF_HTTP' : 'RF_PROTOCOL';
    const after = headers['retry-after'] === undefined ? undefined : retryAfterMs(headers['retry-after'], 1000);
    return { kind: 'error', error: new RedfishError(code, `session login failed: HTTP ${status}${typeof token !== 'string' ? ' without X-Auth-Token' : ''}`, status, t.origin, after) };
  }
  let uri = typeof headers.location === 'string' ? headers.location : '';
  if (!uri) {
    try {
      uri = String((JSON.parse(text) as Record<string, unknown>)['@odata.id'] ?? '');
    } catch {
      /* no body */
    }
  }
  if (/^https?:\/\//.test(uri)) uri = new URL(uri).pathname;
  return { kind: 'session', token, uri };
}
