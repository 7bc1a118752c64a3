/**
 * Acceptance for the spine: a real conductor process and a real agent process on loopback.
 * The agent looks itself up by MAC, its inventory appears at /v1/nodes/{id}/inventory, commands
 * stream progress + result, and neither an agent kill nor a conductor kill runs a command twice.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { ApiClient } from '../../cli/api-client.js';
import { hostMacs } from '../../agent/hardware.js';
import { inventorySchema } from '../../shared/inventory.js';
import { AgentServiceClient, type AgentMessage, type ConductorMessage } from '../../shared/gen/ironfleet/agent/v1/agent.js';
import { AGENT_TOKEN_METADATA } from '../../shared/commands.js';
import { startAgentProcess, startConductorProcess, tmpDir, waitFor, type ConductorProc, type Proc } from '../helpers.js';

type Cmd = { id: string; command_status: string; command_result: Record<string, unknown> | null; command_error: { code: string; message: string } | null; progress: { percent: number } | null };

/** Opens a raw stream as a (possibly hostile) agent and returns the status it ends with. */
function rawConnect(addr: string, first: AgentMessage, token?: string, more: AgentMessage[] = []): Promise<{ code: number; details: string; got: ConductorMessage[] }> {
  const client = new AgentServiceClient(addr, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  if (token) md.set(AGENT_TOKEN_METADATA, token);
  const call = client.connect(md);
  const got: ConductorMessage[] = [];
  return new Promise((resolve) => {
    call.on('data', (m: ConductorMessage) => {
      got.push(m);
      if (m.body?.$case === 'welcome') for (const x of more) call.write(x);
    });
    call.on('error', (err: grpc.ServiceError) => {
      client.close();
      resolve({ code: err.code, details: err.details, got });
    });
    call.on('end', () => {
      client.close();
      resolve({ code: 0, details: '', got });
    });
    call.write(first);
    setTimeout(() => call.cancel(), 8000);
  });
}

const hello = (macs: string[], bootId = 'raw-boot'): AgentMessage => ({
  seq: 1,
  body: { $case: 'hello', value: { macs, bootId, agentVersion: 'raw-1', nodeUuid: '', commands: [], capabilities: [] } },
});

describe('conductor ⇄ agent over a real gRPC stream', () => {
  const dir = tmpDir('ironfleet-stream-');
  const stateDir = path.join(dir, 'agent-state');
  let conductor: ConductorProc;
  let agent: Proc;
  let api: ApiClient;
  let nodeUuid: string;
  const macs = hostMacs();

  beforeAll(async () => {
    expect(macs.length, 'this machine needs at least one ethernet NIC with a MAC').toBeGreaterThan(0);
    conductor = await startConductorProcess({ dir, env: { IRONFLEET_LOGGING__LEVEL: 'debug' } });
    api = new ApiClient({ url: conductor.apiUrl });
    const n = await api.post<{ uuid: string }>('/v1/nodes', { driver: 'fake-hardware', name: 'host-under-test', driver_info: { redfish_password: 'BMC-Pa55-w0rd-zz' } });
    nodeUuid = n.uuid;
    for (const mac of macs) await api.post('/v1/ports', { address: mac, node_uuid: nodeUuid });
    agent = startAgentProcess({ dir, conductor: conductor.agentAddr, stateDir });
  });

  afterAll(async () => {
    await agent?.kill('SIGTERM');
    await conductor?.kill('SIGTERM');
  });

  const connected = () => waitFor(async () => (await api.get<{ connected: boolean }>(`/v1/nodes/${nodeUuid}/agent`)).connected, 30_000, 'agent connected');
  const command = (id: string) => api.get<Cmd>(`/v1/nodes/${nodeUuid}/agent/commands/${id}`);

  it('the agent is looked up by MAC and its IPA-format inventory is served by the API', async () => {
    await connected();
    const inv = await waitFor(async () => {
      try {
        return await api.get<{ inventory: Record<string, unknown> }>(`/v1/nodes/${nodeUuid}/inventory`);
      } catch {
        return undefined;
      }
    }, 30_000, 'inventory');
    const parsed = inventorySchema.parse(inv.inventory);
    expect(parsed.interfaces.map((i) => i.mac_address).sort()).toEqual([...macs].sort());
    expect(parsed.cpu.count).toBeGreaterThan(0);
    expect(parsed.memory.total).toBeGreaterThan(0);
    const node = await api.get<{ driver_internal_info: { agent_connected: boolean } }>(`/v1/nodes/${nodeUuid}`);
    expect(node.driver_internal_info.agent_connected).toBe(true);
  });

  it('a command streams progress, then its result', async () => {
    await connected();
    const cmd = await api.post<Cmd>(`/v1/nodes/${nodeUuid}/agent/commands`, { name: 'clean.burnin_cpu', params: { duration_s: 3, cpus: 1 } });
    const percents = new Set<number>();
    const done = await waitFor(async () => {
      const c = await command(cmd.id);
      if (c.command_status === 'RUNNING' && c.progress) percents.add(Math.round(c.progress.percent));
      return c.command_status === 'SUCCEEDED' || c.command_status === 'FAILED' ? c : undefined;
    }, 30_000, 'burnin result');
    expect(done.command_status).toBe('SUCCEEDED');
    expect(done.command_result).toMatchObject({ cpus: 1 });
    expect(Number(done.command_result!.ops)).toBeGreaterThan(0);
    expect([...percents].some((p) => p > 0 && p < 100), `progress seen: ${[...percents]}`).toBe(true);
  });

  it('bad commands are refused with a clear 4xx and nothing is sent', async () => {
    await expect(api.post(`/v1/nodes/${nodeUuid}/agent/commands`, { name: 'clean.burnin_cpu', params: { duration_s: -1 } })).rejects.toMatchObject({ status: 400, message: /params\.duration_s/ });
    await expect(api.post(`/v1/nodes/${nodeUuid}/agent/commands`, { name: 'rm.rf', params: {} })).rejects.toMatchObject({ status: 400, message: /unknown agent command/ });
  });

  it('killing and restarting the agent mid-command does not run the command twice', async () => {
    await connected();
    const cmd = await api.post<Cmd>(`/v1/nodes/${nodeUuid}/agent/commands`, { name: 'clean.burnin_cpu', params: { duration_s: 20, cpus: 1 } });
    await waitFor(async () => (await command(cmd.id)).command_status === 'RUNNING', 20_000, 'command running');
    await agent.kill('SIGKILL');
    const firstLog = agent.logs();
    agent = startAgentProcess({ dir, conductor: conductor.agentAddr, stateDir, name: 'agent-restarted' });
    const final = await waitFor(async () => {
      const c = await command(cmd.id);
      return c.command_status !== 'RUNNING' && c.command_status !== 'PENDING' ? c : undefined;
    }, 30_000, 'interrupted command reported');
    expect(final.command_status).toBe('FAILED');
    expect(final.command_error?.code).toBe('AGENT_RESTARTED');
    // The restarted agent reconnected with its journal token and never started the command again.
    const starts = (firstLog + agent.logs()).split('\n').filter((l) => l.includes(cmd.id) && l.includes('"msg":"command started"'));
    expect(starts).toHaveLength(1);
    const loads = conductor.logs().split('\n').filter((l) => l.includes(cmd.id) && l.includes('burnin_cpu: loading'));
    expect(loads).toHaveLength(1);
    const journal = JSON.parse(readFileSync(path.join(stateDir, 'journal.json'), 'utf8')) as { commands: Array<{ id: string }> };
    expect(journal.commands.filter((c) => c.id === cmd.id)).toHaveLength(1);
    // The node is usable again.
    const next = await api.post<Cmd>(`/v1/nodes/${nodeUuid}/agent/commands`, { name: 'standby.sync', params: {} });
    expect((await waitFor(async () => ((await command(next.id)).command_status === 'SUCCEEDED' ? true : undefined), 20_000, 'sync')) ).toBe(true);
  });

  it('SIGKILLing the conductor mid-command: the agent keeps running it once and the result arrives after restart', async () => {
    await connected();
    const cmd = await api.post<Cmd>(`/v1/nodes/${nodeUuid}/agent/commands`, { name: 'clean.burnin_cpu', params: { duration_s: 4, cpus: 1 } });
    await waitFor(async () => (await command(cmd.id)).command_status === 'RUNNING', 20_000, 'command running');
    await conductor.kill('SIGKILL');
    conductor = await startConductorProcess({ dir, apiPort: conductor.apiPort, agentPort: conductor.agentPort, name: 'conductor-restarted', env: { IRONFLEET_LOGGING__LEVEL: 'debug' } });
    api = new ApiClient({ url: conductor.apiUrl });
    const final = await waitFor(async () => {
      const c = await command(cmd.id);
      return c.command_status === 'SUCCEEDED' || c.command_status === 'FAILED' ? c : undefined;
    }, 40_000, 'result after conductor restart');
    expect(final.command_status).toBe('SUCCEEDED');
    const lines = agent.logs().split('\n').filter((l) => l.includes(cmd.id));
    expect(lines.filter((l) => l.includes('"msg":"command started"'))).toHaveLength(1);
    expect(lines.filter((l) => l.includes('"msg":"command finished"'))).toHaveLength(1);
  });

  it('tokens: missing or wrong token → UNAUTHENTICATED; unknown MAC → NOT_FOUND; bad hello → INVALID_ARGUMENT', async () => {
    await connected();
    const noTok = await rawConnect(conductor.agentAddr, hello(macs));
    expect(grpc.status[noTok.code]).toBe('UNAUTHENTICATED');
    expect(noTok.details).toMatch(/token required/);
    const wrong = await rawConnect(conductor.agentAddr, hello(macs), 'x'.repeat(43));
    expect(grpc.status[wrong.code]).toBe('UNAUTHENTICATED');
    expect(wrong.details).toMatch(/invalid agent token/);
    const unknown = await rawConnect(conductor.agentAddr, hello(['02:00:00:00:00:99']));
    expect(grpc.status[unknown.code]).toBe('NOT_FOUND');
    const bad = await rawConnect(conductor.agentAddr, hello(['not-a-mac']));
    expect(grpc.status[bad.code]).toBe('INVALID_ARGUMENT');
    expect(bad.details).toMatch(/hello\.macs\.0/);
    const notHello = await rawConnect(conductor.agentAddr, { seq: 1, body: { $case: 'heartbeat', value: { busyCommandId: '', agentTimeMs: 0 } } });
    expect(grpc.status[notHello.code]).toBe('INVALID_ARGUMENT');
    // The real agent is still connected and unaffected.
    expect((await api.get<{ connected: boolean }>(`/v1/nodes/${nodeUuid}/agent`)).connected).toBe(true);
  });

  it('an invalid inventory from an authenticated agent is rejected naming the field, and nothing is stored', async () => {
    const token = (JSON.parse(readFileSync(path.join(stateDir, 'journal.json'), 'utf8')) as { token: string }).token;
    const before = await api.get(`/v1/nodes/${nodeUuid}/inventory`);
    const badInv = { seq: 2, body: { $case: 'inventory' as const, value: { inventoryJson: JSON.stringify({ interfaces: [{ name: 'eth0', mac_address: 'zz' }] }), pluginDataJson: '' } } };
    const r = await rawConnect(conductor.agentAddr, hello(macs, 'other-boot'), token, [badInv]);
    expect(grpc.status[r.code]).toBe('INVALID_ARGUMENT');
    expect(r.details).toMatch(/inventory\.interfaces\.0/);
    expect(await api.get(`/v1/nodes/${nodeUuid}/inventory`)).toEqual(before);
    // Our raw connection superseded the real agent's stream; it reconnects by itself.
    await connected();
  });

  it('inspection uses the connected agent: manage → inspect → manageable with a fresh inventory', async () => {
    await connected();
    type N = { provision_state: string; target_provision_state: string | null; reservation: string | null; last_error: string | null };
    const settled = (want: string) =>
      waitFor(async () => {
        const n = await api.get<N>(`/v1/nodes/${nodeUuid}`);
        return n.provision_state === want && !n.target_provision_state && !n.reservation ? n : undefined;
      }, 20_000, want);
    await api.put(`/v1/nodes/${nodeUuid}/states/provision`, { target: 'manage' });
    await settled('manageable');
    await api.put(`/v1/nodes/${nodeUuid}/states/provision`, { target: 'inspect' });
    const n = await settled('manageable');
    expect(n.last_error).toBeNull();
    const hist = await api.get<{ history: Array<{ event: string }> }>(`/v1/nodes/${nodeUuid}/history`);
    expect(hist.history.map((h) => h.event)).toContain('Inspection finished');
    // Inspection completes on the inventory itself; the command's result follows it on the stream.
    const last = await waitFor(async () => {
      const cmds = await api.get<{ commands: Array<{ command_name: string; command_status: string }> }>(`/v1/nodes/${nodeUuid}/agent/commands`);
      const c = cmds.commands.at(-1)!;
      return c.command_status === 'RUNNING' || c.command_status === 'PENDING' ? undefined : c;
    }, 10_000, 'get_inventory result');
    expect(last).toMatchObject({ command_name: 'system.get_inventory', command_status: 'SUCCEEDED' });
  });

  it('neither the agent token nor the BMC password appears in any log', async () => {
    const token = (JSON.parse(readFileSync(path.join(stateDir, 'journal.json'), 'utf8')) as { token: string }).token;
    expect(token).toHaveLength(43);
    const node = await api.get<{ driver_info: Record<string, string> }>(`/v1/nodes/${nodeUuid}`);
    expect(node.driver_info.redfish_password).toBe('******');
    const files = ['conductor.log', 'conductor-restarted.log', 'agent.log', 'agent-restarted.log'];
    const logs = files.map((f) => readFileSync(path.join(dir, f), 'utf8')).join('\n');
    // Debug logging is on: hello metadata, welcome messages and node bodies were all logged.
    expect(logs).toContain('"msg":"agent hello"');
    expect(logs).toContain('"msg":"welcome received"');
    expect(logs).toContain('"msg":"node create request"');
    expect(logs).not.toContain(token);
    expect(logs).not.toContain('BMC-Pa55-w0rd-zz');
  });
});
