/**
 * What the conductor's flows and actions need from the agent endpoint: is this node's agent
 * connected and from which boot, send or cancel a command, drop a stream, and the events that end
 * a flow's waits. The gRPC `AgentHub` implements it; a unit test can stand a scripted agent in its
 * place. Flows never see sessions, windows or sockets.
 */
import type { EventEmitter } from 'node:events';
import type { Json, Node, AgentCommand } from './db/store.js';
import type { CommandName } from '../shared/commands.js';

export interface AgentLinkEvents {
  connected: [node: Node, session: { bootId: string | null }];
  disconnected: [nodeId: number, reason: string];
  inventory: [node: Node];
  'command-finished': [cmd: AgentCommand];
}

export interface AgentLink {
  isConnected(nodeId: number): boolean;
  /** The boot id of the connected agent, if any. */
  bootId(nodeId: number): string | undefined;
  /** Persists and sends a command (validated against the shared catalogue first). */
  sendCommand(node: Node, id: string, name: CommandName, params: Json, timeoutS?: number): Promise<AgentCommand>;
  /** Asks the agent to stop a command; false when no agent is connected. */
  cancelCommand(nodeId: number, commandId: string, reason: string): boolean;
  disconnect(nodeId: number, reason: string): void;
  on: EventEmitter<AgentLinkEvents>['on'];
}
