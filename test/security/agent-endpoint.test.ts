/**
 * The agent endpoint as an attacker on the provisioning network sees it: a real conductor process
 * and raw gRPC streams. Lookups that must not be answered are refused with a clear status and
 * nothing issued; a flood of made-up progress and log lines leaves the conductor's memory and log
 * volume bounded; plaintext off loopback is refused on both sides.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, statSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { BIN, startConductorProcess, tmpDir, waitFor, type ConductorProc } from '../helpers.js';
import { fakeNode, hello, raw, rawAgent, rssKiB } from './helpers.js';
import type { AgentMessage } from '../../shared/gen/ironfleet/agent/v1/agent.js';

const mac = (i: number) => `52:54:00:5e:00:${i.toString(16).padStart(2, '0')}`;

describe('agent endpoint: lookups', () => {
  const dir = tmpDir('ironfleet-sec-agent-');
  let c: ConductorProc;
  let noFt: ConductorProc;
  let active = '';

  beforeAll(async () => {
    c = await startConductorProcess({ dir });
    noFt = await startConductorProcess({ dir: tmpDir('ironfleet-sec-noft-'), name: 'no-fast-track', env: { IRONFLEET_CONDUCTOR__FAST_TRACK: 'false' } });
    active = await fakeNode(c.apiUrl, 'tenant-1', mac(1), 'active');
    await fakeNode(noFt.apiUrl, 'avail-1', mac(2), 'available');
  });
  afterAll(async () => {
    await c?.kill('SIGTERM');
    await noFt?.kill('SIGTERM');
  });

  it('an active node is never issued a token: the lookup is refused and nothing is stored', async () => {
    const a = rawAgent(c.agentAddr);
    a.call.write(hello([mac(1)]));
    const end = await a.ended;
    a.close();
    expect(end.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(end.details).toMatch(/"active".*no token is issued/);
    expect(a.got.some((m) => m.body?.$case === 'welcome')).toBe(false);
    const agent = (await raw(c.apiUrl, 'GET', `/v1/nodes/${active}/agent`)).json as { connected: boolean; boot_id: string | null };
    expect(agent).toMatchObject({ connected: false, boot_id: null });
    // A made-up token does not get in either.
    const b = rawAgent(c.agentAddr, 'x'.repeat(43));
    b.call.write(hello([mac(1)]));
    expect((await b.ended).code).toBe(grpc.status.FAILED_PRECONDITION);
    b.close();
    // Still healthy: a valid request succeeds next.
    expect((await raw(c.apiUrl, 'GET', `/v1/nodes/${active}`)).status).toBe(200);
  });

  it('with fast-track off, available/manageable nodes are not looked up', async () => {
    const a = rawAgent(noFt.agentAddr);
    a.call.write(hello([mac(2)]));
    const end = await a.ended;
    a.close();
    expect(end.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(end.details).toMatch(/"available".*fast-track is off/);
  });

  it('a rogue agent flooding made-up progress and log lines: dropped and counted, RSS and log volume bounded', async () => {
    const uuid = await fakeNode(c.apiUrl, 'flood-1', mac(3)); // enroll: lookup allowed with fast-track
    const a = rawAgent(c.agentAddr);
    a.call.write(hello([mac(3)], 'flood-boot'));
    await a.welcome();
    const logBefore = readFileSync(c.logFile, 'utf8').split('\n').length;
    const rssBefore = rssKiB(c.child.pid!);
    const N = 20_000;
    const t0 = Date.now();
    const big = 'L'.repeat(1000);
    let seq = 1;
    for (let i = 0; i < N; i++) {
      const progress: AgentMessage = { seq: seq++, body: { $case: 'commandProgress', value: { commandId: `fake-${i}-${'x'.repeat(100)}`, percent: 1, stage: 's'.repeat(500), bytesDone: i, bytesTotal: N, rateBytesPerS: 1, etaS: 1, message: big } } };
      const log: AgentMessage = { seq: seq++, body: { $case: 'log', value: { timeMs: Date.now(), level: 'error', message: big, commandId: '' } } };
      // Respect HTTP/2 flow control as a real client would: the conductor pauses the stream.
      if (!a.call.write(progress)) await new Promise((r) => a.call.once('drain', r));
      if (!a.call.write(log)) await new Promise((r) => a.call.once('drain', r));
    }
    const metrics = async () => (await raw(c.apiUrl, 'GET', '/metrics')).text;
    await waitFor(async () => /ironfleet_agent_messages_dropped_total\{reason="unknown_command"\} 20000/.test(await metrics()), 60_000, 'all made-up progress dropped');
    const m = await metrics();
    const elapsedS = (Date.now() - t0) / 1000;
    // At most the burst (500) plus the refill (100/s) over the flood's duration is written — on a
    // loaded machine the flood takes longer and more lines pass; the rest is dropped and counted.
    const allowed = 500 + 100 * elapsedS;
    const logDrops = Number(m.match(/ironfleet_agent_messages_dropped_total\{reason="log_rate"\} (\d+)/)?.[1] ?? 0);
    expect(logDrops).toBeGreaterThanOrEqual(N - allowed);
    const rssAfter = rssKiB(c.child.pid!);
    const newLines = readFileSync(c.logFile, 'utf8').split('\n').length - logBefore;
    // 20,000 fake progress messages stored nothing; logs are rate limited per stream.
    expect(newLines).toBeLessThan(allowed + 100);
    expect(rssAfter - rssBefore).toBeLessThan(40 * 1024);
    const cmds = (await raw(c.apiUrl, 'GET', `/v1/nodes/${uuid}/agent/commands`)).json as { commands: unknown[] };
    expect(cmds.commands).toHaveLength(0);
    // The stream is still served, and the API answers.
    expect(((await raw(c.apiUrl, 'GET', `/v1/nodes/${uuid}/agent`)).json as { connected: boolean }).connected).toBe(true);
    a.close();
  }, 120_000);
});

describe('agent endpoint: plaintext off loopback', () => {
  it('the conductor refuses a plaintext agent endpoint on a non-loopback address', () => {
    const dir = tmpDir('ironfleet-sec-tls-');
    const r = spawnSync(process.execPath, [BIN, 'conductor', '--database', `sqlite://${path.join(dir, 'x.db')}`, '--api-port', '0', '--agent-port', '0'], {
      env: { ...process.env, IRONFLEET_AGENT__HOST: '0.0.0.0' },
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(r.status).not.toBe(0);
    expect(r.stderr + r.stdout).toMatch(/agent\.host 0\.0\.0\.0 is not loopback and agent\.tls is not set/);
    // Refused at config time: no database was even created.
    expect(() => statSync(path.join(dir, 'x.db'))).toThrow();
  });

  it('the agent refuses a plaintext conductor that is not on loopback unless told --insecure', () => {
    // `.invalid` never resolves: the check must refuse before any dial.
    const r = spawnSync(process.execPath, [BIN, 'agent', '--conductor', 'conductor.invalid:6388', '--state-dir', tmpDir('ironfleet-sec-st-')], { encoding: 'utf8', timeout: 30_000 });
    expect(r.status).not.toBe(0);
    expect(r.stderr + r.stdout).toMatch(/refusing a plaintext conductor; pass --insecure/);
  });
});
