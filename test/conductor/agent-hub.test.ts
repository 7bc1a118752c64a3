/**
 * The agent hub constructed directly (a real Store on SQLite, the hub's real gRPC server on a
 * loopback port, raw agent streams from the generated client) — no Conductor.open, no child
 * process: lookup rules per provision state, the boot's token, the ack window of sequenced
 * messages, ownership of command ids, and reconciliation of open commands on reconnect.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { openDatabase } from '../../conductor/db/database.js';
import { Store, type Node } from '../../conductor/db/store.js';
import { AgentHub } from '../../conductor/agent-hub.js';
import { compileConfig } from '../../conductor/config.js';
import { CommandStatus } from '../../shared/gen/ironfleet/agent/v1/agent.js';
import { createLogger } from '../../shared/logger.js';
import { tmpDir, waitFor } from '../helpers.js';
import { hello, rawAgent } from '../security/helpers.js';

let store: Store;
let hub: AgentHub;
let addr = '';
let macN = 0;

beforeAll(async () => {
  store = new Store(await openDatabase(`sqlite://${path.join(tmpDir('ironfleet-hub-'), 'hub.db')}`));
  const cfg = compileConfig({ host: 'unit-conductor', database: { url: 'sqlite::memory:' }, agent: { host: '127.0.0.1', port: 0 }, conductor: { fast_track: false } });
  hub = new AgentHub(store, cfg, createLogger({ level: 'silent' }));
  addr = `127.0.0.1:${await hub.start()}`;
});
afterAll(async () => {
  await hub?.stop();
  await store?.close();
});

async function nodeIn(state: string): Promise<{ node: Node; mac: string }> {
  const mac = `52:54:00:aa:00:${(++macN).toString(16).padStart(2, '0')}`;
  const node = await store.createNode({ uuid: randomUUID(), driver: 'fake-hardware', provision_state: state });
  await store.createPort({ address: mac, node_id: node.id });
  return { node, mac };
}

describe('AgentHub (constructed directly)', () => {
  it('lookup: a token is issued only where lookups are allowed; active and hold states are refused without one', async () => {
    for (const [state, allowed] of [['deploying', true], ['clean wait', true], ['active', false], ['manageable', false], ['clean hold', false]] as const) {
      const { mac } = await nodeIn(state);
      const a = rawAgent(addr);
      a.call.write(hello([mac]));
      if (allowed) {
        const w = await a.welcome();
        expect(w.body?.$case === 'welcome' && w.body.value.agentToken.length, state).toBeGreaterThan(20);
      } else {
        const end = await a.ended;
        expect(end.code, state).toBe(grpc.status.FAILED_PRECONDITION);
        expect(end.details).toMatch(state === 'clean hold' ? /only an agent already holding this boot's token/ : /does not accept agent lookups \(fast-track is off\)/);
      }
      a.close();
    }
  });

  it("the boot's token: required on reconnect, a wrong one refused; the newer stream supersedes the older", async () => {
    const { node, mac } = await nodeIn('deploying');
    const first = rawAgent(addr);
    first.call.write(hello([mac], 'boot-t'));
    const w = await first.welcome();
    const token = w.body?.$case === 'welcome' ? w.body.value.agentToken : '';
    const noToken = rawAgent(addr);
    noToken.call.write(hello([mac], 'boot-t'));
    expect((await noToken.ended).code).toBe(grpc.status.UNAUTHENTICATED);
    const wrong = rawAgent(addr, 'x'.repeat(43));
    wrong.call.write(hello([mac], 'boot-t'));
    expect((await wrong.ended).code).toBe(grpc.status.UNAUTHENTICATED);
    const again = rawAgent(addr, token);
    again.call.write(hello([mac], 'boot-t'));
    const w2 = await again.welcome();
    expect(w2.body?.$case === 'welcome' && w2.body.value.agentToken).toBe(''); // no second token
    expect((await first.ended).code).toBe(grpc.status.ABORTED);
    expect(hub.bootId(node.id)).toBe('boot-t');
    for (const a of [first, noToken, wrong, again]) a.close();
  });

  it('acknowledges sequenced messages within its window', async () => {
    const { mac } = await nodeIn('deploying');
    const a = rawAgent(addr);
    a.call.write(hello([mac]));
    await a.welcome();
    for (let seq = 1; seq <= 3; seq++) a.call.write({ seq, body: { $case: 'log', value: { timeMs: Date.now(), level: 'info', message: `line ${seq}`, commandId: '' } } });
    const ack = await waitFor(() => a.got.find((m) => m.body?.$case === 'ack' && m.body.value.upToSeq === 3), 5000, 'ack up to 3');
    expect(ack).toBeDefined();
    a.close();
  });

  it('drops results for command ids the stream was never sent (counted, nothing written)', async () => {
    const { node, mac } = await nodeIn('deploying');
    const a = rawAgent(addr);
    a.call.write(hello([mac]));
    await a.welcome();
    const before = hub.dropped.get('unknown_command') ?? 0;
    const fake = randomUUID();
    a.call.write({ seq: 0, body: { $case: 'commandResult', value: { commandId: fake, status: CommandStatus.COMMAND_STATUS_SUCCEEDED, resultJson: '{}', durationMs: 1, error: undefined } } });
    await waitFor(() => (hub.dropped.get('unknown_command') ?? 0) > before, 5000, 'drop counted');
    expect(await store.getCommand(fake)).toBeUndefined();
    expect(await store.listCommands(node.id)).toEqual([]);
    a.close();
  });

  it('reconnect reconciliation: a command the agent never got is sent again (same id); one it finished is asked for again', async () => {
    const { node, mac } = await nodeIn('clean wait');
    const a = rawAgent(addr);
    a.call.write(hello([mac], 'boot-r'));
    const w = await a.welcome();
    const token = w.body?.$case === 'welcome' ? w.body.value.agentToken : '';
    await waitFor(() => hub.isConnected(node.id), 5000, 'registered');
    const lost = randomUUID();
    await hub.sendCommand((await store.getNodeById(node.id))!, lost, 'clean.erase_devices_metadata', {});
    await waitFor(() => a.got.find((m) => m.body?.$case === 'command' && m.body.value.commandId === lost), 5000, 'command delivered');
    a.close();
    await waitFor(() => !hub.isConnected(node.id), 5000, 'stream gone');

    // Same boot, the agent's journal does not know the command: it is sent again with its id.
    const b = rawAgent(addr, token);
    b.call.write(hello([mac], 'boot-r'));
    await b.welcome();
    await waitFor(() => b.got.find((m) => m.body?.$case === 'command' && m.body.value.commandId === lost), 5000, 'command re-sent');
    b.close();
    await waitFor(() => !hub.isConnected(node.id), 5000, 'stream gone');

    // The agent finished it while disconnected: the welcome asks for its result again.
    const c = rawAgent(addr, token);
    const h = hello([mac], 'boot-r');
    if (h.body?.$case === 'hello') h.body.value.commands = [{ commandId: lost, name: 'clean.erase_devices_metadata', status: CommandStatus.COMMAND_STATUS_SUCCEEDED }];
    c.call.write(h);
    const w3 = await c.welcome();
    expect(w3.body?.$case === 'welcome' && w3.body.value.resendResults).toEqual([lost]);
    expect(c.got.some((m) => m.body?.$case === 'command')).toBe(false);
    c.close();
  });
});
