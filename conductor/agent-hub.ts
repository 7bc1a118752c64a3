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
import { AGENT_TOKEN_METADATA, COMMANDS, isCommandName, toProtoCommand, type CommandName } from '../shared/commands.js';
import { UnsafeJsonError, parseUntrustedJson } from '../shared/safe-json.js';
import { inventorySchema, describeZodError, normaliseMac } from '../shared/inventory.js';
import { AgentBusyError, AgentNotConnectedError, InvalidInputError, errorMessage } from '../shared/errors.js';
import type { AgentCommand, Node, Store } from './db/store.js';
import { now } from './db/store.js';
import { agentTokenMatches, hashAgentToken, newAgentToken } from './agent-token.js';
import { agentLookupVerdict } from './states.js';
import type { ConductorConfig } from './config.js';
import type { AgentLink, AgentLinkEvents } from './agent-link.js';

const MAC_RE = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/;
const HELLO_TIMEOUT_MS = 15_000;
/**
 * The largest legitimate agent message is an inventory (+ plugin data) of a big server: a few
 * hundred disks and NICs are a few hundred KiB of JSON. 4 MiB leaves room for that and bounds
 * what one message can make the conductor buffer and parse.
 */
const MAX_JSON_BYTES = 4 * 1024 * 1024;
export const MAX_AGENT_MESSAGE_BYTES = MAX_JSON_BYTES + 64 * 1024;
const MAX_LOG_LINE = 8 * 1024;
const PROGRESS_DB_INTERVAL_MS = 1000;
/** Per stream: log lines and progress messages per second (sustained) and burst; beyond = dropped + counted. */
const LOG_RATE = { perSecond: 100, burst: 500 };
/** All streams together: agent log lines written per second (many rogue streams must not flood the log either). */
const LOG_RATE_ALL = { perSecond: 1000, burst: 5000 };
const PROGRESS_RATE = { perSecond: 50, burst: 200 };
/** Commands a session may report on at once (the conductor runs one per node; hello carries ≤ 1000). */
const MAX_OWNED_COMMANDS = 1024;

/** Token bucket: `take()` is false once the burst is spent faster than the rate refills it. */
class RateLimit {
  private tokens: number;
  private at = Date.now();
  constructor(private readonly r: { perSecond: number; burst: number }) {
    this.tokens = r.burst;
  }
  take(): boolean {
    const t = Date.now();
    this.tokens = Math.min(this.r.burst, this.tokens + ((t - this.at) / 1000) * this.r.perSecond);
    this.at = t;
    if (this.tokens < 1) return false;
    this.tokens--;
    return true;
  }
}

type ServerStream = grpc.ServerDuplexStream<AgentMessage, ConductorMessage>;

export type AgentHubEvents = AgentLinkEvents;

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
    v = parseUntrustedJson(text);
  } catch (err) {
    throw new Error(err instanceof UnsafeJsonError ? `${field}: ${err.message}` : `${field}: not valid JSON`);
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
  /**
   * Command ids this stream may report on: the node's open commands at Hello and every command
   * sent since. Anything else is a made-up id — dropped before any DB work or log line.
   */
  readonly owned = new Set<string>();
  readonly logLimit = new RateLimit(LOG_RATE);
  readonly progressLimit = new RateLimit(PROGRESS_RATE);
  /** Dropped messages of this stream, by reason (warned once per reason, summed at the end). */
  readonly dropped = new Map<string, number>();
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

  own(commandId: string): void {
    if (this.owned.size >= MAX_OWNED_COMMANDS) this.owned.delete(this.owned.values().next().value!);
    this.owned.add(commandId);
  }

  shouldWriteProgress(commandId: string): boolean {
    const t = Date.now();
    const last = this.lastProgressWrite.get(commandId) ?? 0;
    if (t - last < PROGRESS_DB_INTERVAL_MS) return false;
    this.lastProgressWrite.set(commandId, t);
    return true;
  }

  forget(commandId: string): void {
    this.owned.delete(commandId);
    this.lastProgressWrite.delete(commandId);
  }

  end(code: grpc.status, details: string): void {
    if (this.closed) return;
    this.closed = true;
    if (this.ackTimer) clearTimeout(this.ackTimer);
    if (code === grpc.status.OK) this.call.end();
    else this.call.emit('error', grpcError(code, details));
  }
}

