/**
 * Redfish operations on a node, as the power/management/firmware interfaces need them. Pure async
 * functions over a RedfishClient: they run inside the piscina worker that owns the BMC.
 */
import type { RedfishClient } from './client.js';
import { RedfishError } from './errors.js';
import type { RedfishTarget } from './driver-info.js';
import { OperationTrace, retryAction, retryRead } from './retry-policy.js';

/**
 * An operation's retry context (retry-policy.ts): reads and actions inside it ride through
 * transient BMC answers until `deadline` (epoch ms). Absent: one attempt (power sync sweeps).
 */
export interface OpRetry {
  deadline: number;
  /** Every trace the operation ran (the worker reports those that needed retries). */
  traces?: OperationTrace[];
}

/** The read and action runners of one operation (plain calls without a retry context). */
function runners(c: RedfishClient, t: RedfishTarget, what: string, r?: OpRetry) {
  const trace = new OperationTrace(what, t.origin, r?.deadline ?? 0);
  r?.traces?.push(trace);
  return {
    read: <T>(fn: () => Promise<T>): Promise<T> => (r ? retryRead(c, trace, fn) : fn()),
    act: <T>(send: () => Promise<T>, applied: () => Promise<boolean>): Promise<T | 'applied'> => (r ? retryAction(c, trace, send, applied) : send()),
  };
}

/** For actions whose effect cannot be read back: a maybe-applied failure is not re-sent. */
const cannotTell = (what: string, t: RedfishTarget) => async (): Promise<boolean> => {
  throw new RedfishError('RF_PROTOCOL', `${what}: the BMC's answer was lost and whether it took effect cannot be read back; not sent again`, undefined, t.origin);
};

export type IronicPower = 'power on' | 'power off';
export type Health = 'OK' | 'Warning' | 'Critical';

const POWER_MAP: Record<string, IronicPower> = { On: 'power on', PoweringOn: 'power on', Off: 'power off', PoweringOff: 'power off', Paused: 'power on' };

/** System path per target key (resolved once: the only member when no system id is given). */
const systemPaths = new Map<string, string>();

export function systemPath(c: RedfishClient, t: RedfishTarget): string | Promise<string> {
  if (t.systemId) return t.systemId.startsWith('/') ? t.systemId : `${t.rootPrefix}/Systems/${t.systemId}`;
  return systemPaths.get(t.key) ?? lookUpSystemPath(c, t);
}

async function lookUpSystemPath(c: RedfishClient, t: RedfishTarget): Promise<string> {
  const { doc } = await c.request('GET', `${t.rootPrefix}/Systems`);
  const members = (doc.Members as Array<{ '@odata.id': string }> | undefined) ?? [];
  if (members.length !== 1) throw new RedfishError('RF_CONFIG', `driver_info.redfish_system_id is required: the BMC exposes ${members.length} systems`, undefined, t.origin);
  systemPaths.set(t.key, members[0]!['@odata.id']);
  return members[0]!['@odata.id'];
}

export interface PowerHealth {
  power: IronicPower | null;
  raw_power: string | null;
  health: Health | null;
}

const POWER_HEALTH_SELECT = ['PowerState', 'Status'];

/**
 * One GET per node: PowerState + Status (what power sync and health monitoring need). Sweeps pass
 * retries 0: the next sweep is the retry, and a retry inside a sweep only lengthens its tail.
 */
export async function readPowerHealth(c: RedfishClient, t: RedfishTarget, retries?: number): Promise<PowerHealth> {
  const p = systemPath(c, t);
  const { doc } = await c.request('GET', typeof p === 'string' ? p : await p, { select: POWER_HEALTH_SELECT, retries });
  const raw = typeof doc.PowerState === 'string' ? doc.PowerState : null;
  const h = (doc.Status as { Health?: string } | undefined)?.Health;
  return { power: raw ? (POWER_MAP[raw] ?? null) : null, raw_power: raw, health: h === 'OK' || h === 'Warning' || h === 'Critical' ? h : null };
}

