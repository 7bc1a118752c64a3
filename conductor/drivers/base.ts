/**
 * Driver interfaces, one per concern (Ironic's drivers/base.py). A hardware type composes one
 * implementation per interface; the conductor only talks to hardware through these. The API
 * never calls them: it asks the conductor, which takes the node lock first.
 */
import type { Node } from '../db/store.js';

export type PowerState = 'power on' | 'power off';
export type PowerTarget = 'power on' | 'power off' | 'rebooting' | 'soft power off' | 'soft rebooting';
export const POWER_TARGETS: readonly PowerTarget[] = ['power on', 'power off', 'rebooting', 'soft power off', 'soft rebooting'];

export interface DriverContext {
  /** Persist driver-owned data on the node (driver_internal_info keys). */
  setInternalInfo(patch: Record<string, unknown>): Promise<void>;
  signal?: AbortSignal;
}

export interface BaseInterface {
  readonly name: string;
  /** Validate the node's driver_info for this interface; throw DriverError naming the field. */
  validate(node: Node): void;
}

export interface PowerInterface extends BaseInterface {
  getPowerState(node: Node, ctx: DriverContext): Promise<PowerState>;
  setPowerState(node: Node, target: PowerTarget, ctx: DriverContext, timeoutS?: number): Promise<PowerState>;
  supportsPowerSync: boolean;
}

export interface ManagementInterface extends BaseInterface {
  setBootDevice(node: Node, device: 'pxe' | 'disk' | 'cdrom' | 'bios', persistent: boolean, ctx: DriverContext): Promise<void>;
  getBootDevice(node: Node, ctx: DriverContext): Promise<{ boot_device: string | null; persistent: boolean | null }>;
}

export interface DeployInterface extends BaseInterface {
  /** Does the deploy need a ramdisk agent? (fake deploys finish without one.) */
  readonly needsAgent: boolean;
}

export interface BootInterface extends BaseInterface {}
export interface RaidInterface extends BaseInterface {}
export interface FirmwareInterface extends BaseInterface {}
export interface InspectInterface extends BaseInterface {
  readonly needsAgent: boolean;
}

export interface HardwareType {
  readonly name: string;
  readonly power: PowerInterface;
  readonly management: ManagementInterface;
  readonly deploy: DeployInterface;
  readonly boot: BootInterface;
  readonly raid: RaidInterface;
  readonly firmware: FirmwareInterface;
  readonly inspect: InspectInterface;
  /** driver_info keys: required/optional, with descriptions (GET /v1/drivers/{name}/properties). */
  readonly properties: Record<string, string>;
}
