/**
 * Driver interfaces, one per concern (Ironic's drivers/base.py). A hardware type composes one
 * implementation per interface, and each interface owns the steps it can run (deploy, raid, power,
 * …): the flow engine looks a step up in the node's hardware type and runs it, so a new hardware
 * type or step never edits the engine. The conductor only talks to hardware through these; the
 * API never calls them — it asks the conductor, which takes the node lock first.
 */
import type { Logger } from 'pino';
import type { z } from 'zod';
import type { Json, Node, Store } from '../db/store.js';
import type { Task } from '../task-manager.js';
import type { InternalInfo, InternalPatch, Wait } from '../internal-info.js';
import type { FlowKind } from '../states.js';
import type { CommandName } from '../../shared/commands.js';

export type PowerState = 'power on' | 'power off';
export type PowerTarget = 'power on' | 'power off' | 'rebooting' | 'soft power off' | 'soft rebooting';
export const POWER_TARGETS: readonly PowerTarget[] = ['power on', 'power off', 'rebooting', 'soft power off', 'soft rebooting'];

export interface DriverContext {
  /** Persist driver-owned data on the node (driver_internal_info keys). */
  setInternalInfo(patch: Record<string, unknown>): Promise<void>;
  /** Something the operator should see in node history (e.g. "BMC busy, retried …"), once per operation. */
  note?(message: string): void;
  signal?: AbortSignal;
}

// ---------------------------------------------------------------- steps

/** What a step returns: finished, or park the flow until an event ends the wait. */
export type StepOutcome = 'done' | { wait: Wait; timeoutS?: number };

/** The flow settings steps read (compiled once from the config). */
export interface StepSettings {
  fastTrack: boolean;
  callbackTimeoutS: number;
  powerTimeoutS: number;
}

/** The node operations a step may use (NodeOps implements them). */
export interface StepOps {
  readonly store: Store;
  history(node: Pick<Node, 'id'>, event: string, eventType: string, severity: 'INFO' | 'WARNING' | 'ERROR'): Promise<void>;
  patchInternal(task: Task, patch: InternalPatch): Promise<void>;
  driverContext(task: Task, signal?: AbortSignal): DriverContext;
  /** A power change recorded on the node (a power-off or reboot ends the agent's boot). */
  setPower(task: Task, target: PowerTarget, timeoutS?: number): Promise<PowerState>;
  /** Ends the agent's boot, then asks the hardware to power off or reboot (returns once accepted). */
  powerCut(task: Task, target: 'power off' | 'rebooting', reason: string, timeoutS?: number): Promise<void>;
}

/** Everything a step may use while it runs under the node lock. */
export interface StepContext {
  readonly task: Task;
  readonly info: InternalInfo;
  /** The running flow: its kind, and whether it reuses a connected agent (a step may set it). */
  readonly flow: { readonly kind: FlowKind; fast_track: boolean };
  readonly ops: StepOps;
  readonly hw: HardwareType;
  readonly settings: StepSettings;
  readonly log: Logger;
  /** Sends an agent command; the returned outcome parks the flow until its result. */
  agentCommand(name: CommandName, params: Json): Promise<StepOutcome>;
  /** Ironic's is_fast_track: enabled, the agent connected, and the BMC says the power is on. */
  fastTrackable(): Promise<boolean>;
}

export interface StepDefinition {
  readonly interface: string;
  readonly step: string;
  /** Priority in a default deploy; absent: the step runs only when asked for (manual steps). */
  readonly deployPriority?: number;
  /** In a default deploy only when this holds (e.g. RAID only with a software target_raid_config). */
  appliesTo?(node: Node, info: InternalInfo): boolean;
  /** An in-band step: the agent runs this command (the agent also offers it in get_*_steps). */
  readonly agentCommand?: CommandName;
  /** The step's arguments; absent: it takes none. */
  readonly args?: z.ZodType;
  /** Why it takes no arguments, for the 400 (e.g. "it uses the node's target_raid_config"). */
  readonly noArgsReason?: string;
  /** Conductor-run steps: do the work (or start it and return a wait). */
  run?(ctx: StepContext, args: Json): Promise<StepOutcome>;
  /** Agent command parameters, when they are not the step's own arguments. */
  params?(ctx: StepContext, args: Json): Json;
  /** The agent command this step waited on succeeded (runs under the lock before the next step). */
  onResult?(ctx: StepContext, result: Json): Promise<void>;
  /**
   * Safe to run again from its start when the conductor running it died in the middle (a boot
   * device set twice, a second reboot): a takeover resumes the flow here instead of failing it.
   */
  readonly repeatable?: boolean;
}

// ---------------------------------------------------------------- interfaces

