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
import { AGENT_TOKEN_METADATA, toProtoCommand, type CommandName } from '../shared/commands.js';
import { inventorySchema, describeZodError, normaliseMac } from '../shared/inventory.js';
import { AgentBusyError, AgentNotConnectedError, errorMessage } from '../shared/errors.js';
import type { AgentCommand, Node, Store } from './db/store.js';
import { now } from './db/store.js';
import { agentTokenMatches, hashAgentToken, newAgentToken } from './agent-token.js';
import { FASTTRACK_LOOKUP_ALLOWED_STATES, isProvisionState } from './states.js';
import type { ConductorConfig } from './config.js';

const MAC_RE = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/;
const HELLO_TIMEOUT_MS = 15_000;
const MAX_JSON_BYTES = 4 * 1024 * 1024;
const MAX_LOG_LINE = 8 * 1024;
const PROGRESS_DB_INTERVAL_MS = 1000;

type ServerStream = grpc.ServerDuplexStream<AgentMessage, ConductorMessage>;

export interface AgentHubEvents {
  connected: [node: Node, session: AgentSession];
  disconnected: [nodeId: number, reason: string];
  inventory: [node: Node];
  'command-finished': [cmd: AgentCommand];
}

const STATUS_NAMES: Record<number, AgentCommand['status']> = {
  [CommandStatus.COMMAND_STATUS_RUNNING]: 'RUNNING',
  [CommandStatus.COMMAND_STATUS_SUCCEEDED]: 'SUCCEEDED',
  [CommandStatus.COMMAND_STATUS_FAILED]: 'FAILED',
  [CommandStatus.COMMAND_STATUS_CANCELLED]: 'CANCELLED',
};

function isTerminal(s: CommandStatus): boolean {
  return s === CommandStatus.COMMAND_STATUS_SUCCEEDED || s === CommandStatus.COMMAND_STATUS_FAILED || s === CommandStatus.COMMAND_STATUS_CANCELLED;
}

function grpcError(code: grpc.status, details: string): Partial<grpc.StatusObject> & Error {
  return Object.assign(new Error(details), { code, details, metadata: new grpc.Metadata() });
}

