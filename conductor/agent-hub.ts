/**
 * The conductor's gRPC endpoint for ramdisk agents: one bidi stream per agent (AgentSession).
 *
 * Lookup is by MAC (Hello.macs → ports). The first lookup of a boot issues a token (returned once,
 * in Welcome); every later connection must present it in metadata. Liveness comes from the stream
 * itself (any message counts) and is flushed to the DB in batches. Commands are persisted before
 * they are sent and are idempotent by id, so a reconnect never runs a command twice.
 */
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import {
  AgentServiceService,
  CommandStatus,
  type AgentMessage,
  type CommandResult,
  type ConductorMessage,
  type Hello,
} from '../shared/gen/ironfleet/agent/v1/agent.js';
import { COMMANDS, isCommandName, toProtoCommand, type CommandName } from '../shared/commands.js';
import { describeZodError } from '../shared/inventory.js';
import { AgentBusyError, AgentNotConnectedError, InvalidInputError, errorMessage } from '../shared/errors.js';
import type { AgentCommand, Node, Store } from './db/store.js';
import { now } from './db/store.js';
import type { ConductorConfig } from './config.js';
import type { AgentLink, AgentLinkEvents } from './agent-link.js';
import { lookupAgent } from './agent-lookup.js';
import { AgentMessages } from './agent-messages.js';
import {
  AgentSession,
  HELLO_TIMEOUT_MS,
  LOG_RATE_ALL,
  MAX_AGENT_MESSAGE_BYTES,
  MAX_LOG_LINE,
  PROGRESS_DB_INTERVAL_MS,
  RateLimit,
  STATUS_NAMES,
  grpcError,
  isTerminal,
  parseJsonObject,
  validateHello,
  type ServerStream,
} from './agent-session.js';

export { AgentSession, MAX_AGENT_MESSAGE_BYTES, validateHello };

export type AgentHubEvents = AgentLinkEvents;

export class AgentHub extends EventEmitter<AgentHubEvents> implements AgentLink {
  readonly sessions = new Map<number, AgentSession>();
  private server: grpc.Server | undefined;
  private readonly seenDirty = new Map<number, string>();
  private timers: NodeJS.Timeout[] = [];
  /** Latest progress per command id (served by the API without a DB read). */
  readonly progress = new Map<string, Record<string, unknown>>();
  /** Several conductors: where an agent whose node another conductor owns is sent, and the live endpoints. */
  routing: { redirect(node: Node): string | undefined; conductors(): string[] } | undefined;
  boundPort = 0;
  /** Messages received, by oneof case (exported as ironfleet_agent_messages_total). */
  readonly received = new Map<string, number>();
  /** Messages dropped, by reason (exported as ironfleet_agent_messages_dropped_total). */
  readonly dropped = new Map<string, number>();
  private readonly messages: AgentMessages;

  constructor(
    private readonly store: Store,
    private readonly cfg: ConductorConfig,
    private readonly log: Logger,
  ) {
    super();
    this.messages = new AgentMessages({
      store,
      log,
      emit: (event, ...args) => (this.emit as (e: string, ...a: unknown[]) => boolean)(event, ...args),
      progress: this.progress,
      dropped: this.dropped,
      logLimitAll: new RateLimit(LOG_RATE_ALL),
      seen: (nodeId, at) => void this.seenDirty.set(nodeId, at),
    });
  }