export interface BaseInterface {
  readonly name: string;
  /** Validate the node's driver_info for this interface; throw DriverError naming the field. */
  validate(node: Node): void;
  /** Steps this interface can run in deploy/clean/service flows. */
  readonly steps?: readonly StepDefinition[];
}

/** What a sweep compares a node's reading with: its recorded power state, and health unless absent. */
export interface PowerSweepKnown {
  power: PowerState;
  health?: string | null;
}

/** One node's answer in a power sweep. */
export interface PowerSweepItem {
  uuid: string;
  ok: boolean;
  power?: PowerState | null;
  health?: string | null;
  error?: { code: string; message: string };
}

export interface PowerInterface extends BaseInterface {
  getPowerState(node: Node, ctx: DriverContext): Promise<PowerState>;
  setPowerState(node: Node, target: PowerTarget, ctx: DriverContext, timeoutS?: number): Promise<PowerState>;
  /**
   * Power sync: read power (and health) of many nodes at once within a deadline, every node
   * answering for itself. Absent: the hardware type's power is not synced (fake power). Nodes
   * whose driver_info cannot address their BMC come back in `invalid`. With `known`, a node read
   * fine in exactly its recorded state (power; health when given) is only counted in `unchanged`
   * instead of coming back as an item: a steady fleet's sweep then carries nothing per node.
   */
  sweep?(nodes: Node[], deadlineMs: number, known?: (n: Node) => PowerSweepKnown | undefined): Promise<{ items: PowerSweepItem[]; invalid: Array<{ node: Node; message: string }>; unchanged?: number }>;
}

/** What a sensor read returns for one node (the Redfish Thermal + Power documents, reduced). */
export interface SensorReadings {
  temperatures: Array<{ name: string; celsius: number | null; health: string | null }>;
  fans: Array<{ name: string; rpm: number | null }>;
  power_watts: number | null;
  psus: Array<{ name: string; output_watts: number | null; input_voltage: number | null }>;
}

export interface SensorItem {
  uuid: string;
  ok: boolean;
  value?: SensorReadings;
  error?: { code: string; message: string };
}

export interface ManagementInterface extends BaseInterface {
  setBootDevice(node: Node, device: 'pxe' | 'disk' | 'cdrom' | 'bios', persistent: boolean, ctx: DriverContext): Promise<void>;
  getBootDevice(node: Node, ctx: DriverContext): Promise<{ boot_device: string | null; persistent: boolean | null }>;
  /** Sensor data of many nodes within a deadline (Ironic's get_sensors_data); absent: none. */
  readSensors?(nodes: Node[], deadlineMs: number): Promise<{ items: SensorItem[]; invalid: Node[] }>;
}

export interface DeployInterface extends BaseInterface {
  /** Does the deploy need a ramdisk agent? (fake deploys finish without one.) */
  readonly needsAgent: boolean;
  /** Checks instance_info before a deploy is accepted; throws InvalidInputError naming the field. */
  validateInstance?(node: Node): void;
}

/** An out-of-band firmware update started on the BMC, recorded on the node until it ends. */
export interface FirmwareTask {
  task_uri: string;
  component: 'bios' | 'bmc';
  image_url: string;
}

export interface FirmwareTaskStatus {
  finished: boolean;
  ok: boolean;
  message: string;
  versions?: { bios: string | null; bmc: string | null };
}

export interface FirmwareInterface extends BaseInterface {
  /** Out-of-band updates; absent: this hardware type cannot update firmware from the conductor. */
  startUpdate?(node: Node, imageUrl: string, component: 'bios' | 'bmc'): Promise<FirmwareTask>;
  pollUpdate?(node: Node, task: FirmwareTask): Promise<FirmwareTaskStatus>;
}

export interface BootInterface extends BaseInterface {}
export interface RaidInterface extends BaseInterface {}
/** What an inspection may use once the node is in `inspect wait` (the lock held). */
export interface InspectContext {
  readonly task: Task;
  readonly ops: StepOps;
  readonly hw: HardwareType;
  /** The agent link, as far as inspection needs it. */
  readonly agents: { isConnected(nodeId: number): boolean; sendCommand(node: Node, id: string, name: CommandName, params: Json): Promise<unknown> };
}

export interface InspectInterface extends BaseInterface {
  readonly needsAgent: boolean;
  /**
   * Starts an inspection of the node, already parked in `inspect wait`; whatever ends the wait
   * (an inventory arriving) completes it. Absent: the hardware type cannot inspect.
   */
  begin?(ctx: InspectContext): Promise<void>;
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

export const INTERFACES = ['power', 'management', 'deploy', 'boot', 'raid', 'firmware', 'inspect'] as const;
