/**
 * driver_info for the redfish hardware type (Ironic's field names), parsed once per node into a
 * target the client understands. Errors name the field.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { DriverError } from '../../shared/errors.js';

export const redfishDriverInfoSchema = z.looseObject({
  redfish_address: z.string().min(1),
  redfish_username: z.string().min(1),
  redfish_password: z.string().min(1),
  redfish_system_id: z.string().min(1).optional(),
  redfish_verify_ca: z.union([z.boolean(), z.string().min(1)]).optional(),
  redfish_auth_type: z.enum(['auto', 'session', 'basic']).optional(),
  /** ironfleet: TLS server name to verify instead of the host (for BMCs addressed by IP). */
  redfish_tls_server_name: z.string().min(1).optional(),
});

export const REDFISH_PROPERTIES: Record<string, string> = {
  redfish_address: 'BMC URL (https assumed without a scheme; a path sets the root prefix). Required.',
  redfish_username: 'BMC user. Required.',
  redfish_password: 'BMC password. Required.',
  redfish_system_id: 'System resource id (or path); optional when the BMC has exactly one system.',
  redfish_verify_ca: 'true / false, or a path to a CA bundle. Default true.',
  redfish_auth_type: 'auto (session, Basic fallback), session or basic. Default auto.',
  redfish_tls_server_name: 'Name to verify the BMC certificate against (when addressed by IP).',
};

export interface RedfishTarget {
  /** Shard and session-cache key: one session per (origin, username). */
  key: string;
  origin: string;
  rootPrefix: string;
  username: string;
  password: string;
  systemId: string | null;
  /** false = no verification; true = system CAs; string = PEM CA bundle. */
  verify: boolean | string;
  serverName: string | null;
  authType: 'auto' | 'session' | 'basic';
}

const caCache = new Map<string, string>();

export function parseRedfishDriverInfo(info: Record<string, unknown>, nodeUuid = ''): RedfishTarget {
  const r = redfishDriverInfoSchema.safeParse(info);
  if (!r.success) {
    const i = r.error.issues[0]!;
    const field = i.path.join('.') || 'driver_info';
    const msg = i.code === 'invalid_type' && i.input === undefined ? 'is required' : i.message;
    throw new DriverError(`driver_info.${field} ${msg} for node ${nodeUuid}`.trim(), { field: `driver_info.${field}` });
  }
  const d = r.data;
  const raw = /^[a-z]+:\/\//i.test(d.redfish_address) ? d.redfish_address : `https://${d.redfish_address}`;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new DriverError(`driver_info.redfish_address "${d.redfish_address}" is not a valid URL`, { field: 'driver_info.redfish_address' });
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new DriverError(`driver_info.redfish_address must be http(s), got ${url.protocol}`, { field: 'driver_info.redfish_address' });
  }
  let verify: boolean | string = true;
  if (typeof d.redfish_verify_ca === 'boolean') verify = d.redfish_verify_ca;
  else if (typeof d.redfish_verify_ca === 'string') {
    const v = d.redfish_verify_ca.toLowerCase();
    if (v === 'false' || v === 'no' || v === '0') verify = false;
    else if (v === 'true' || v === 'yes' || v === '1') verify = true;
    else {
      let pem = caCache.get(d.redfish_verify_ca);
      if (!pem) {
        try {
          pem = readFileSync(d.redfish_verify_ca, 'utf8');
        } catch (err) {
          throw new DriverError(`driver_info.redfish_verify_ca: cannot read ${d.redfish_verify_ca}: ${(err as Error).message}`, { field: 'driver_info.redfish_verify_ca' });
        }
        caCache.set(d.redfish_verify_ca, pem);
      }
      verify = pem;
    }
  }
  const path = url.pathname.replace(/\/+$/, '');
  return {
    key: `${url.origin}|${d.redfish_username}`,
    origin: url.origin,
    rootPrefix: path && path !== '/' ? path : '/redfish/v1',
    username: d.redfish_username,
    password: d.redfish_password,
    systemId: d.redfish_system_id ?? null,
    verify,
    serverName: d.redfish_tls_server_name ?? null,
    authType: d.redfish_auth_type ?? 'auto',
  };
}