  async start(): Promise<number> {
    const server = new grpc.Server({
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.http2.min_ping_interval_without_data_ms': 5_000,
      'grpc.max_receive_message_length': MAX_AGENT_MESSAGE_BYTES,
    });
    server.addService(AgentServiceService, { connect: (call: ServerStream) => this.handle(call) });
    const creds = this.cfg.agent.tls
      ? grpc.ServerCredentials.createSsl(null, [
          { cert_chain: readFileSync(this.cfg.agent.tls.cert_file), private_key: readFileSync(this.cfg.agent.tls.key_file) },
        ])
      : grpc.ServerCredentials.createInsecure();
    const host = this.cfg.agent.host.includes(':') ? `[${this.cfg.agent.host}]` : this.cfg.agent.host;
    this.boundPort = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`${host}:${this.cfg.agent.port}`, creds, (err, port) => (err ? reject(err) : resolve(port))),
    );
    this.server = server;
    this.timers.push(setInterval(() => void this.flushSeen(), this.cfg.agent.liveness_flush_ms).unref());
    this.timers.push(setInterval(() => this.reapSilent(), Math.min(5000, this.cfg.agent.heartbeat_timeout_s * 250)).unref());
    this.log.info({ port: this.boundPort, tls: Boolean(this.cfg.agent.tls) }, 'agent endpoint listening');
    return this.boundPort;
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    for (const s of this.sessions.values()) s.end(grpc.status.UNAVAILABLE, 'conductor shutting down');
    this.sessions.clear();
    await this.flushSeen();
    const server = this.server;
    if (!server) return;
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => {
        server.forceShutdown();
        resolve();
      }, 3000);
      server.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    });
    this.server = undefined;
  }

  isConnected(nodeId: number): boolean {
    return this.sessions.has(nodeId);
  }

  session(nodeId: number): AgentSession | undefined {
    return this.sessions.get(nodeId);
  }

  bootId(nodeId: number): string | undefined {
    return this.sessions.get(nodeId)?.bootId;
  }

  connectedCount(): number {
    return this.sessions.size;
  }

  /** Persist and send a command. One command at a time per node. */
  async sendCommand(node: Node, id: string, name: CommandName, params: Record<string, unknown>, timeoutS = 0): Promise<AgentCommand> {
    // Checked against the shared catalogue before anything is persisted: a command row that cannot
    // be encoded would be left PENDING for good.
    if (!isCommandName(name)) throw new InvalidInputError(`name: unknown agent command "${String(name)}"`, 'name');
    const parsed = COMMANDS[name].params.safeParse(params);
    if (!parsed.success) throw new InvalidInputError(`params: ${describeZodError(parsed.error, 'params')}`, 'params');
    params = parsed.data;
    const session = this.sessions.get(node.id);
    if (!session) throw new AgentNotConnectedError(node.uuid);
    const open = await this.store.listCommands(node.id, { statuses: ['PENDING', 'RUNNING'] });
    if (open.length > 0) throw new AgentBusyError(node.uuid, open[0]!.id);
    const cmd = await this.store.createCommand({ id, node_id: node.id, name, params });
    session.own(id);
    session.send({ body: { $case: 'command', value: toProtoCommand(id, name, params, timeoutS) } });
    return cmd;
  }

  cancelCommand(nodeId: number, commandId: string, reason: string): boolean {
    const s = this.sessions.get(nodeId);
    if (!s) return false;
    s.send({ body: { $case: 'cancel', value: { commandId, reason } } });
    return true;
  }

  disconnect(nodeId: number, reason: string): void {
    const s = this.sessions.get(nodeId);
    if (s) {
      this.sessions.delete(nodeId);
      s.end(grpc.status.UNAVAILABLE, reason);
      this.emit('disconnected', nodeId, reason);
    }
  }

  private async flushSeen(): Promise<void> {
    if (this.seenDirty.size === 0) return;
    const batch = [...this.seenDirty].map(([id, seen]) => ({ id, seen }));
    this.seenDirty.clear();
    try {
      await this.store.setAgentSeen(batch);
    } catch (err) {
      // Put the batch back (newer sightings win) so the next flush writes it.
      for (const { id, seen } of batch) if (!this.seenDirty.has(id)) this.seenDirty.set(id, seen);
      this.log.warn({ err, nodes: batch.length }, 'failed to flush agent liveness; will retry');
    }
  }

  private reapSilent(): void {
    const limit = Date.now() - this.cfg.agent.heartbeat_timeout_s * 1000;
    for (const s of this.sessions.values()) {
      if (s.lastSeen < limit) {
        this.log.warn({ node: s.nodeUuid }, 'agent silent past heartbeat_timeout; closing stream');
        this.disconnect(s.nodeId, 'heartbeat timeout');
      }
    }
  }

  private handle(call: ServerStream): void {
    let session: AgentSession | undefined;
    let helloDone = false;
    const peer = call.getPeer();
    const helloTimer = setTimeout(() => {
      if (!helloDone) call.emit('error', grpcError(grpc.status.DEADLINE_EXCEEDED, 'no Hello received within 15 s'));
    }, HELLO_TIMEOUT_MS);
    // Messages are handled strictly in order: each waits for the previous one's DB work. A stream
    // that sends faster than that is paused (HTTP/2 flow control pushes back on the agent) once
    // a window's worth is queued, instead of queueing without bound.
    let chain: Promise<void> = Promise.resolve();
    let queued = 0;
    const maxQueued = Math.max(8, this.cfg.agent.window);

    call.on('data', (msg: AgentMessage) => {
      const kind = msg.body?.$case ?? 'empty';
      this.received.set(kind, (this.received.get(kind) ?? 0) + 1);
      if (++queued >= maxQueued && !call.isPaused()) call.pause();
      chain = chain.then(async () => {
        if (call.cancelled || session?.closed) return;
        try {
          if (!helloDone) {
            if (msg.body?.$case !== 'hello') {
              call.emit('error', grpcError(grpc.status.INVALID_ARGUMENT, 'first message must be hello'));
              return;
            }
            helloDone = true;
            clearTimeout(helloTimer);
            session = await this.onHello(call, msg.body.value, peer);
            return;
          }
          if (session) await this.messages.handle(session, msg);
        } catch (err) {
          this.log.error({ err, peer }, 'agent message handling failed');
          const s = session;
          if (s) {
            this.sessions.get(s.nodeId) === s && this.sessions.delete(s.nodeId);
            s.end(grpc.status.INTERNAL, `conductor error: ${errorMessage(err)}`);
          } else call.emit('error', grpcError(grpc.status.INTERNAL, `conductor error: ${errorMessage(err)}`));
        } finally {
          if (--queued < maxQueued >> 1 && call.isPaused()) call.resume();
        }
      });
    });
    const cleanup = (reason: string) => {
      clearTimeout(helloTimer);
      if (session) this.endSession(session);
      if (session && this.sessions.get(session.nodeId) === session) {
        this.sessions.delete(session.nodeId);
        session.closed = true;
        this.seenDirty.set(session.nodeId, new Date(session.lastSeen).toISOString());
        this.log.info({ node: session.nodeUuid, reason }, 'agent disconnected');
        this.emit('disconnected', session.nodeId, reason);
      }
    };
    call.on('end', () => {
      cleanup('stream ended by agent');
      if (session && !session.closed) session.end(grpc.status.OK, '');
      else if (!session) call.end();
    });
    call.on('cancelled', () => cleanup('stream cancelled'));
    call.on('error', (err) => cleanup(`stream error: ${errorMessage(err)}`));
  }

  private async onHello(call: ServerStream, hello: Hello, peer: string): Promise<AgentSession | undefined> {
    const found = await lookupAgent({ store: this.store, cfg: this.cfg, log: this.log, redirect: this.routing?.redirect }, call, hello, peer);
    if (!found) return undefined;
    const { node, issued } = found;
    if (found.redirect) {
      this.log.info({ node: node.uuid, owner: found.redirect, peer }, 'agent redirected to the conductor that owns its node');
      call.write({ body: { $case: 'welcome', value: { nodeUuid: node.uuid, nodeName: node.name ?? '', agentToken: '', conductor: this.cfg.host, resendResults: [], redirectTo: found.redirect, conductors: this.routing?.conductors() ?? [] } } });
      call.end();
      return undefined;
    }

    const previous = this.sessions.get(node.id);
    if (previous) {
      this.sessions.delete(node.id);
      previous.end(grpc.status.ABORTED, 'superseded by a newer connection of the same node');
    }
    const session = new AgentSession(node.id, node.uuid, hello.bootId, hello.agentVersion, call, this.cfg.agent.window);
    this.sessions.set(node.id, session);

    // Reconcile commands the conductor still waits on with what the agent knows.
    const open = await this.store.listCommands(node.id, { statuses: ['PENDING', 'RUNNING'] });
    const known = new Map(hello.commands.map((c) => [c.commandId, c]));
    const resend: string[] = [];
    const redo: AgentCommand[] = [];
    for (const c of open) {
      session.own(c.id);
      const k = known.get(c.id);
      if (!k) redo.push(c);
      else if (isTerminal(k.status)) resend.push(c.id);
      else session.busyCommandId = c.id;
    }
    session.send({
      body: {
        $case: 'welcome',
        value: {
          nodeUuid: node.uuid,
          nodeName: node.name ?? '',
          agentToken: issued,
          conductor: this.cfg.host,
          resendResults: resend,
          redirectTo: '',
          conductors: this.routing?.conductors() ?? [],
          settings: {
            heartbeatIntervalS: this.cfg.agent.heartbeat_interval_s,
            window: this.cfg.agent.window,
            progressIntervalMs: this.cfg.agent.progress_interval_ms,
            md5Allowed: this.cfg.agent.md5_allowed,
            wantInventory: true,
          },
        },
      },
    });
    for (const c of redo) {
      // Never reached the agent (or the agent's journal was lost with a reboot): send again, same id.
      const { name, params } = c;
      session.send({ body: { $case: 'command', value: toProtoCommand(c.id, name as CommandName, params) } });
    }
    this.seenDirty.set(node.id, now());
    this.log.info({ node: node.uuid, boot_id: hello.bootId, agent_version: hello.agentVersion, token_issued: Boolean(issued), peer }, 'agent connected');
    this.emit('connected', node, session);
    return session;
  }

  /** A stream ended: forget what only it could report on, and say how much it had dropped. */
  private endSession(s: AgentSession): void {
    for (const id of s.owned) if (this.sessions.get(s.nodeId) === s || !this.sessions.has(s.nodeId)) this.progress.delete(id);
    if (s.dropped.size) this.log.warn({ node: s.nodeUuid, dropped: Object.fromEntries(s.dropped) }, 'agent stream ended; messages it had dropped');
    s.dropped.clear();
  }
}
