/** Chassis (Thermal, Power sensors) and Managers. */
import { ODATA, redfishError, select, type Reply, type ResourceContext } from './common.js';
import type { Machine } from '../machine.js';

export function chassis(ctx: ResourceContext, m: Machine | undefined, sub: string | undefined, method: string, query: URLSearchParams): Reply {
  if (!m) return redfishError(404, 'Base.1.8.ResourceMissingAtURI', 'Chassis not found.');
  if (method !== 'GET') return redfishError(405, 'Base.1.8.OperationNotAllowed', `${method} is not allowed here.`);
  const base = `/redfish/v1/Chassis/${m.id}`;
  const s = m.sensors();
  if (!sub) {
    return select(
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
    return select(
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
    return select(
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

export function manager(ctx: ResourceContext, m: Machine | undefined, method: string, query: URLSearchParams): Reply {
  if (!m) return redfishError(404, 'Base.1.8.ResourceMissingAtURI', 'Manager not found.');
  if (method !== 'GET') return redfishError(405, 'Base.1.8.OperationNotAllowed', `${method} is not allowed here.`);
  return select(
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
