/**
 * What an agent's stream says after its Hello, handled in order per stream: heartbeats and pongs,
 * inventory (validated as IPA inventory), command acceptance, progress and results, log lines.
 * Ownership is checked first — a command id this stream was not sent costs no memory, no DB read
 * and no log line — and logs and progress are rate-limited per stream (drops counted, not logged).
 */
import { channels, publish, type AgentProgressMessage } from './events.js';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { CommandStatus, type AgentMessage, type CommandResult } from '../shared/gen/ironfleet/agent/v1/agent.js';
import { inventorySchema, describeZodError } from '../shared/inventory.js';
import { errorMessage } from '../shared/errors.js';
import { now, type AgentCommand, type Store } from './db/store.js';
import type { AgentLinkEvents } from './agent-link.js';
import { MAX_LOG_LINE, STATUS_NAMES, parseJsonObject, type AgentSession, type RateLimit } from './agent-session.js';

export interface AgentMessagesDeps {
  store: Store;
  log: Logger;
  emit<E extends 'inventory' | 'command-finished'>(event: E, ...args: AgentLinkEvents[E]): unknown;
  /** Latest progress per command id (the API serves it without a DB read). */
  progress: Map<string, Record<string, unknown>>;
  /** Dropped messages by reason, all streams. */
  dropped: Map<string, number>;
  /** Log lines of all streams together. */
  logLimitAll: RateLimit;
  /** The stream showed life (liveness is flushed to the DB in batches). */
  seen(nodeId: number, at: string): void;
}

export class AgentMessages {
  constructor(private readonly d: AgentMessagesDeps) {}

  async handle(s: AgentSession, msg: AgentMessage): Promise<void> {
    s.lastSeen = Date.now();
    this.d.seen(s.nodeId, new Date(s.lastSeen).toISOString());
    const body = msg.body;
    if (!body) return;
    switch (body.$case) {
      case 'heartbeat':
        s.busyCommandId = body.value.busyCommandId;
        return;
      case 'pong':
        s.pong(body.value.nonce);
        return;
      case 'hello':
        s.end(grpc.status.INVALID_ARGUMENT, 'hello may only be sent once per stream');
        return;
      case 'inventory': {
        let inv: Record<string, unknown>;
        let plugin: Record<string, unknown>;
        try {
          inv = parseJsonObject(body.value.inventoryJson, 'inventory.inventory_json');
          plugin = parseJsonObject(body.value.pluginDataJson, 'inventory.plugin_data_json');
        } catch (err) {
          s.end(grpc.status.INVALID_ARGUMENT, errorMessage(err));
          return;
        }
        const parsed = inventorySchema.safeParse(inv);
        if (!parsed.success) {
          const why = `inventory rejected: ${describeZodError(parsed.error, 'inventory')}`;
          this.d.log.warn({ node: s.nodeUuid, why }, 'invalid inventory from agent');
          s.end(grpc.status.INVALID_ARGUMENT, why);
          return;
        }
        await this.d.store.putInventory(s.nodeId, parsed.data, plugin);
        const node = await this.d.store.getNodeById(s.nodeId);
        if (node) this.d.emit('inventory', node);
        return;
      }
      case 'commandAccepted': {
        const { commandId, status } = body.value;
        if (!s.owned.has(commandId)) return this.drop(s, 'unknown_command', commandId);
        if (status === CommandStatus.COMMAND_STATUS_RUNNING) {
          await this.updateOwnedCommand(s, commandId, { status: 'RUNNING' });
          s.busyCommandId = commandId;
        }
        return;
      }
      case 'commandProgress': {
        s.noteWindowed(msg.seq);
        const p = body.value;
        // Ownership first: a made-up id must cost no memory, no DB read and no log line.
        if (!s.owned.has(p.commandId)) return this.drop(s, 'unknown_command', p.commandId);
        if (!s.progressLimit.take()) return this.drop(s, 'progress_rate');
        const doc = {
          percent: p.percent,
          stage: p.stage.slice(0, 64),
          bytes_done: p.bytesDone,
          bytes_total: p.bytesTotal,
          rate_bytes_per_s: p.rateBytesPerS,
          eta_s: p.etaS,
          message: p.message.slice(0, 1024),
          updated_at: now(),
        };
        this.d.progress.set(p.commandId, doc);
        publish<AgentProgressMessage>(channels.agentProgress, { nodeId: s.nodeId, commandId: p.commandId, progress: doc });
        if (s.shouldWriteProgress(p.commandId)) await this.updateOwnedCommand(s, p.commandId, { progress: doc });
        return;
      }
      case 'commandResult':
        if (!s.owned.has(body.value.commandId)) return this.drop(s, 'unknown_command', body.value.commandId);
        await this.onResult(s, body.value);
        return;
      case 'log': {
        s.noteWindowed(msg.seq);
        if (!s.logLimit.take() || !this.d.logLimitAll.take()) return this.drop(s, 'log_rate');
        const l = body.value;
        const level = ['debug', 'info', 'warn', 'error'].includes(l.level) ? (l.level as 'info') : 'info';
        this.d.log[level]({ node: s.nodeUuid, source: 'agent', command_id: l.commandId.slice(0, 64) || undefined }, l.message.slice(0, MAX_LOG_LINE));
        return;
      }
    }
  }

