/** JSON views in Ironic's v1 shapes. Secrets are masked; internal columns never leave. */
import type { HistoryEvent, Node, Port } from '../db/store.js';
import { scrubSecrets } from '../../shared/redact.js';
import type { HardwareType } from '../drivers/base.js';

export function links(base: string, kind: string, id: string): Array<{ href: string; rel: string }> {
  return [
    { href: `${base}/v1/${kind}/${id}`, rel: 'self' },
    { href: `${base}/${kind}/${id}`, rel: 'bookmark' },
  ];
}

export const NODE_LIST_DEFAULT_FIELDS = ['uuid', 'name', 'instance_uuid', 'power_state', 'provision_state', 'maintenance', 'links'];

export function nodeView(n: Node, base: string, hw: HardwareType | undefined, conductor: string | null, agent: { connected: boolean }): Record<string, unknown> {
  const internal = scrubSecrets(n.driver_internal_info);
  return {
    uuid: n.uuid,
    name: n.name,
    driver: n.driver,
    driver_info: scrubSecrets(n.driver_info),
    driver_internal_info: { ...internal, agent_connected: agent.connected, ...(n.agent_last_seen ? { agent_last_heartbeat: n.agent_last_seen } : {}) },
    properties: scrubSecrets(n.properties),
    instance_info: scrubSecrets(n.instance_info),
    instance_uuid: n.instance_uuid,
    extra: scrubSecrets(n.extra),
    resource_class: n.resource_class,
    provision_state: n.provision_state,
    target_provision_state: n.target_provision_state,
    power_state: n.power_state,
    target_power_state: n.target_power_state,
    maintenance: n.maintenance,
    maintenance_reason: n.maintenance_reason,
    fault: n.fault,
    last_error: n.last_error,
    reservation: n.reservation,
    conductor_group: n.conductor_group,
    conductor,
    health: n.health,
    console_enabled: false,
    protected: false,
    retired: false,
    automated_clean: null,
    boot_interface: hw?.boot.name ?? null,
    deploy_interface: hw?.deploy.name ?? null,
    firmware_interface: hw?.firmware.name ?? null,
    inspect_interface: hw?.inspect.name ?? null,
    management_interface: hw?.management.name ?? null,
    power_interface: hw?.power.name ?? null,
    raid_interface: hw?.raid.name ?? null,
    network_interface: 'noop',
    console_interface: 'no-console',
    bios_interface: 'no-bios',
    rescue_interface: 'no-rescue',
    storage_interface: 'noop',
    vendor_interface: 'no-vendor',
    provision_updated_at: n.provision_updated_at,
    created_at: n.created_at,
    updated_at: n.updated_at,
    links: links(base, 'nodes', n.uuid),
    ports: links(base, `nodes/${n.uuid}`, 'ports'),
    states: links(base, `nodes/${n.uuid}`, 'states'),
  };
}

export function selectFields(view: Record<string, unknown>, fields: string[] | undefined): Record<string, unknown> {
  if (!fields) return view;
  const out: Record<string, unknown> = {};
  for (const f of fields) if (Object.hasOwn(view, f)) out[f] = view[f];
  return out;
}

export function portView(p: Port, nodeUuid: string, base: string): Record<string, unknown> {
  return {
    uuid: p.uuid,
    address: p.address,
    node_uuid: nodeUuid,
    extra: scrubSecrets(p.extra),
    pxe_enabled: p.pxe_enabled,
    local_link_connection: scrubSecrets(p.local_link_connection),
    physical_network: p.physical_network,
    internal_info: {},
    is_smartnic: false,
    portgroup_uuid: null,
    name: null,
    created_at: p.created_at,
    updated_at: p.updated_at,
    links: links(base, 'ports', p.uuid),
  };
}

export function historyView(e: HistoryEvent, nodeUuid: string, base: string, detail: boolean): Record<string, unknown> {
  const v: Record<string, unknown> = {
    uuid: e.uuid,
    created_at: e.created_at,
    severity: e.severity,
    event: e.event,
    links: links(base, `nodes/${nodeUuid}/history`, e.uuid),
  };
  if (detail) Object.assign(v, { event_type: e.event_type, conductor: e.conductor, user: e.user });
  return v;
}
