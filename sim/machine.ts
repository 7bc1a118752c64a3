/**
 * One simulated server as its BMC sees it: power (changes land after a delay), health, boot
 * override, firmware versions, NICs, and sensor readings that follow power state and time.
 */
import { EventEmitter } from 'node:events';
import { simulatedMac } from '../agent/hardware.js';
import { between, rngFor, stableUuid, type Rng } from './rng.js';

export type PowerState = 'On' | 'Off' | 'PoweringOn' | 'PoweringOff';
export type Health = 'OK' | 'Warning' | 'Critical';

export interface MachineEvents {
  power: [state: PowerState];
  health: [health: Health];
  firmware: [component: string, version: string];
  boot: [target: string];
  reset: [type: ResetType];
}

export const RESET_TYPES = ['On', 'ForceOff', 'GracefulShutdown', 'GracefulRestart', 'ForceRestart', 'Nmi', 'PushPowerButton', 'PowerCycle'] as const;
export type ResetType = (typeof RESET_TYPES)[number];

export const BOOT_TARGETS = ['None', 'Pxe', 'Hdd', 'Cd', 'BiosSetup', 'UefiHttp'] as const;

export class Machine extends EventEmitter<MachineEvents> {
  readonly id: string;
  readonly uuid: string;
  readonly serial: string;
  readonly macs: string[];
  power: PowerState;
  health: Health = 'OK';
  boot = { enabled: 'Disabled', target: 'None', mode: 'UEFI' };
  biosVersion = '1.9.2';
  bmcVersion = '6.10.30.00';
  resets = 0;
  /** When the last accepted reset happened (Redfish ComputerSystem.LastResetTime). */
  lastResetTime: string | null = null;
  private pending: NodeJS.Timeout | undefined;
  private readonly rng: Rng;

  constructor(
    readonly seed: string,
    readonly index: number,
    private readonly powerDelayMs: readonly [number, number],
    initialPower: 'On' | 'Off',
  ) {
    super();
    this.rng = rngFor(seed, index, 'machine');
    this.uuid = stableUuid(seed, index, 'system');
    this.id = this.uuid;
    this.serial = `SIM${stableUuid(seed, index, 'serial').replace(/-/g, '').slice(0, 10).toUpperCase()}`;
    this.macs = [0, 1].map((nic) => simulatedMac(seed, index, nic));
    this.power = initialPower;
  }

  /** Applies a ComputerSystem.Reset; returns an error message for a refused request. */
  reset(type: ResetType): string | undefined {
    const on = this.power === 'On' || this.power === 'PoweringOn';
    this.resets++;
    const refused = this.applyReset(type, on);
    if (!refused) {
      this.lastResetTime = new Date().toISOString();
      this.emit('reset', type);
    }
    return refused;
  }

  private applyReset(type: ResetType, on: boolean): string | undefined {
    switch (type) {
      case 'On':
        if (on) return 'The server is already powered on.';
        this.transition('PoweringOn', 'On');
        return undefined;
      case 'ForceOff':
      case 'GracefulShutdown':
        if (!on) return 'The server is already powered off.';
        this.transition('PoweringOff', 'Off');
        return undefined;
      case 'PushPowerButton':
        this.transition(on ? 'PoweringOff' : 'PoweringOn', on ? 'Off' : 'On');
        return undefined;
      case 'ForceRestart':
      case 'GracefulRestart':
      case 'PowerCycle':
        // A restart of a powered-off server powers it on (what Ironic's reboot relies on).
        this.transition(on ? 'PoweringOff' : 'PoweringOn', 'On');
        return undefined;
      case 'Nmi':
        return undefined;
    }
  }

  private transition(during: PowerState, final: 'On' | 'Off'): void {
    if (this.pending) clearTimeout(this.pending);
    const delay = between(this.rng, this.powerDelayMs);
    if (delay <= 0) {
      this.setPower(final);
      return;
    }
    this.setPower(during);
    this.pending = setTimeout(() => {
      this.pending = undefined;
      this.setPower(final);
    }, delay);
    this.pending.unref();
  }

  private setPower(p: PowerState): void {
    if (p === this.power) return;
    this.power = p;
    this.emit('power', p);
  }

  setHealth(h: Health): void {
    if (h === this.health) return;
    this.health = h;
    this.emit('health', h);
  }

  setBoot(patch: { enabled?: string; target?: string; mode?: string }): void {
    Object.assign(this.boot, Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined)));
    this.emit('boot', this.boot.target);
  }

  setFirmware(component: 'BIOS' | 'BMC', version: string): void {
    if (component === 'BIOS') this.biosVersion = version;
    else this.bmcVersion = version;
    this.emit('firmware', component, version);
  }

  /** Redfish PowerState: transitional states report as such. */
  get redfishPower(): PowerState {
    return this.power;
  }

  stop(): void {
    if (this.pending) clearTimeout(this.pending);
  }

  /** Sensor readings: deterministic per 5-second bucket, depending on power. */
  sensors(now = Date.now()): { temps: Array<[string, number, number]>; fans: Array<[string, number]>; watts: number; psus: Array<[string, number, number]> } {
    const bucket = Math.floor(now / 5000);
    const r = rngFor(this.seed, this.index, 'sensors', bucket);
    const on = this.power === 'On';
    const load = on ? 0.3 + 0.5 * r() : 0;
    const inlet = 21 + 4 * r();
    const cpu = (n: number) => Math.round((on ? inlet + 15 + 40 * load + 3 * r() : inlet + 1) * 10) / 10 + n * 0.5;
    const watts = on ? Math.round(180 + 420 * load) : 12;
    return {
      temps: [
        ['CPU1 Temp', cpu(0), 95],
        ['CPU2 Temp', cpu(1), 95],
        ['System Board Inlet Temp', Math.round(inlet * 10) / 10, 42],
        ['System Board Exhaust Temp', Math.round((inlet + (on ? 10 + 12 * load : 1)) * 10) / 10, 70],
      ],
      fans: [1, 2, 3, 4].map((n) => [`System Board Fan${n}`, on ? Math.round(4800 + 6000 * load + 400 * r()) : 0] as [string, number]),
      watts,
      psus: [
        ['PS1', Math.round(watts / 2), 1100],
        ['PS2', Math.round(watts / 2), 1100],
      ],
    };
  }
}