  /** Counts a dropped message; the first of each reason per stream is logged, the rest summed at its end. */
  drop(s: AgentSession, reason: string, commandId?: string): void {
    this.d.dropped.set(reason, (this.d.dropped.get(reason) ?? 0) + 1);
    const n = (s.dropped.get(reason) ?? 0) + 1;
    s.dropped.set(reason, n);
    if (n === 1) this.d.log.warn({ node: s.nodeUuid, reason, command_id: commandId?.slice(0, 64) }, 'agent message dropped (further drops of this kind on this stream are counted, not logged)');
  }

  private async updateOwnedCommand(s: AgentSession, id: string, patch: Parameters<Store['updateCommand']>[1]): Promise<AgentCommand | undefined> {
    const cmd = await this.d.store.getCommand(id);
    if (!cmd || cmd.node_id !== s.nodeId) {
      this.drop(s, 'unknown_command', id);
      return undefined;
    }
    if (!(await this.d.store.updateCommand(id, patch))) return undefined;
    return this.d.store.getCommand(id);
  }

  private async onResult(s: AgentSession, r: CommandResult): Promise<void> {
    const status = STATUS_NAMES[r.status];
    if (!status || status === 'RUNNING') {
      s.end(grpc.status.INVALID_ARGUMENT, `command_result.status: ${r.status} is not a final status`);
      return;
    }
    let result: Record<string, unknown> | null = null;
    try {
      result = r.resultJson ? parseJsonObject(r.resultJson, 'command_result.result_json') : null;
    } catch (err) {
      s.end(grpc.status.INVALID_ARGUMENT, errorMessage(err));
      return;
    }
    const error = r.error && r.error.code ? { code: r.error.code.slice(0, 64), message: r.error.message.slice(0, 4096), details: r.error.details.slice(0, 16384) } : null;
    const last = this.d.progress.get(r.commandId);
    this.d.progress.delete(r.commandId);
    s.forget(r.commandId);
    if (s.busyCommandId === r.commandId) s.busyCommandId = '';
    const updated = await this.updateOwnedCommand(s, r.commandId, {
      status,
      result: result ?? {},
      error,
      ...(last ? { progress: last } : {}),
    });
    if (updated) {
      this.d.log.info({ node: s.nodeUuid, command_id: r.commandId, command: updated.name, status, duration_ms: r.durationMs, error_code: error?.code }, 'agent command finished');
      this.d.emit('command-finished', updated);
    }
  }
}