export class AgentHub extends EventEmitter<AgentHubEvents> implements AgentLink {
  readonly sessions = new Map<number, AgentSession>();
  private server: grpc.Server | undefined;
  private readonly seenDirty = new Map<number, string>();
  private timers: NodeJS.Timeout[] = [];
  /** Latest progress per command id (served by the API without a DB read). */
  readonly progress = new Map<string, Record<string, unknown>>();
  boundPort = 0;
  /** Messages received, by oneof case (exported as ironfleet_agent_messages_total). */
  readonly received = new Map<string, number>();
  /** Messages dropped, by reason (exported as ironfleet_agent_messages_dropped_total). */
  readonly dropped = new Map<string, number>();
  private readonly logLimitAll = new RateLimit(LOG_RATE_ALL);

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
          if (session) await this.onMessage(session, msg);
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
    const verdict = agentLookupVerdict(node.provision_state, this.cfg.conductor.fast_track);
    if (verdict === 'refuse' || (verdict === 'reconnect-only' && !node.agent_token_hash)) {
      const why =
        verdict === 'refuse'
          ? `node ${node.uuid} is in provision state "${node.provision_state}", which does not accept agent lookups${this.cfg.conductor.fast_track ? '' : ' (fast-track is off)'}`
          : `node ${node.uuid} is in provision state "${node.provision_state}": only an agent already holding this boot's token may reconnect; no token is issued there`;
      this.log.warn({ peer, node: node.uuid, state: node.provision_state }, 'agent lookup refused');
      call.emit('error', grpcError(grpc.status.FAILED_PRECONDITION, why));
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
        this.progress.set(p.commandId, doc);
        if (s.shouldWriteProgress(p.commandId)) await this.updateOwnedCommand(s, p.commandId, { progress: doc });
        return;
      }
      case 'commandResult':
        if (!s.owned.has(body.value.commandId)) return this.drop(s, 'unknown_command', body.value.commandId);
        await this.onResult(s, body.value);
        return;
      case 'log': {
        s.noteWindowed(msg.seq);
        if (!s.logLimit.take() || !this.logLimitAll.take()) return this.drop(s, 'log_rate');
        const l = body.value;
        const level = ['debug', 'info', 'warn', 'error'].includes(l.level) ? (l.level as 'info') : 'info';
        this.log[level]({ node: s.nodeUuid, source: 'agent', command_id: l.commandId.slice(0, 64) || undefined }, l.message.slice(0, MAX_LOG_LINE));
        return;
      }
    }
  }

  /** Counts a dropped message; the first of each reason per stream is logged, the rest summed at its end. */
  private drop(s: AgentSession, reason: string, commandId?: string): void {
    this.dropped.set(reason, (this.dropped.get(reason) ?? 0) + 1);
    const n = (s.dropped.get(reason) ?? 0) + 1;
    s.dropped.set(reason, n);
    if (n === 1) this.log.warn({ node: s.nodeUuid, reason, command_id: commandId?.slice(0, 64) }, 'agent message dropped (further drops of this kind on this stream are counted, not logged)');
  }

  /** A stream ended: forget what only it could report on, and say how much it had dropped. */
  private endSession(s: AgentSession): void {
    for (const id of s.owned) if (this.sessions.get(s.nodeId) === s || !this.sessions.has(s.nodeId)) this.progress.delete(id);
    if (s.dropped.size) this.log.warn({ node: s.nodeUuid, dropped: Object.fromEntries(s.dropped) }, 'agent stream ended; messages it had dropped');
    s.dropped.clear();
  }

  private async updateOwnedCommand(s: AgentSession, id: string, patch: Parameters<Store['updateCommand']>[1]): Promise<AgentCommand | undefined> {
    const cmd = await this.store.getCommand(id);
    if (!cmd || cmd.node_id !== s.nodeId) {
      this.drop(s, 'unknown_command', id);
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
    s.forget(r.commandId);
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