function parseJsonObject(text: string, field: string): Record<string, unknown> {
  if (text === '') return {};
  if (text.length > MAX_JSON_BYTES) throw new Error(`${field}: document larger than ${MAX_JSON_BYTES} bytes`);
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new Error(`${field}: not valid JSON`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${field}: must be a JSON object`);
  return v as Record<string, unknown>;
}

/** Validates Hello; returns an error message naming the field, or undefined. */
export function validateHello(h: Hello): string | undefined {
  if (h.macs.length === 0) return 'hello.macs: at least one MAC address is required';
  if (h.macs.length > 64) return 'hello.macs: too many MAC addresses (max 64)';
  for (const [i, m] of h.macs.entries()) if (!MAC_RE.test(normaliseMac(m))) return `hello.macs.${i}: "${m.slice(0, 40)}" is not a MAC address`;
  if (!h.bootId || h.bootId.length > 64) return 'hello.boot_id: required, at most 64 characters';
  if (!h.agentVersion || h.agentVersion.length > 64) return 'hello.agent_version: required, at most 64 characters';
  if (h.commands.length > 1000) return 'hello.commands: too many entries (max 1000)';
  return undefined;
}

export class AgentSession {
  lastSeen = Date.now();
  busyCommandId = '';
  private recvSeq = 0;
  private ackedSeq = 0;
  private ackTimer: NodeJS.Timeout | undefined;
  private readonly pings = new Map<number, { sentAt: bigint; resolve: (rttMs: number) => void }>();
  private pingNonce = 0;
  private readonly lastProgressWrite = new Map<string, number>();
  closed = false;

  constructor(
    readonly nodeId: number,
    readonly nodeUuid: string,
    readonly bootId: string,
    readonly agentVersion: string,
    readonly call: ServerStream,
    private readonly window: number,
  ) {}

  send(msg: ConductorMessage): void {
    if (!this.closed) this.call.write(msg);
  }

  /** Counts a windowed message and acknowledges in batches of half a window (or after 100 ms). */
  noteWindowed(seq: number): void {
    this.recvSeq = Math.max(this.recvSeq, seq);
    if (this.recvSeq - this.ackedSeq >= Math.max(1, this.window >> 1)) this.flushAck();
    else if (!this.ackTimer) this.ackTimer = setTimeout(() => this.flushAck(), 100);
  }

  flushAck(): void {
    if (this.ackTimer) clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    if (this.recvSeq > this.ackedSeq) {
      this.ackedSeq = this.recvSeq;
      this.send({ body: { $case: 'ack', value: { upToSeq: this.recvSeq } } });
    }
  }

  ping(timeoutMs = 5000): Promise<number> {
    const nonce = ++this.pingNonce;
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.pings.delete(nonce);
        reject(new Error('ping timeout'));
      }, timeoutMs);
      this.pings.set(nonce, {
        sentAt: process.hrtime.bigint(),
        resolve: (rtt) => {
          clearTimeout(t);
          resolve(rtt);
        },
      });
      this.send({ body: { $case: 'ping', value: { nonce } } });
    });
  }

  pong(nonce: number): void {
    const p = this.pings.get(nonce);
    if (!p) return;
    this.pings.delete(nonce);
    p.resolve(Number(process.hrtime.bigint() - p.sentAt) / 1e6);
  }

  shouldWriteProgress(commandId: string): boolean {
    const t = Date.now();
    const last = this.lastProgressWrite.get(commandId) ?? 0;
    if (t - last < PROGRESS_DB_INTERVAL_MS) return false;
    this.lastProgressWrite.set(commandId, t);
    return true;
  }

  end(code: grpc.status, details: string): void {
    if (this.closed) return;
    this.closed = true;
    if (this.ackTimer) clearTimeout(this.ackTimer);
    if (code === grpc.status.OK) this.call.end();
    else this.call.emit('error', grpcError(code, details));
  }
}

export class AgentHub extends EventEmitter<AgentHubEvents> {
  readonly sessions = new Map<number, AgentSession>();
  private server: grpc.Server | undefined;
  private readonly seenDirty = new Map<number, string>();
  private timers: NodeJS.Timeout[] = [];
  /** Latest progress per command id (served by the API without a DB read). */
  readonly progress = new Map<string, Record<string, unknown>>();
  boundPort = 0;
  /** Messages received, by oneof case (exported as ironfleet_agent_messages_total). */
  readonly received = new Map<string, number>();

  constructor(
    private readonly store: Store,
    private readonly cfg: ConductorConfig,
    private readonly log: Logger,
  ) {
    super();
  }

  async start(): Promise<number> {
    const server = new grpc.Server({
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.http2.min_ping_interval_without_data_ms': 5_000,
      'grpc.max_receive_message_length': 16 * 1024 * 1024,
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

  /** Persist and send a command. One command at a time per node. */
  async sendCommand(node: Node, id: string, name: CommandName, params: Record<string, unknown>, timeoutS = 0): Promise<AgentCommand> {
    const session = this.sessions.get(node.id);
    if (!session) throw new AgentNotConnectedError(node.uuid);
    const open = await this.store.listCommands(node.id, { statuses: ['PENDING', 'RUNNING'] });
    if (open.length > 0) throw new AgentBusyError(node.uuid, open[0]!.id);
    const cmd = await this.store.createCommand({ id, node_id: node.id, name, params });
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
      this.log.warn({ err }, 'failed to flush agent liveness');
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
    // Messages are handled strictly in order: each waits for the previous one's DB work.
    let chain: Promise<void> = Promise.resolve();

    call.on('data', (msg: AgentMessage) => {
      const kind = msg.body?.$case ?? 'empty';
      this.received.set(kind, (this.received.get(kind) ?? 0) + 1);
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
          if (session) await this.onMessage(session, msg);
        } catch (err) {
          this.log.error({ err, peer }, 'agent message handling failed');
          const s = session;
          if (s) {
            this.sessions.get(s.nodeId) === s && this.sessions.delete(s.nodeId);
            s.end(grpc.status.INTERNAL, `conductor error: ${errorMessage(err)}`);
          } else call.emit('error', grpcError(grpc.status.INTERNAL, `conductor error: ${errorMessage(err)}`));
        }
      });
    });
    const cleanup = (reason: string) => {
      clearTimeout(helloTimer);
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
    const bad = validateHello(hello);
    if (bad) {
      this.log.warn({ peer, reason: bad }, 'agent hello rejected');
      call.emit('error', grpcError(grpc.status.INVALID_ARGUMENT, bad));
      return undefined;
    }
    const macs = hello.macs.map(normaliseMac);
    let node: Node | undefined;
    try {
      node = await this.store.findNodeByMacs(macs);
    } catch (err) {
      call.emit('error', grpcError(grpc.status.FAILED_PRECONDITION, errorMessage(err)));
      return undefined;
    }
    if (!node || (hello.nodeUuid && hello.nodeUuid !== node.uuid)) {
      this.log.info({ peer, macs }, 'agent lookup found no node');
      call.emit('error', grpcError(grpc.status.NOT_FOUND, `no node has a port with any of the MAC addresses ${macs.join(', ')}`));
      return undefined;
    }
    if (isProvisionState(node.provision_state) && !FASTTRACK_LOOKUP_ALLOWED_STATES.has(node.provision_state)) {
      call.emit(
        'error',
        grpcError(grpc.status.FAILED_PRECONDITION, `node ${node.uuid} is in provision state "${node.provision_state}", which does not accept agent lookups`),
      );
      return undefined;
    }
    if (node.driver_internal_info.retired_agent_boot_id === hello.bootId) {
      // A power action ended this boot; the agent reconnected in the moment before it landed.
      call.emit('error', grpcError(grpc.status.FAILED_PRECONDITION, `boot ${hello.bootId} of node ${node.uuid} was ended by a power action; only a new boot is accepted`));
      return undefined;
    }
    this.log.debug({ peer, metadata: call.metadata.getMap(), hello }, 'agent hello');
    const presented = call.metadata.get(AGENT_TOKEN_METADATA)[0];
    const presentedToken = typeof presented === 'string' ? presented : presented?.toString('utf8');
    let issued = '';
    if (node.agent_token_hash) {
      if (!agentTokenMatches(presentedToken, node.agent_token_hash)) {
        this.log.warn({ node: node.uuid, peer, presented: Boolean(presentedToken) }, 'agent token rejected');
        call.emit('error', grpcError(grpc.status.UNAUTHENTICATED, presentedToken ? 'invalid agent token' : 'agent token required: this node already issued one for the current boot'));
        return undefined;
      }
    } else {
      issued = newAgentToken();
      if (!(await this.store.setAgentToken(node.id, hashAgentToken(issued), hello.bootId))) {
        call.emit('error', grpcError(grpc.status.ABORTED, 'concurrent lookup issued the token first; reconnect with it'));
        return undefined;
      }
      node = (await this.store.getNodeById(node.id))!;
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

  private async onMessage(s: AgentSession, msg: AgentMessage): Promise<void> {
    s.lastSeen = Date.now();
    this.seenDirty.set(s.nodeId, new Date(s.lastSeen).toISOString());
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
          this.log.warn({ node: s.nodeUuid, why }, 'invalid inventory from agent');
          s.end(grpc.status.INVALID_ARGUMENT, why);
          return;
        }
        await this.store.putInventory(s.nodeId, parsed.data, plugin);
        const node = await this.store.getNodeById(s.nodeId);
        if (node) this.emit('inventory', node);
        return;
      }
      case 'commandAccepted': {
        const { commandId, status } = body.value;
        if (status === CommandStatus.COMMAND_STATUS_RUNNING) {
          await this.updateOwnedCommand(s, commandId, { status: 'RUNNING' });
          s.busyCommandId = commandId;
        }
        return;
      }
      case 'commandProgress': {
        s.noteWindowed(msg.seq);
        const p = body.value;
        const doc = {
          percent: p.percent,
          stage: p.stage,
          bytes_done: p.bytesDone,
          bytes_total: p.bytesTotal,
          rate_bytes_per_s: p.rateBytesPerS,
          eta_s: p.etaS,
          message: p.message.slice(0, 1024),
          updated_at: now(),
        };
        this.progress.set(p.commandId, doc);
        if (s.shouldWriteProgress(p.commandId)) await this.updateOwnedCommand(s, p.commandId, { progress: doc });
        return;
      }
      case 'commandResult':
        await this.onResult(s, body.value);
        return;
      case 'log': {
        s.noteWindowed(msg.seq);
        const l = body.value;
        const level = ['debug', 'info', 'warn', 'error'].includes(l.level) ? (l.level as 'info') : 'info';
        this.log[level]({ node: s.nodeUuid, source: 'agent', command_id: l.commandId || undefined }, l.message.slice(0, MAX_LOG_LINE));
        return;
      }
    }
  }

  private async updateOwnedCommand(s: AgentSession, id: string, patch: Parameters<Store['updateCommand']>[1]): Promise<AgentCommand | undefined> {
    const cmd = await this.store.getCommand(id);
    if (!cmd || cmd.node_id !== s.nodeId) {
      this.log.warn({ node: s.nodeUuid, command_id: id }, 'agent reported a command this node does not own; ignored');
      return undefined;
    }
    if (!(await this.store.updateCommand(id, patch))) return undefined;
    return this.store.getCommand(id);
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
    const last = this.progress.get(r.commandId);
    this.progress.delete(r.commandId);
    if (s.busyCommandId === r.commandId) s.busyCommandId = '';
    const updated = await this.updateOwnedCommand(s, r.commandId, {
      status,
      result: result ?? {},
      error,
      ...(last ? { progress: last } : {}),
    });
    if (updated) {
      this.log.info({ node: s.nodeUuid, command_id: r.commandId, command: updated.name, status, duration_ms: r.durationMs, error_code: error?.code }, 'agent command finished');
      this.emit('command-finished', updated);
    }
  }
}
