/**
 * The flow engine built from its narrow dependencies, in-process: a real SQLite store, the real
 * task manager (node locks), the real deferred scheduler, NodeOps, the fast-track lease and a
 * driver registry — and, in place of the gRPC hub, a scripted agent that implements AgentLink over
 * the same store (commands are persisted as the hub persists them; the test decides when the
 * agent connects, answers or vanishes). No Conductor.open, no child process.
 */
import { EventEmitter } from 'node:events';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { openDatabase } from '../../conductor/db/database.js';
import { Store, type AgentCommand, type Json, type Node } from '../../conductor/db/store.js';
import { TaskManager } from '../../conductor/task-manager.js';
import { DeferredScheduler } from '../../conductor/deferred.js';
import { NodeOps } from '../../conductor/node-ops.js';
import { FastTrackLease } from '../../conductor/fast-track.js';
import { FlowEngine, type FlowSettings } from '../../conductor/flows.js';
import { DriverRegistry } from '../../conductor/drivers/registry.js';
import type { HardwareType } from '../../conductor/drivers/base.js';
import type { AgentLink, AgentLinkEvents } from '../../conductor/agent-link.js';
import type { CommandName } from '../../shared/commands.js';
import { transition, type ProvisionEvent, type ProvisionState } from '../../conductor/states.js';
import { createLogger } from '../../shared/logger.js';
import { tmpDir, waitFor } from '../helpers.js';

/** An agent the test scripts: connect/answer/vanish on demand; commands land in the store as the hub writes them. */
export class ScriptedAgent extends EventEmitter<AgentLinkEvents> implements AgentLink {
  readonly boots = new Map<number, string>();
  readonly sent: Array<{ nodeId: number; id: string; name: string; params: Json }> = [];
  readonly cancelled: string[] = [];
  /** Answer commands by name as they are sent (a result document, or an error). */
  autoAnswer: Partial<Record<string, Json | { error: string }>> = {};
  /** Set when the harness closes: late timers (a boot that "comes up" after the test) do nothing. */
  closed = false;

  constructor(private readonly store: Store) {
    super();
  }

  isConnected(nodeId: number): boolean {
    return this.boots.has(nodeId);
  }

  bootId(nodeId: number): string | undefined {
    return this.boots.get(nodeId);
  }

  async sendCommand(node: Node, id: string, name: CommandName, params: Json): Promise<AgentCommand> {
    if (!this.boots.has(node.id)) throw new Error(`agent of node ${node.uuid} not connected`);
    const cmd = await this.store.createCommand({ id, node_id: node.id, name, params });
    this.sent.push({ nodeId: node.id, id, name, params });
    const auto = this.autoAnswer[name];
    if (auto) setImmediate(() => void this.answer(id, auto));
    return cmd;
  }

  cancelCommand(nodeId: number, commandId: string): boolean {
    this.cancelled.push(commandId);
    return this.boots.has(nodeId);
  }

  disconnect(nodeId: number, reason: string): void {
    if (this.boots.delete(nodeId)) this.emit('disconnected', nodeId, reason);
  }

  /** The ramdisk of this node came up (a new boot unless bootId is given). */
  async connect(nodeId: number, bootId = `boot-${randomUUID().slice(0, 8)}`): Promise<void> {
    if (this.closed) return;
    this.boots.set(nodeId, bootId);
    const node = (await this.store.getNodeById(nodeId))!;
    this.emit('connected', node, { bootId });
  }

  /** The agent finishes a command (SUCCEEDED with `result`, or FAILED). */
  async answer(commandId: string, result: Json | { error: string }): Promise<void> {
    if (this.closed) return;
    const failed = typeof (result as { error?: unknown }).error === 'string';
    await this.store.updateCommand(commandId, failed ? { status: 'FAILED', error: { code: 'TEST', message: String(result.error), details: '' } } : { status: 'SUCCEEDED', result: result as Json });
    this.emit('command-finished', (await this.store.getCommand(commandId))!);
  }

