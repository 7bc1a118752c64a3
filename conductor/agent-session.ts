/**
 * One agent's stream as the conductor sees it (AgentSession): its boot, the command ids it may
 * report on, the ack window of its sequenced messages, pings, and the per-stream rate limits — plus
 * the message limits and validation every stream shares. The hub (agent-hub.ts) keeps the sessions.
 */
import * as grpc from '@grpc/grpc-js';
import { CommandStatus, type AgentMessage, type ConductorMessage, type Hello } from '../shared/gen/ironfleet/agent/v1/agent.js';
import { UnsafeJsonError, parseUntrustedJson } from '../shared/safe-json.js';
import { normaliseMac } from '../shared/inventory.js';
import type { AgentCommand } from './db/store.js';

const MAC_RE = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/;
export const HELLO_TIMEOUT_MS = 15_000;
/**
 * The largest legitimate agent message is an inventory (+ plugin data) of a big server: a few
 * hundred disks and NICs are a few hundred KiB of JSON. 4 MiB leaves room for that and bounds
 * what one message can make the conductor buffer and parse.
 */
export const MAX_JSON_BYTES = 4 * 1024 * 1024;
export const MAX_AGENT_MESSAGE_BYTES = MAX_JSON_BYTES + 64 * 1024;
export const MAX_LOG_LINE = 8 * 1024;
export const PROGRESS_DB_INTERVAL_MS = 1000;
/** Per stream: log lines and progress messages per second (sustained) and burst; beyond = dropped + counted. */
export const LOG_RATE = { perSecond: 100, burst: 500 };
/** All streams together: agent log lines written per second (many rogue streams must not flood the log either). */
export const LOG_RATE_ALL = { perSecond: 1000, burst: 5000 };
export const PROGRESS_RATE = { perSecond: 50, burst: 200 };
/** Commands a session may report on at once (the conductor runs one per node; hello carries ≤ 1000). */
export const MAX_OWNED_COMMANDS = 1024;

/** Token bucket: `take()` is false once the burst is spent faster than the rate refills it. */
export class RateLimit {
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

export type ServerStream = grpc.ServerDuplexStream<AgentMessage, ConductorMessage>;


export const STATUS_NAMES: Record<number, AgentCommand['status']> = {
  [CommandStatus.COMMAND_STATUS_RUNNING]: 'RUNNING',
  [CommandStatus.COMMAND_STATUS_SUCCEEDED]: 'SUCCEEDED',
  [CommandStatus.COMMAND_STATUS_FAILED]: 'FAILED',
  [CommandStatus.COMMAND_STATUS_CANCELLED]: 'CANCELLED',
};

export function isTerminal(s: CommandStatus): boolean {
  return s === CommandStatus.COMMAND_STATUS_SUCCEEDED || s === CommandStatus.COMMAND_STATUS_FAILED || s === CommandStatus.COMMAND_STATUS_CANCELLED;
}

export function grpcError(code: grpc.status, details: string): Partial<grpc.StatusObject> & Error {
  return Object.assign(new Error(details), { code, details, metadata: new grpc.Metadata() });
}

export function parseJsonObject(text: string, field: string): Record<string, unknown> {
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
