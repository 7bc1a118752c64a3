/** The agent endpoint over TLS: a real certificate, a real conductor process, a real agent process. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { ApiClient } from '../../cli/api-client.js';
import { hostMacs } from '../../agent/hardware.js';
import { startAgentProcess, startConductorProcess, tmpDir, waitFor, type ConductorProc, type Proc } from '../helpers.js';

describe('agent endpoint with TLS', () => {
  const dir = tmpDir('ironfleet-tls-');
  let conductor: ConductorProc;
  const agents: Proc[] = [];
  let api: ApiClient;

  beforeAll(async () => {
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
      '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem'),
      '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
    ], { stdio: 'pipe' });
    const cfg = path.join(dir, 'conductor.yaml');
    writeFileSync(cfg, `agent:\n  tls:\n    cert_file: ${path.join(dir, 'cert.pem')}\n    key_file: ${path.join(dir, 'key.pem')}\n`);
    conductor = await startConductorProcess({ dir, config: cfg });
    api = new ApiClient({ url: conductor.apiUrl });
    const n = await api.post<{ uuid: string }>('/v1/nodes', { driver: 'fake-hardware', name: 'tls-node' });
    for (const mac of hostMacs()) await api.post('/v1/ports', { address: mac, node_uuid: n.uuid });
  });
  afterAll(async () => {
    for (const a of agents) await a.kill('SIGTERM');
    await conductor?.kill('SIGTERM');
  });

  it('a plaintext agent cannot talk to a TLS endpoint', async () => {
    const a = startAgentProcess({ dir, conductor: conductor.agentAddr, stateDir: path.join(dir, 'plain'), name: 'agent-plain' });
    agents.push(a);
    await new Promise((r) => setTimeout(r, 3000));
    expect((await api.get<{ connected: boolean }>('/v1/nodes/tls-node/agent')).connected).toBe(false);
    await a.kill('SIGTERM');
  });

  it('an agent verifying the conductor with the CA connects and sends its inventory', async () => {
    const a = startAgentProcess({ dir, conductor: conductor.agentAddr, stateDir: path.join(dir, 'tls'), name: 'agent-tls', extraArgs: ['--ca-file', path.join(dir, 'cert.pem')] });
    agents.push(a);
    await waitFor(async () => (await api.get<{ connected: boolean }>('/v1/nodes/tls-node/agent')).connected, 20_000, 'TLS agent connected');
    await waitFor(async () => api.get('/v1/nodes/tls-node/inventory').catch(() => undefined), 20_000, 'inventory over TLS');
  });
});
