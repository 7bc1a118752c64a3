/** Systems: the ComputerSystem (power, boot override, health), its reset action and PATCH. */
import { ODATA, collection, redfishError, select, type Reply, type ResourceContext } from './common.js';
import { BOOT_TARGETS, RESET_TYPES, type Machine, type ResetType } from '../machine.js';

export function systems(ctx: ResourceContext, m: Machine | undefined, sub: string | undefined, sub2: string | undefined, seg: string[], method: string, body: Record<string, unknown> | undefined, query: URLSearchParams): Reply {
  if (!m) return redfishError(404, 'Base.1.8.ResourceMissingAtURI', `System ${seg[1]} not found.`);
  const base = `/redfish/v1/Systems/${m.id}`;
  if (!sub) {
    if (method === 'PATCH') return patchSystem(ctx, m, body);
    if (method !== 'GET') return redfishError(405, 'Base.1.8.OperationNotAllowed', `${method} is not allowed on a system.`);
    return select(
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
        ...(m.lastResetTime ? { LastResetTime: m.lastResetTime } : {}),
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
    ctx.counters.resets++;
    if (refused) return redfishError(409, 'Base.1.8.ResourceInUse', refused);
    return { status: 204 };
  }
  if (sub === 'EthernetInterfaces') {
    const nics = m.macs.map((_, i) => `NIC.Integrated.1-${i + 1}`);
    if (!sub2) return collection(`${base}/EthernetInterfaces`, '#EthernetInterfaceCollection.EthernetInterfaceCollection', 'Ethernet Interfaces', nics);
    const i = nics.indexOf(sub2);
    if (i < 0) return redfishError(404, 'Base.1.8.ResourceMissingAtURI', `Interface ${sub2} not found.`);
    return select(
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

export function patchSystem(ctx: ResourceContext, m: Machine, body: Record<string, unknown> | undefined): Reply {
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
