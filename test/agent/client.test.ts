/**
 * The agent client against a scripted conductor: a real gRPC server on loopback that the test
 * drives message by message, to provoke what a real conductor rarely does (duplicate ids,
 * withheld acks, dropped streams).
 */
import { afterEach, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { AgentClient } from '../../agent/client.js';
import { SimulatedHardware } from '../../agent/hardware.js';
import { createLogger } from '../../shared/logger.js';
import { AgentServiceService, CommandStatus, type AgentMessage, type ConductorMessage } from '../../shared/gen/ironfleet/agent/v1/agent.js';
import { AGENT_TOKEN_METADATA } from '../../shared/commands.js';
import { waitFor } from '../helpers.js';
import type { CommandContext } from '../../agent/commands/registry.js';

type Stream = grpc.ServerDuplexStream<AgentMessage, ConductorMessage>;

interface Scripted {
  port: number;
  streams: Stream[];
  received: AgentMessage[][];
  tokens: Array<string | undefined>;
  stop(): Promise<void>;
}

async function scriptedConductor(onHello?: (s: Stream, i: number) => void): Promise<Scripted> {
  const server = new grpc.Server();
  const st: Scripted = { port: 0, streams: [], received: [], tokens: [], stop: async () => {} };
  server.addService(AgentServiceService, {
    connect(call: Stream) {
      const i = st.streams.length;
      st.streams.push(call);
      st.received.push([]);
      const tok = call.metadata.get(AGENT_TOKEN_METADATA)[0];
      st.tokens.push(tok === undefined ? undefined : String(tok));
      call.on('data', (m: AgentMessage) => {
        st.received[i]!.push(m);
        if (m.body?.$case === 'hello') onHello?.(call, i);
      });
      call.on('error', () => {});
    },
  });
  st.port = await new Promise((res, rej) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
  st.stop = () => new Promise((r) => server.tryShutdown(() => r()));
  return st;
}

const welcome = (token = '', window = 64): ConductorMessage => ({
  body: {
    $case: 'welcome',
    value: {
      nodeUuid: 'node-1',
      nodeName: '',
      agentToken: token,
      conductor: 'scripted',
      resendResults: [],
      redirectTo: '',
      conductors: [],
      settings: { heartbeatIntervalS: 30, window, progressIntervalMs: 50, md5Allowed: false, wantInventory: false },
    },
  },
});

const syncCmd = (id: string): ConductorMessage => ({ body: { $case: 'command', value: { commandId: id, timeoutS: 0, params: { $case: 'sync', value: {} } } } });

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!();
});

async function agentAgainst(st: Scripted, handlers?: Record<string, (ctx: CommandContext) => Promise<Record<string, unknown>>>, conductor = `127.0.0.1:${st.port}`) {
  const client = new AgentClient({
    conductor,
    hardware: new SimulatedHardware({ seed: 'client-test', index: 1 }),
    log: createLogger({ level: 'silent' }),
    handlers,
    backoff: { initialMs: 50, maxMs: 200 },
    sendInventory: false,
  });
  await client.start();
  cleanup.push(async () => {
    await client.stop();
    await st.stop();
  });
  return client;
}

const bodies = (msgs: AgentMessage[], kind: string) => msgs.filter((m) => m.body?.$case === kind).map((m) => m.body!.value as Record<string, unknown>);

