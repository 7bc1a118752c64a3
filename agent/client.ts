/**
 * The ramdisk agent's connection to the conductor: one bidi stream, re-dialled with backoff and
 * jitter whenever it drops. Hello → Welcome (token kept in the journal), inventory, heartbeats,
 * one command at a time with progress, and an application-level window for progress/log traffic
 * so a slow conductor never makes the agent buffer without bound.
 */
import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import {
  AgentServiceClient,
  CommandStatus,
  type AgentMessage,
  type AgentSettings,
  type Command,
  type ConductorMessage,
} from '../shared/gen/ironfleet/agent/v1/agent.js';
import { AGENT_TOKEN_METADATA, AGENT_VERSION, COMMAND_NAMES, COMMANDS, fromProtoCommand } from '../shared/commands.js';
import { describeZodError } from '../shared/inventory.js';
import { Backoff, sleep } from '../shared/backoff.js';
import { isLoopbackHost } from '../shared/net.js';
import { errorMessage } from '../shared/errors.js';
import type { HardwareProvider } from './hardware.js';
import { Journal, type JournalEntry } from './journal.js';
import type { FirmwareManager } from './firmware.js';
import { CommandFailure, HANDLERS, type CommandHandler, type Progress } from './commands/registry.js';

export interface AgentClientOptions {
  /**
   * host:port of the conductor's agent endpoint, or several comma-separated (several conductors):
   * tried in turn; the one reached redirects the agent to its node's owner.
   */
  conductor: string;
  hardware: HardwareProvider;
  log: Logger;
  /** State directory for the journal; undefined = in memory. */
  stateDir?: string;
  /** PEM CA to verify the conductor; undefined = plaintext. */
  caPem?: Buffer;
  /** Plaintext to a non-loopback conductor allowed (also for addresses learned from conductors). */
  insecure?: boolean;
  /** Override handlers (tests and simulated agents). */
  handlers?: Partial<Record<string, CommandHandler>>;
  backoff?: { initialMs?: number; maxMs?: number };
  /** Share one channel among many simulated agents (benchmarks); default: own channel. */
  channel?: grpc.Channel;
  /** In-band firmware plugins (vendor tools, the generic command runner). */
  firmwareManagers?: FirmwareManager[];
  /** Priorities of this agent's deploy steps ("interface.step" → priority). */
  deployStepPriorities?: Record<string, number>;
  /**
   * Test and lab agents on a real host: regular files under this directory are accepted as
   * `target`/`devices` (stand-ins for disks). Never set on a ramdisk. Default: none.
   */
  fileTargetDir?: string;
  /** Inventory sent after Welcome; default true. */
  sendInventory?: boolean;
}

export interface AgentClientEvents {
  welcome: [nodeUuid: string];
  disconnected: [reason: string];
  'command-finished': [entry: JournalEntry];
}

const STATUS: Record<JournalEntry['status'], CommandStatus> = {
  RUNNING: CommandStatus.COMMAND_STATUS_RUNNING,
  SUCCEEDED: CommandStatus.COMMAND_STATUS_SUCCEEDED,
  FAILED: CommandStatus.COMMAND_STATUS_FAILED,
  CANCELLED: CommandStatus.COMMAND_STATUS_CANCELLED,
};

const MAX_QUEUED_LOGS = 1000;

type Body = NonNullable<AgentMessage['body']>;

export class AgentClient extends EventEmitter<AgentClientEvents> {
  private journal!: Journal;
  private client: AgentServiceClient | undefined;
  private call: grpc.ClientDuplexStream<AgentMessage, ConductorMessage> | undefined;
  private stopped = false;
  private seq = 0;
  private settings: AgentSettings = { heartbeatIntervalS: 10, window: 64, progressIntervalMs: 1000, md5Allowed: false, wantInventory: true };
  private heartbeatTimer: NodeJS.Timeout | undefined;
  /** Seqs of windowed messages not yet acknowledged. */
  private unacked: number[] = [];
  private queuedLogs: Body[] = [];
  private queuedProgress = new Map<string, Body>();
  private droppedLogs = 0;
  private readonly running = new Map<string, AbortController>();
  private lastProgressAt = new Map<string, number>();
  private readonly backoff: Backoff;
  nodeUuid = '';
  connected = false;
  connects = 0;
  lastError = '';
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;