export type PowerTarget = 'power on' | 'power off' | 'rebooting' | 'soft power off' | 'soft rebooting';

/**
 * Sets the power state and waits (asynchronously: timers, no blocked thread) until the BMC reports
 * it, or the timeout passes. timeoutS = 0 returns once the BMC accepted the reset.
 */
export async function setPower(c: RedfishClient, t: RedfishTarget, target: PowerTarget, timeoutS = 60, retry?: OpRetry): Promise<IronicPower> {
  const { read, act } = runners(c, t, `power action "${target}"`, retry);
  const path = await read(async () => systemPath(c, t));
  // One read: the current state, the reset action's target and the last reset time (to tell later
  // whether a reset whose answer was lost did land).
  const { doc: sys } = await read(() => c.request('GET', path, { select: ['PowerState', 'Actions', 'LastResetTime'] }));
  const rawNow = typeof sys.PowerState === 'string' ? sys.PowerState : null;
  const current = rawNow ? (POWER_MAP[rawNow] ?? null) : null;
  const lastReset = typeof sys.LastResetTime === 'string' ? sys.LastResetTime : undefined;
  let reset: string;
  let want: IronicPower;
  switch (target) {
    case 'power on':
      if (current === 'power on') return 'power on';
      reset = 'On';
      want = 'power on';
      break;
    case 'power off':
      if (current === 'power off') return 'power off';
      reset = 'ForceOff';
      want = 'power off';
      break;
    case 'soft power off':
      if (current === 'power off') return 'power off';
      reset = 'GracefulShutdown';
      want = 'power off';
      break;
    case 'rebooting':
      reset = current === 'power off' ? 'On' : 'ForceRestart';
      want = 'power on';
      break;
    case 'soft rebooting':
      reset = current === 'power off' ? 'On' : 'GracefulRestart';
      want = 'power on';
      break;
  }
  const action = ((sys.Actions as Record<string, { target?: string }> | undefined)?.['#ComputerSystem.Reset']?.target) ?? `${path}/Actions/ComputerSystem.Reset`;
  /** Did a reset whose answer was lost land? LastResetTime says so where the BMC has it. */
  const landed = async (): Promise<boolean> => {
    const { doc } = await c.request('GET', path, { select: ['PowerState', 'LastResetTime'] });
    if (lastReset !== undefined && typeof doc.LastResetTime === 'string') return doc.LastResetTime !== lastReset;
    const p = doc.PowerState;
    if (reset === 'On') return p === 'On' || p === 'PoweringOn';
    if (reset === 'ForceOff' || reset === 'GracefulShutdown') return p === 'Off' || p === 'PoweringOff';
    // A restart without LastResetTime cannot be told apart: taken as delivered — a second reset of
    // a machine that is booting is worse than the agent's call-back timeout if it was not.
    return true;
  };
  for (let attempt = 0; ; attempt++) {
    try {
      await act(() => c.request('POST', action, { body: { ResetType: reset } }), landed);
      break;
    } catch (err) {
      // iDRAC answers 409 for a power-on right after a power-off: retry a few times (as Ironic does).
      if (err instanceof RedfishError && err.status === 409 && attempt < 5) {
        const now = (await read(() => readPowerHealth(c, t))).power;
        if (now === want && target !== 'rebooting' && target !== 'soft rebooting') return want;
        // A reboot chose On for a server that read as off but was already (powering) on, and
        // the BMC refused: restart it instead.
        if (target === 'rebooting' || target === 'soft rebooting') reset = now === 'power off' ? 'On' : target === 'rebooting' ? 'ForceRestart' : 'GracefulRestart';
        await new Promise((r) => setTimeout(r, 1000 * (attempt + 1)));
        continue;
      }
      throw err;
    }
  }
  // timeoutS 0: the request is accepted, the caller polls (flows wait through deferred actions).
  if (timeoutS === 0) return want;
  const deadline = Date.now() + timeoutS * 1000;
  let wait = 250;
  let sawOff = false;
  for (;;) {
    await new Promise((r) => setTimeout(r, wait));
    wait = Math.min(2000, Math.round(wait * 1.5));
    const ph = await read(() => readPowerHealth(c, t));
    if (ph.raw_power === 'Off' || ph.raw_power === 'PoweringOff') sawOff = true;
    const settled = ph.raw_power === 'On' || ph.raw_power === 'Off';
    const rebootDone = (target === 'rebooting' || target === 'soft rebooting') && current === 'power on' ? sawOff || ph.raw_power === 'On' : true;
    if (settled && ph.power === want && rebootDone) return want;
    if (Date.now() > deadline) throw new RedfishError('RF_TIMEOUT', `power state did not reach "${want}" within ${timeoutS}s (last: ${ph.raw_power})`, undefined, t.origin);
  }
}