  last(name: string): { nodeId: number; id: string; name: string; params: Json } | undefined {
    return [...this.sent].reverse().find((c) => c.name === name);
  }
}

export interface Harness {
  store: Store;
  tasks: TaskManager;
  deferred: DeferredScheduler;
  ops: NodeOps;
  flows: FlowEngine;
  agent: ScriptedAgent;
  drivers: DriverRegistry;
  /** A node of `driver` in `state`. */
  node(driver: string, state: ProvisionState, fields?: Partial<Node>): Promise<Node>;
  /** Moves the node by `event` under its lock and starts a flow of `kind` (what Provisioning does). */
  start(node: Node, event: ProvisionEvent, kind: 'deploy' | 'clean' | 'service', steps?: Array<Record<string, unknown>>): Promise<void>;
  state(node: Node): Promise<string>;
  waitState(node: Node, state: string, ms?: number): Promise<Node>;
  close(): Promise<void>;
}

export const SETTINGS: FlowSettings = {
  fastTrack: false,
  fastTrackTimeoutS: 300,
  callbackTimeoutS: 30,
  agentLostGraceS: 1,
  powerTimeoutS: 5,
  automatedClean: true,
  eraseDevicesPriority: null,
  eraseDevicesMetadataPriority: null,
};

export async function harness(o: { settings?: Partial<FlowSettings>; hardware?: HardwareType[] } = {}): Promise<Harness> {
  const store = new Store(await openDatabase(`sqlite://${path.join(tmpDir('ironfleet-flows-'), 'flows.db')}`));
  const log = createLogger({ level: 'silent' });
  const settings = { ...SETTINGS, ...o.settings };
  const tasks = new TaskManager(store, 'unit-conductor', { retries: 20, retryIntervalMs: 50 });
  const deferred = new DeferredScheduler(store, tasks, 'unit-conductor', log, { maxIdleMs: 50 });
  const drivers = new DriverRegistry();
  for (const hw of o.hardware ?? []) drivers.register(hw);
  const agent = new ScriptedAgent(store);
  const ops = new NodeOps({ store, drivers, agents: agent, host: 'unit-conductor', historyMaxEntries: 500, log });
  const lease = new FastTrackLease({ ops, agents: agent, deferred, enabled: settings.fastTrack, timeoutS: settings.fastTrackTimeoutS });
  const flows = new FlowEngine({ store, ops, agents: agent, deferred, drivers, lease, settings, log, isStopping: () => false });
  // What Provisioning wires: a finished command continues the flow waiting on it.
  agent.on('command-finished', (cmd) => void flows.onAgentEvent(cmd.node_id, 'command', cmd.id));
  await deferred.start();
  const state = async (n: Node) => (await store.getNodeById(n.id))!.provision_state;
  return {
    store,
    tasks,
    deferred,
    ops,
    flows,
    agent,
    drivers,
    async node(driver, provisionState, fields = {}) {
      return store.createNode({ uuid: randomUUID(), driver, provision_state: provisionState, ...fields });
    },
    async start(node, event, kind, steps) {
      await tasks.withLock(node.id, `test ${kind}`, async (task) => {
        const t = transition(task.node.provision_state as ProvisionState, event, null, task.node.uuid);
        task.replace((await store.updateNode(node.id, { provision_state: t.to, target_provision_state: t.target }))!);
        await flows.start(task, kind, steps);
      });
    },
    state,
    async waitState(n, s, ms = 15_000) {
      await waitFor(async () => (await state(n)) === s, ms, `node in ${s}`);
      return (await store.getNodeById(n.id))!;
    },
    async close() {
      agent.closed = true;
      await deferred.stop(2000);
      await new Promise((r) => setTimeout(r, 100)); // boots scheduled by the last power-on land on a closed agent
      await store.close();
    },
  };
}