  /** Conductor endpoints known (given, then learned from Welcome.conductors); `target` indexes them. */
  private targets: string[];
  private target = 0;
  /** Set by a redirecting Welcome: the next dial goes there, at once. */
  private redirectTo: string | undefined;
  /** Dials in a row that ended without a Welcome (the whole list failing brings the backoff in). */
  private failedInRow = 0;
  /** The endpoint the current client dials. */
  address: string;

  constructor(private readonly opts: AgentClientOptions) {
    super();
    this.backoff = new Backoff({ initialMs: opts.backoff?.initialMs ?? 1000, maxMs: opts.backoff?.maxMs ?? 60_000 });
    this.targets = opts.conductor.split(',').map((t) => t.trim()).filter(Boolean);
    this.address = this.targets[0]!;
  }

  async start(): Promise<void> {
    const bootId = await this.opts.hardware.bootId();
    this.journal = new Journal(this.opts.stateDir, bootId);
    for (const e of this.journal.failInterrupted()) {
      this.opts.log.warn({ command_id: e.id, command: e.name }, 'command was interrupted by an agent restart; reporting it failed');
    }
    this.loop = this.run(bootId);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const c of this.running.values()) c.abort();
    this.wake?.();
    const call = this.call;
    this.teardown('agent stopping');
    call?.cancel();
    await this.loop;
    this.client?.close();
  }

  private async run(bootId: string): Promise<void> {
    while (!this.stopped) {
      const before = this.connects;
      const reason = await this.connectOnce(bootId);
      const welcomed = this.connects > before;
      this.teardown(reason);
      if (this.stopped) break;
      if (this.redirectTo) {
        // Sent to the node's owner: dial it now, no backoff (the redirect is not a failure).
        this.switchTo(this.redirectTo);
        this.redirectTo = undefined;
        continue;
      }
      // A conductor that could not be reached (or went away): the next one in the list, after a
      // short jittered pause; the growing backoff only once the whole list failed in a row (a dead
      // conductor must not keep an agent away from the live ones for a minute). The jitter spreads
      // thousands of agents out when a conductor dies.
      let delay: number;
      if (welcomed) this.failedInRow = 0;
      if (!welcomed && this.targets.length > 1 && ++this.failedInRow % this.targets.length !== 0) {
        this.switchTo(this.targets[(this.target = (this.target + 1) % this.targets.length)]!);
        delay = 200 + Math.random() * 800;
      } else {
        if (!welcomed && this.targets.length > 1) this.switchTo(this.targets[(this.target = (this.target + 1) % this.targets.length)]!);
        delay = this.backoff.next();
      }
      this.opts.log.info({ reason, retry_in_ms: delay }, 'conductor stream closed; reconnecting');
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        void sleep(delay).then(resolve);
      });
    }
  }

  /** Learned addresses obey the same rule as given ones: no plaintext off loopback unless insecure. */
  private acceptable(address: string): boolean {
    if (this.opts.caPem || this.opts.insecure) return true;
    const ok = isLoopbackHost(address.slice(0, address.lastIndexOf(':')).replace(/^\[|\]$/g, ''));
    if (!ok) this.opts.log.warn({ address }, 'ignoring a plaintext conductor address off loopback (no CA, not --insecure)');
    return ok;
  }

  private switchTo(address: string): void {
    if (address === this.address && this.client) return;
    this.client?.close();
    this.client = undefined;
    this.address = address;
  }

  private makeClient(): AgentServiceClient {
    const creds = this.opts.caPem ? grpc.credentials.createSsl(this.opts.caPem) : grpc.credentials.createInsecure();
    const options: grpc.ClientOptions = {
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.initial_reconnect_backoff_ms': 500,
      'grpc.max_reconnect_backoff_ms': 10_000,
    };
    if (this.opts.channel) options.channelOverride = this.opts.channel;
    return new AgentServiceClient(this.address, creds, options);
  }

  /** One stream's lifetime; resolves with the reason it ended. */
  private connectOnce(bootId: string): Promise<string> {
    this.client ??= this.makeClient();
    return new Promise<string>((resolve) => {
      let settled = false;
      const done = (why: string) => {
        if (!settled) {
          settled = true;
          resolve(why);
        }
      };
      void (async () => {
        const md = new grpc.Metadata();
        if (this.journal.token) md.set(AGENT_TOKEN_METADATA, this.journal.token);
        const call = this.client!.connect(md);
        this.call = call;
        this.seq = 0;
        this.unacked = [];
        call.on('data', (m: ConductorMessage) => {
          this.onMessage(m).catch((err) => this.opts.log.error({ err }, 'failed to handle conductor message'));
        });
        call.on('error', (err: grpc.ServiceError) => {
          this.lastError = `${grpc.status[err.code] ?? err.code}: ${err.details}`;
          if (err.code === grpc.status.UNAUTHENTICATED && this.journal.token) {
            // The conductor wiped our token (power action) or never issued it: forget it, look up afresh.
            this.opts.log.warn({ details: err.details }, 'conductor rejected our agent token; dropping it');
            this.journal.setToken(null, null);
          } else if (err.code !== grpc.status.CANCELLED) {
            this.opts.log.warn({ code: grpc.status[err.code], details: err.details }, 'conductor stream error');
          }
          done(this.lastError);
        });
        call.on('end', () => done('stream ended by conductor'));
        call.on('close', () => done('stream closed'));
        const macs = await this.opts.hardware.macs();
        this.send({
          $case: 'hello',
          value: {
            macs,
            bootId,
            agentVersion: AGENT_VERSION,
            nodeUuid: '',
            commands: this.journal.all().map((c) => ({ commandId: c.id, name: c.name, status: STATUS[c.status] })),
            capabilities: COMMAND_NAMES,
          },
        });
      })().catch((err) => done(`connect failed: ${errorMessage(err)}`));
    });
  }

  private teardown(reason: string): void {
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = undefined;
    if (this.connected) {
      this.connected = false;
      this.emit('disconnected', reason);
    }
    this.call = undefined;
  }

  private send(body: Body): void {
    const call = this.call;
    if (!call || call.writableEnded) return;
    const seq = ++this.seq;
    call.write({ seq, body });
    if (body.$case === 'commandProgress' || body.$case === 'log') this.unacked.push(seq);
  }

  /** Progress and logs go through the window; beyond it progress is coalesced, logs queued (bounded). */
  private sendWindowed(body: Body): void {
    if (this.connected && this.unacked.length < this.settings.window) {
      this.send(body);
      return;
    }
    if (body.$case === 'commandProgress') this.queuedProgress.set(body.value.commandId, body);
    else {
      this.queuedLogs.push(body);
      if (this.queuedLogs.length > MAX_QUEUED_LOGS) {
        this.queuedLogs.shift();
        this.droppedLogs++;
      }
    }
  }

  private drain(): void {
    while (this.connected && this.unacked.length < this.settings.window) {
      const p = this.queuedProgress.entries().next();
      if (!p.done) {
        this.queuedProgress.delete(p.value[0]);
        this.send(p.value[1]);
        continue;
      }
      const l = this.queuedLogs.shift();
      if (!l) break;
      this.send(l);
    }
    if (this.droppedLogs > 0 && this.unacked.length < this.settings.window) {
      const n = this.droppedLogs;
      this.droppedLogs = 0;
      this.send({ $case: 'log', value: { timeMs: Date.now(), level: 'warn', message: `${n} agent log line(s) dropped: window full`, commandId: '' } });
    }
  }

  private async sendInventory(): Promise<void> {
    const inv = await this.opts.hardware.inventory();
    this.send({ $case: 'inventory', value: { inventoryJson: JSON.stringify(inv), pluginDataJson: '' } });
  }

  private sendResult(e: JournalEntry): void {
    this.send({
      $case: 'commandResult',
      value: {
        commandId: e.id,
        status: STATUS[e.status],
        resultJson: e.result ? JSON.stringify(e.result) : '',
        error: e.error ?? undefined,
        durationMs: e.finished_at ? e.finished_at - e.started_at : 0,
      },
    });
  }

  private async onMessage(m: ConductorMessage): Promise<void> {
    const body = m.body;
    if (!body) return;
    switch (body.$case) {
      case 'welcome': {
        const w = body.value;
        this.opts.log.debug({ welcome: w }, 'welcome received');
        for (const c of w.conductors) if (!this.targets.includes(c) && this.acceptable(c)) this.targets.push(c);
        if (w.redirectTo) {
          // No session exists on this conductor; the stream ends. Follow it if it may be dialled.
          if (this.acceptable(w.redirectTo)) {
            this.opts.log.info({ node: w.nodeUuid, from: w.conductor, to: w.redirectTo }, 'redirected to the conductor that owns this node');
            this.redirectTo = w.redirectTo;
          }
          return;
        }
        if (w.agentToken) this.journal.setToken(w.agentToken, w.nodeUuid);
        if (w.settings) this.settings = { ...w.settings, window: Math.max(1, w.settings.window) };
        this.nodeUuid = w.nodeUuid;
        this.connected = true;
        this.connects++;
        this.backoff.reset();
        this.opts.log.info({ node: w.nodeUuid, conductor: w.conductor, token_issued: Boolean(w.agentToken) }, 'connected to conductor');
        for (const id of w.resendResults) {
          const e = this.journal.get(id);
          if (e && e.status !== 'RUNNING') this.sendResult(e);
        }
        if (this.opts.sendInventory !== false && this.settings.wantInventory) await this.sendInventory();
        const beat = () => this.send({ $case: 'heartbeat', value: { busyCommandId: this.journal.running()?.id ?? '', agentTimeMs: Date.now() } });
        beat();
        this.heartbeatTimer = setInterval(beat, this.settings.heartbeatIntervalS * 1000);
        this.heartbeatTimer.unref();
        this.drain();
        this.emit('welcome', w.nodeUuid);
        return;
      }
      case 'ack': {
        const upTo = body.value.upToSeq;
        let i = 0;
        while (i < this.unacked.length && this.unacked[i]! <= upTo) i++;
        this.unacked.splice(0, i);
        this.drain();
        return;
      }
      case 'ping':
        this.send({ $case: 'pong', value: { nonce: body.value.nonce } });
        return;
      case 'cancel': {
        const c = this.running.get(body.value.commandId);
        if (c) {
          this.opts.log.info({ command_id: body.value.commandId, reason: body.value.reason }, 'cancelling command');
          c.abort(new CommandFailure('CANCELLED', `cancelled: ${body.value.reason}`));
        }
        return;
      }
      case 'command':
        this.onCommand(body.value);
        return;
    }
  }

  private onCommand(cmd: Command): void {
    const known = this.journal.get(cmd.commandId);
    if (known) {
      // Idempotency: a re-sent id is answered from the journal, never run again.
      this.send({ $case: 'commandAccepted', value: { commandId: cmd.commandId, duplicate: true, status: STATUS[known.status] } });
      if (known.status !== 'RUNNING') this.sendResult(known);
      return;
    }
    const fail = (code: string, message: string) =>
      this.send({
        $case: 'commandResult',
        value: { commandId: cmd.commandId, status: CommandStatus.COMMAND_STATUS_FAILED, resultJson: '', error: { code, message, details: '' }, durationMs: 0 },
      });
    const decoded = fromProtoCommand(cmd);
    if (!decoded) return fail('UNKNOWN_COMMAND', 'command has no recognised parameters (unknown command)');
    const parsed = COMMANDS[decoded.name].params.safeParse(decoded.params);
    if (!parsed.success) return fail('INVALID_PARAMS', describeZodError(parsed.error, 'params'));
    const busy = this.journal.running();
    if (busy) return fail('AGENT_BUSY', `agent is busy with command ${busy.id} (${busy.name})`);
    const handler = this.opts.handlers?.[decoded.name] ?? HANDLERS[decoded.name];

    const entry = this.journal.start(cmd.commandId, decoded.name);
    this.send({ $case: 'commandAccepted', value: { commandId: cmd.commandId, duplicate: false, status: CommandStatus.COMMAND_STATUS_RUNNING } });
    const ac = new AbortController();
    this.running.set(cmd.commandId, ac);
    const timer = cmd.timeoutS > 0 ? setTimeout(() => ac.abort(new CommandFailure('TIMEOUT', `command exceeded its ${cmd.timeoutS}s deadline`)), cmd.timeoutS * 1000) : undefined;
    const log = this.opts.log.child({ command_id: cmd.commandId, command: decoded.name });
    log.info({ params: parsed.data, timeout_s: cmd.timeoutS }, 'command started');
    void (async () => {
      let outcome: Pick<JournalEntry, 'status' | 'result' | 'error'>;
      try {
        const result = await handler({
          params: parsed.data,
          signal: ac.signal,
          hardware: this.opts.hardware,
          md5Allowed: this.settings.md5Allowed,
          firmware: this.opts.firmwareManagers ?? [],
          deployStepPriorities: this.opts.deployStepPriorities ?? {},
          fileTargetDir: this.opts.fileTargetDir,
          log,
          progress: (p) => this.progress(cmd.commandId, p),
          sendInventory: () => this.sendInventory(),
          remoteLog: (level, message) => this.sendWindowed({ $case: 'log', value: { timeMs: Date.now(), level, message, commandId: cmd.commandId } }),
        });
        if (ac.signal.aborted) throw ac.signal.reason;
        outcome = { status: 'SUCCEEDED', result, error: null };
      } catch (err) {
        const f = err instanceof CommandFailure ? err : new CommandFailure('COMMAND_ERROR', errorMessage(err));
        outcome = { status: f.code === 'CANCELLED' ? 'CANCELLED' : 'FAILED', result: null, error: { code: f.code, message: f.message, details: f.details } };
      } finally {
        if (timer) clearTimeout(timer);
        this.running.delete(cmd.commandId);
        this.lastProgressAt.delete(cmd.commandId);
      }
      const finished = this.journal.finish(entry.id, outcome)!;
      log.info({ status: finished.status, error: finished.error?.code }, 'command finished');
      // Flush coalesced progress first so the final result is the last word.
      this.queuedProgress.delete(cmd.commandId);
      this.sendResult(finished);
      this.emit('command-finished', finished);
    })();
  }

  private progress(commandId: string, p: Progress): void {
    const t = Date.now();
    const last = this.lastProgressAt.get(commandId) ?? 0;
    if (t - last < this.settings.progressIntervalMs && p.percent < 100) return;
    this.lastProgressAt.set(commandId, t);
    this.sendWindowed({
      $case: 'commandProgress',
      value: {
        commandId,
        percent: p.percent,
        stage: p.stage ?? '',
        bytesDone: p.bytesDone ?? 0,
        bytesTotal: p.bytesTotal ?? 0,
        rateBytesPerS: p.rateBytesPerS ?? 0,
        etaS: p.etaS ?? 0,
        message: p.message ?? '',
      },
    });
  }

  /** Debug view for tests. */
  get journalEntries(): readonly JournalEntry[] {
    return this.journal.all();
  }
}
