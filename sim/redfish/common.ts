/**
 * What the simulated Redfish resources share: the reply shape, @odata ids, Redfish error bodies,
 * $select, collections, the session and task records, and the view of the service (one BMC) the
 * resource modules work on. service.ts owns the request pipeline; sessions.ts, systems.ts,
 * chassis.ts and update.ts serve one part of the resource tree each.
 */
import type { Rng } from '../rng.js';
import type { BmcTraits, Profile } from '../profiles.js';
import type { Machine } from '../machine.js';

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
  /** Requests answered by a scripted fault (admin API `script`). */
  scripted_faults: number;
}

export function emptyCounters(): BmcCounters {
  return {
    requests_get: 0, requests_login: 0, requests_action: 0, sessions_created: 0, sessions_deleted: 0, sessions_expired: 0,
    sessions_refused_cap: 0, sessions_live: 0, inflight: 0, peak_inflight: 0, queued_peak: 0, served_2xx: 0, served_304: 0,
    served_401: 0, served_404: 0, served_4xx_other: 0, served_503: 0, served_5xx_storm: 0, black_holed: 0, refused_down: 0,
    resets: 0, tasks_created: 0, sse_clients: 0, scripted_faults: 0,
  };
}

export interface Session {
  id: string;
  token: string;
  user: string;
  created: number;
  lastUsed: number;
}

export interface Task {
  id: string;
  state: 'New' | 'Running' | 'Completed' | 'Exception';
  percent: number;
  start: number;
  end: number;
  image: string;
  message: string;
  machineIndex: number;
}

export type Reply = { status: number; body?: unknown; headers?: Record<string, string> };

export const ODATA = (path: string, type: string) => ({ '@odata.id': path, '@odata.type': type });

export function redfishError(status: number, messageId: string, message: string): Reply {
  return {
    status,
    body: { error: { code: `Base.1.8.GeneralError`, message, '@Message.ExtendedInfo': [{ '@odata.type': '#Message.v1_1_1.Message', MessageId: messageId, Message: message, Severity: 'Warning', Resolution: 'See the message.' }] } },
  };
}

export function versionFromImage(uri: string, current: string): string {
  const m = uri.match(/(\d+\.\d+\.\d+(?:\.\d+)?)/);
  if (m) return m[1]!;
  const parts = current.split('.').map(Number);
  parts[parts.length - 1]! += 1;
  return parts.join('.');
}

export function select(doc: Record<string, unknown>, query: URLSearchParams): Reply {
  const sel = query.get('$select');
  if (!sel) return { status: 200, body: doc };
  const keep = new Set(sel.split(',').map((s) => s.trim().split('/')[0]!));
  return { status: 200, body: Object.fromEntries(Object.entries(doc).filter(([k]) => k.startsWith('@odata') || keep.has(k))) };
}

export function collection(path: string, type: string, name: string, ids: string[]): Reply {
  return { status: 200, body: { ...ODATA(path, type), Name: name, 'Members@odata.count': ids.length, Members: ids.map((i) => ({ '@odata.id': `${path}/${i}` })) } };
}

/** The service (one BMC) as the resource modules see it. */
export interface ResourceContext {
  readonly counters: BmcCounters;
  readonly machines: Machine[];
  readonly profile: Profile;
  readonly traits: BmcTraits;
  readonly username: string;
  readonly password: string;
  /** Live sessions by token. */
  readonly sessions: Map<string, Session>;
  readonly tasks: Map<string, Task>;
  readonly rng: Rng;
  nextTaskId(): number;
}