const BOOT_MAP: Record<string, string> = { pxe: 'Pxe', disk: 'Hdd', cdrom: 'Cd', bios: 'BiosSetup' };

export async function setBootDevice(c: RedfishClient, t: RedfishTarget, device: string, persistent: boolean, retry?: OpRetry): Promise<void> {
  const target = BOOT_MAP[device];
  if (!target) throw new RedfishError('RF_CONFIG', `boot device ${device} is not supported; use one of ${Object.keys(BOOT_MAP).join(', ')}`);
  const { read, act } = runners(c, t, `set boot device ${device}`, retry);
  const path = await read(async () => systemPath(c, t));
  const enabled = persistent ? 'Continuous' : 'Once';
  const landed = async () => {
    const b = (await c.request('GET', path, { select: ['Boot'] })).doc.Boot as { BootSourceOverrideTarget?: string; BootSourceOverrideEnabled?: string } | undefined;
    return b?.BootSourceOverrideTarget === target && b?.BootSourceOverrideEnabled === enabled;
  };
  await act(() => c.request('PATCH', path, { body: { Boot: { BootSourceOverrideTarget: target, BootSourceOverrideEnabled: enabled } } }), landed);
}

/** readPowerHealth for an operation (an API or flow power read): transient answers retried until the deadline. */
export function readPowerHealthOp(c: RedfishClient, t: RedfishTarget, retry?: OpRetry): Promise<PowerHealth> {
  return runners(c, t, 'read power state', retry).read(() => readPowerHealth(c, t));
}

export interface SensorReadings {
  temperatures: Array<{ name: string; celsius: number | null; health: string | null }>;
  fans: Array<{ name: string; rpm: number | null }>;
  power_watts: number | null;
  psus: Array<{ name: string; output_watts: number | null; input_voltage: number | null }>;
}

const chassisPaths = new Map<string, string>();

async function chassisPath(c: RedfishClient, t: RedfishTarget): Promise<string> {
  const cached = chassisPaths.get(`${t.key}|${t.systemId ?? ''}`);
  if (cached) return cached;
  const { doc } = await c.request('GET', await systemPath(c, t), { select: ['Links'] });
  const p = ((doc.Links as { Chassis?: Array<{ '@odata.id': string }> } | undefined)?.Chassis ?? [])[0]?.['@odata.id'];
  if (!p) throw new RedfishError('RF_PROTOCOL', 'system has no Links.Chassis', undefined, t.origin);
  chassisPaths.set(`${t.key}|${t.systemId ?? ''}`, p);
  return p;
}

