/**
 * The simulated deploy ramdisk of one machine: when the BMC powers the machine on (or it restarts),
 * an agent boots after a boot delay and connects to the conductor over real gRPC, exactly as the
 * agent in a real ramdisk would; a power cut (ForceOff, restart) kills it on the spot, losing its
 * in-memory journal and token like a real reboot. Its disks are sparse files under `diskDir`. A
 * machine whose boot override points at its disk boots its instance instead (no agent).
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { AgentClient } from '../agent/client.js';
import { SimulatedHardware } from '../agent/hardware.js';
import type { Machine, ResetType } from './machine.js';

export interface RamdiskOptions {
  conductor: string;
  seed: string;
  bootDelayMs: number;
  diskDir: string;
  diskBytes: number;
  deployStepPriorities?: Record<string, number>;
  log: Logger;
}

const CUTS_POWER: ReadonlySet<ResetType> = new Set(['ForceOff', 'GracefulShutdown', 'ForceRestart', 'GracefulRestart', 'PowerCycle', 'PushPowerButton']);

/**
 * Wires what runs on a machine to its power: a power cut (off, restart) calls `cut`, the machine
 * being (back) on calls `on` — for the simulated agent and the qemu VM alike.
 */
export function followPower(machine: Machine, on: () => void, cut: () => void): void {
  machine.on('reset', (type: ResetType) => {
    if (CUTS_POWER.has(type)) cut();
    on();
  });
  machine.on('power', (p) => {
    if (p === 'Off' || p === 'PoweringOff') cut();
    if (p === 'On') on();
  });
  if (machine.redfishPower === 'On') on();
}

/**
 * What a power-on boots, from the boot override as on hardware: `Hdd` → the deployed instance,
 * anything else → the network boot of the deploy ramdisk. A `Once` override is consumed.
 */
export function bootSource(machine: Machine): 'instance' | 'ramdisk' {
  const boot = machine.boot;
  const fromDisk = boot.enabled !== 'Disabled' && boot.target === 'Hdd';
  if (boot.enabled === 'Once') machine.setBoot({ enabled: 'Disabled', target: 'None' });
  return fromDisk ? 'instance' : 'ramdisk';
}

export class SimulatedRamdisk {
  private agent: AgentClient | undefined;
  private bootTimer: NodeJS.Timeout | undefined;
  boots = 0;
  /** Boots into the installed instance (boot override Hdd) instead of the ramdisk. */
  instanceBoots = 0;

  constructor(
    private readonly machine: Machine,
    private readonly o: RamdiskOptions,
  ) {
    followPower(machine, () => this.bootWhenOn(), () => this.kill());
  }

  get running(): boolean {
    return this.agent !== undefined;
  }

  private bootWhenOn(): void {
    if (this.agent || this.bootTimer || this.machine.redfishPower !== 'On') return;
    this.bootTimer = setTimeout(() => {
      this.bootTimer = undefined;
      if (this.machine.redfishPower !== 'On' || this.agent) return;
      if (bootSource(this.machine) === 'instance') {
        this.instanceBoots++;
        return;
      }
      this.boots++;
      const agent = new AgentClient({
        conductor: this.o.conductor,
        hardware: new SimulatedHardware({ seed: this.o.seed, index: this.machine.index, bootId: randomUUID(), diskDir: this.o.diskDir, diskBytes: this.o.diskBytes }),
        log: this.o.log.child({ machine: this.machine.index }),
        backoff: { initialMs: 200, maxMs: 5_000 },
        deployStepPriorities: this.o.deployStepPriorities,
      });
      this.agent = agent;
      void agent.start().catch((err) => this.o.log.warn({ err, machine: this.machine.index }, 'simulated agent failed to start'));
    }, this.o.bootDelayMs);
    this.bootTimer.unref();
  }

  /** Power cut: the agent dies now (its stream drops, its running command with it). */
  kill(): void {
    if (this.bootTimer) clearTimeout(this.bootTimer);
    this.bootTimer = undefined;
    const a = this.agent;
    this.agent = undefined;
    if (a) void a.stop().catch(() => undefined);
  }
}