describe('AgentClient', () => {
  it('a command id sent twice runs once; the second gets the journaled result', async () => {
    let runs = 0;
    const st = await scriptedConductor((s) => {
      s.write(welcome('T'.repeat(43)));
      s.write(syncCmd('cmd-1'));
    });
    await agentAgainst(st, {
      'standby.sync': async () => {
        runs++;
        return { n: runs };
      },
    });
    await waitFor(() => bodies(st.received[0] ?? [], 'commandResult').length === 1, 10_000, 'first result');
    st.streams[0]!.write(syncCmd('cmd-1'));
    await waitFor(() => bodies(st.received[0]!, 'commandResult').length === 2, 10_000, 'replayed result');
    expect(runs).toBe(1);
    const accepted = bodies(st.received[0]!, 'commandAccepted');
    expect(accepted.map((a) => a.duplicate)).toEqual([false, true]);
    const results = bodies(st.received[0]!, 'commandResult');
    expect(results[1]).toEqual(results[0]);
    expect(JSON.parse(String(results[0]!.resultJson))).toEqual({ n: 1 });
  });

  it('refuses a second command while one runs (AGENT_BUSY), and an unknown command', async () => {
    let release!: () => void;
    const st = await scriptedConductor((s) => {
      s.write(welcome());
      s.write(syncCmd('slow'));
      s.write(syncCmd('other'));
      s.write({ body: { $case: 'command', value: { commandId: 'empty', timeoutS: 0, params: undefined } } });
    });
    await agentAgainst(st, { 'standby.sync': () => new Promise((r) => (release = () => r({})) ) });
    await waitFor(() => bodies(st.received[0] ?? [], 'commandResult').length === 2, 10_000, 'refusals');
    const refusals = bodies(st.received[0]!, 'commandResult') as Array<{ commandId: string; error: { code: string } }>;
    expect(Object.fromEntries(refusals.map((r) => [r.commandId, r.error.code]))).toEqual({ other: 'AGENT_BUSY', empty: 'UNKNOWN_COMMAND' });
    release();
    await waitFor(() => bodies(st.received[0]!, 'commandResult').length === 3, 10_000, 'slow result');
  });

  it('never has more than `window` progress/log messages unacknowledged; acks release the rest', async () => {
    const WINDOW = 4;
    const st = await scriptedConductor((s) => {
      s.write(welcome('', WINDOW));
      s.write(syncCmd('chatty'));
    });
    let finish!: () => void;
    await agentAgainst(st, {
      'standby.sync': async (ctx) => {
        for (let i = 0; i < 50; i++) ctx.remoteLog('info', `line ${i}`);
        await new Promise<void>((r) => (finish = r));
        return {};
      },
    });
    await waitFor(() => bodies(st.received[0] ?? [], 'log').length >= WINDOW, 10_000, 'first window');
    await new Promise((r) => setTimeout(r, 300));
    expect(bodies(st.received[0]!, 'log')).toHaveLength(WINDOW);
    // Acknowledge everything seen so far, repeatedly, until the queue drains.
    await waitFor(() => {
      const msgs = st.received[0]!;
      st.streams[0]!.write({ body: { $case: 'ack', value: { upToSeq: msgs[msgs.length - 1]!.seq } } });
      return bodies(msgs, 'log').length >= 50;
    }, 10_000, 'all logs after acks');
    const lines = bodies(st.received[0]!, 'log').map((l) => l.message);
    expect(lines).toEqual(Array.from({ length: 50 }, (_, i) => `line ${i}`));
    finish();
  });

  it('reconnects after the stream drops, presenting the token it was issued', async () => {
    const st = await scriptedConductor((s, i) => {
      if (i === 0) {
        s.write(welcome('K'.repeat(43)));
        setTimeout(() => s.emit('error', Object.assign(new Error('bye'), { code: grpc.status.UNAVAILABLE, details: 'bye' })), 100);
      } else s.write(welcome());
    });
    const client = await agentAgainst(st);
    await waitFor(() => st.streams.length >= 2 && client.connected, 10_000, 'reconnect');
    expect(st.tokens[0]).toBeUndefined();
    expect(st.tokens[1]).toBe('K'.repeat(43));
    const hello = bodies(st.received[1]!, 'hello')[0] as { macs: string[]; bootId: string };
    expect(hello.macs.length).toBe(2);
    expect(client.connects).toBe(2);
  });

  it('drops a token the conductor rejects and looks up afresh', async () => {
    const st = await scriptedConductor((s, i) => {
      if (i === 0) {
        s.write(welcome('Z'.repeat(43)));
        setTimeout(() => s.emit('error', Object.assign(new Error('x'), { code: grpc.status.UNAVAILABLE, details: 'x' })), 50);
      } else if (i === 1) s.emit('error', Object.assign(new Error('bad token'), { code: grpc.status.UNAUTHENTICATED, details: 'invalid agent token' }));
      else s.write(welcome('N'.repeat(43)));
    });
    const client = await agentAgainst(st);
    await waitFor(() => st.streams.length >= 3 && client.connected, 10_000, 'third connection');
    expect(st.tokens.slice(0, 3)).toEqual([undefined, 'Z'.repeat(43), undefined]);
  });

  it('reports a command status enum for every journal state in Hello after a reconnect', async () => {
    const st = await scriptedConductor((s, i) => {
      s.write(welcome());
      if (i === 0) {
        s.write(syncCmd('before-drop'));
        setTimeout(() => s.emit('error', Object.assign(new Error('drop'), { code: grpc.status.UNAVAILABLE, details: 'drop' })), 300);
      }
    });
    await agentAgainst(st);
    await waitFor(() => st.streams.length >= 2 && bodies(st.received[1] ?? [], 'hello').length === 1, 10_000, 'second hello');
    const hello = bodies(st.received[1]!, 'hello')[0] as { commands: Array<{ commandId: string; status: number }> };
    expect(hello.commands).toEqual([{ commandId: 'before-drop', name: 'standby.sync', status: CommandStatus.COMMAND_STATUS_SUCCEEDED }]);
  });

  it('several conductors: a redirecting Welcome sends it to the owner at once (no token kept); an unreachable conductor in the list is skipped', async () => {
    const owner = await scriptedConductor((s) => s.write(welcome('O'.repeat(43))));
    const other = await scriptedConductor((s) => {
      s.write({ body: { $case: 'welcome', value: { ...(welcome().body!.value as object), redirectTo: `127.0.0.1:${owner.port}`, conductors: [`127.0.0.1:${owner.port}`] } } } as ConductorMessage);
      s.end();
    });
    cleanup.push(() => owner.stop());
    // A dead address first: the agent moves on to the next one in its list.
    const dead = await scriptedConductor();
    const deadPort = dead.port;
    await dead.stop();
    const client = await agentAgainst(other, undefined, `127.0.0.1:${deadPort},127.0.0.1:${other.port}`);
    await waitFor(() => client.connected && client.address === `127.0.0.1:${owner.port}`, 10_000, 'connected to the owner');
    expect(other.streams).toHaveLength(1);
    expect(owner.tokens[0]).toBeUndefined(); // no token from the redirecting conductor was kept
    expect(bodies(owner.received[0]!, 'hello')).toHaveLength(1);
  });
});