/** Thermal + Power of the system's first chassis (the legacy schemas Ironic reads). */
export async function readSensors(c: RedfishClient, t: RedfishTarget): Promise<SensorReadings> {
  const ch = await chassisPath(c, t);
  const [th, pw] = await Promise.all([c.request('GET', `${ch}/Thermal`, { retries: 0 }), c.request('GET', `${ch}/Power`, { retries: 0 })]);
  const temps = (th.doc.Temperatures as Array<Record<string, unknown>> | undefined) ?? [];
  const fans = (th.doc.Fans as Array<Record<string, unknown>> | undefined) ?? [];
  const ctl = ((pw.doc.PowerControl as Array<Record<string, unknown>> | undefined) ?? [])[0];
  const psus = (pw.doc.PowerSupplies as Array<Record<string, unknown>> | undefined) ?? [];
  const num = (v: unknown) => (typeof v === 'number' ? v : null);
  return {
    temperatures: temps.map((x) => ({ name: String(x.Name ?? x.MemberId), celsius: num(x.ReadingCelsius), health: ((x.Status as { Health?: string }) ?? {}).Health ?? null })),
    fans: fans.map((x) => ({ name: String(x.Name ?? x.MemberId), rpm: num(x.Reading) })),
    power_watts: num(ctl?.PowerConsumedWatts),
    psus: psus.map((x) => ({ name: String(x.Name ?? x.MemberId), output_watts: num(x.PowerOutputWatts ?? x.LastPowerOutputWatts), input_voltage: num(x.LineInputVoltage) })),
  };
}

export async function startFirmwareUpdate(c: RedfishClient, t: RedfishTarget, imageUri: string, component: 'bios' | 'bmc', retry?: OpRetry): Promise<string> {
  const { read, act } = runners(c, t, `firmware update of ${component}`, retry);
  const { doc: root } = await read(() => c.request('GET', `${t.rootPrefix}/UpdateService`));
  const target = ((root.Actions as Record<string, { target?: string }> | undefined)?.['#UpdateService.SimpleUpdate']?.target) ?? `${t.rootPrefix}/UpdateService/Actions/UpdateService.SimpleUpdate`;
  const body: Record<string, unknown> = { ImageURI: imageUri, TransferProtocol: imageUri.startsWith('https') ? 'HTTPS' : 'HTTP' };
  if (component === 'bmc') body.Targets = [`${t.rootPrefix}/Managers`];
  const res = await act(() => c.request('POST', target, { body }), cannotTell('SimpleUpdate', t));
  if (res === 'applied') throw new RedfishError('RF_PROTOCOL', 'SimpleUpdate: no task location', undefined, t.origin);
  const loc = res.headers.location;
  const task = typeof loc === 'string' ? (loc.startsWith('http') ? new URL(loc).pathname : loc) : (res.doc['@odata.id'] as string | undefined);
  if (!task) throw new RedfishError('RF_PROTOCOL', 'SimpleUpdate returned no task location', res.status, t.origin);
  return task;
}

export async function readTask(c: RedfishClient, t: RedfishTarget, taskUri: string, retry?: OpRetry): Promise<{ state: string; percent: number | null; messages: string[] }> {
  const { doc } = await runners(c, t, 'read firmware task', retry).read(() => c.request('GET', taskUri));
  return {
    state: String(doc.TaskState ?? 'Unknown'),
    percent: typeof doc.PercentComplete === 'number' ? doc.PercentComplete : null,
    messages: ((doc.Messages as Array<{ Message?: string }> | undefined) ?? []).map((m) => m.Message ?? '').filter(Boolean),
  };
}

export async function readFirmwareVersions(c: RedfishClient, t: RedfishTarget, retry?: OpRetry): Promise<{ bios: string | null; bmc: string | null }> {
  const { read } = runners(c, t, 'read firmware versions', retry);
  const { doc } = await read(async () => c.request('GET', await systemPath(c, t), { select: ['BiosVersion', 'Links'] }));
  let bmc: string | null = null;
  const mgr = ((doc.Links as { ManagedBy?: Array<{ '@odata.id': string }> } | undefined)?.ManagedBy ?? [])[0]?.['@odata.id'];
  if (mgr) bmc = ((await read(() => c.request('GET', mgr, { select: ['FirmwareVersion'] }))).doc.FirmwareVersion as string | undefined) ?? null;
  return { bios: (doc.BiosVersion as string | undefined) ?? null, bmc };
}
