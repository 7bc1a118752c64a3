/**
 * `ironfleet node enroll`: nodes (and their ports) from a fleet manifest or from a Redfish
 * service's Systems. Idempotent either way: a system already enrolled — same BMC address and
 * system id — is not created again, and a port it lacks (an earlier run cut short) is added, so
 * re-running after new machines were racked adds only those.
 */
import type { ApiClient } from './api-client.js';
import { forEachLimit } from '../shared/pool.js';
import { serviceOrigin, walkRedfishSystems } from './redfish-walk.js';

export interface EnrollEntry {
  name: string | null;
  driverInfo: Record<string, unknown> & { redfish_address: string; redfish_system_id?: string };
  macs: string[];
}

export interface EnrollReport {
  systems: number;
  created: number;
  already_enrolled: number;
  ports_created: number;
  /** Names already taken by another node: those nodes were created without a name. */
  unnamed: number;
}

/** The identity of a system: its BMC address and the last segment of its system id. */
function keyOf(address: string, systemId: string | undefined): string {
  return `${address.replace(/\/+$/, '').toLowerCase()}|${(systemId ?? '').replace(/\/+$/, '').split('/').pop()}`;
}

/** Every row of a paginated listing (marker paging, the fields kept on every page). */
export async function listAll<T extends { uuid: string }>(api: ApiClient, collection: 'nodes' | 'ports', fields: string): Promise<T[]> {
  const out: T[] = [];
  for (let marker: string | undefined; ; ) {
    const page = await api.get<Record<string, T[]>>(`/v1/${collection}?limit=1000&fields=${fields}${marker ? `&marker=${marker}` : ''}`);
    const rows = page[collection] ?? [];
    out.push(...rows);
    if (rows.length < 1000) return out;
    marker = rows[rows.length - 1]!.uuid;
  }
}

/** A system's name as an Ironic node name: lowercase letters, digits, '-', '.', '_' and '~'. */
export function nodeName(raw: string | null): string | null {
  if (!raw) return null;
  const n = raw.toLowerCase().replace(/[^a-z0-9._~-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 255);
  return n || null;
}

export async function enrollEntries(api: ApiClient, driver: string, entries: EnrollEntry[], progress: (text: string) => void): Promise<EnrollReport> {
  const nodes = await listAll<{ uuid: string; name: string | null; driver_info: Record<string, unknown> }>(api, 'nodes', 'uuid,name,driver_info');
  const ports = await listAll<{ uuid: string; address: string; node_uuid: string }>(api, 'ports', 'uuid,address,node_uuid');
  const byKey = new Map(nodes.map((n) => [keyOf(String(n.driver_info.redfish_address ?? ''), n.driver_info.redfish_system_id as string | undefined), n.uuid]));
  const names = new Set(nodes.map((n) => n.name).filter(Boolean));
  const macs = new Set(ports.map((p) => p.address.toLowerCase()));
  const report: EnrollReport = { systems: entries.length, created: 0, already_enrolled: 0, ports_created: 0, unnamed: 0 };
  let done = 0;
  // A few requests in flight: the API is fast, and per-node order (node, then its ports) is kept.
  await forEachLimit(entries, 8, async (e) => {
    let uuid = byKey.get(keyOf(e.driverInfo.redfish_address, e.driverInfo.redfish_system_id));
    if (uuid) {
      report.already_enrolled++;
    } else {
      const name = e.name && !names.has(e.name) ? e.name : null;
      if (e.name && !name) report.unnamed++;
      if (name) names.add(name);
      const n = await api.post<{ uuid: string }>('/v1/nodes', { driver, ...(name ? { name } : {}), driver_info: e.driverInfo });
      uuid = n.uuid;
      report.created++;
    }
    for (const mac of e.macs.map((m) => m.toLowerCase())) {
      if (macs.has(mac)) continue;
      macs.add(mac);
      await api.post('/v1/ports', { address: mac, node_uuid: uuid });
      report.ports_created++;
    }
    progress(`enrolled ${++done}/${entries.length} (${report.created} new, ${report.already_enrolled} already enrolled)`);
  });
  return report;
}

/** The entries of a fleet manifest ({"bmcs": [...]}, as `ironfleet sim` writes it). */
export function manifestEntries(doc: { bmcs: Array<Record<string, unknown>>; ca_file?: string | null; tls_server_name?: string | null }): EnrollEntry[] {
  return doc.bmcs.map((b, i) => ({
    name: typeof b.name === 'string' ? b.name : `node-${i}`,
    driverInfo: {
      redfish_address: String(b.address),
      redfish_username: b.username,
      redfish_password: b.password,
      redfish_system_id: typeof b.system_id === 'string' ? b.system_id : undefined,
      // A simulator manifest names its CA and the server name its certificate carries.
      ...(doc.ca_file ? { redfish_verify_ca: doc.ca_file } : {}),
      ...(doc.tls_server_name ? { redfish_tls_server_name: doc.tls_server_name } : {}),
    },
    macs: (b.macs as string[] | undefined) ?? [],
  }));
}

export interface RedfishEnrollOptions {
  url: string;
  username: string;
  password: string;
  verifyCa: boolean | string;
  /**
   * Each node's BMC address; {url} is the walked service, {id} the system's Id, {index} its position.
   * @default '{url}' (every system behind the walked address, as sushy-tools serves them)
   */
  addressTemplate?: string;
  progress: (text: string) => void;
}

/** The entries of a Redfish service: one per member of /redfish/v1/Systems. */
export async function redfishEntries(o: RedfishEnrollOptions): Promise<EnrollEntry[]> {
  const origin = serviceOrigin(o.url);
  const systems = await walkRedfishSystems({ url: o.url, username: o.username, password: o.password, verifyCa: o.verifyCa, progress: (d, t) => o.progress(`read ${d}/${t} systems`) });
  return systems.map((s, i) => ({
    name: nodeName(s.name),
    driverInfo: {
      redfish_address: (o.addressTemplate ?? '{url}').replaceAll('{url}', origin).replaceAll('{id}', s.id).replaceAll('{index}', String(i)),
      redfish_username: o.username,
      redfish_password: o.password,
      redfish_system_id: s.path,
      ...(o.verifyCa !== true ? { redfish_verify_ca: o.verifyCa } : {}),
    },
    macs: s.macs,
  }));
}
