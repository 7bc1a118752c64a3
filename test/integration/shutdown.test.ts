/**
 * Shutdown of a real conductor process: SIGTERM is graceful (exit 0, streams and sessions closed,
 * locks released), SIGUSR2 drains first; the shipped systemd unit passes `systemd-analyze verify`.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { copyFileSync } from 'node:fs';
import path from 'node:path';
import { ApiClient } from '../../cli/api-client.js';
import { hostMacs } from '../../agent/hardware.js';
import { ROOT, startAgentProcess, startConductorProcess, tmpDir, waitFor } from '../helpers.js';

describe('conductor shutdown', () => {
  it('the systemd unit passes systemd-analyze verify', () => {
    const dir = tmpDir('ironfleet-unit-');
    const unit = path.join(dir, 'ironfleet-conductor.service');
    copyFileSync(path.join(ROOT, 'packaging/ironfleet-conductor.service'), unit);
    const r = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr.trim(), 'no warnings').toBe('');
  });

  it('SIGTERM: exits 0, tells the agent, releases every lock', async () => {
    const dir = tmpDir('ironfleet-term-');
    const c = await startConductorProcess({ dir });
    const api = new ApiClient({ url: c.apiUrl });
    const n = await api.post<{ uuid: string }>('/v1/nodes', { driver: 'fake-hardware', name: 'term' });
    for (const mac of hostMacs()) await api.post('/v1/ports', { address: mac, node_uuid: n.uuid });
    const agent = startAgentProcess({ dir, conductor: c.agentAddr, stateDir: path.join(dir, 'state') });
    try {
      await waitFor(async () => (await api.get<{ connected: boolean }>(`/v1/nodes/${n.uuid}/agent`)).connected, 30_000, 'agent');
      const t0 = Date.now();
      expect(await c.kill('SIGTERM')).toBe(0);
      expect(Date.now() - t0).toBeLessThan(20_000);
      expect(c.logs()).toMatch(/"msg":"conductor stopped"/);
      await waitFor(() => /conductor stream closed; reconnecting/.test(agent.logs()), 10_000, 'agent saw the close');
      // Restart on the same database: no lock left behind.
      const c2 = await startConductorProcess({ dir, name: 'conductor2' });
      const node = await new ApiClient({ url: c2.apiUrl }).get<{ reservation: string | null }>(`/v1/nodes/${n.uuid}`);
      expect(node.reservation).toBeNull();
      expect(c2.logs()).not.toMatch(/released node locks left by a previous run/);
      await c2.kill('SIGTERM');
    } finally {
      await agent.kill('SIGTERM');
    }
  }, 90_000);

  it('SIGUSR2 drains (no locks held) and then stops', async () => {
    const dir = tmpDir('ironfleet-drain-');
    const c = await startConductorProcess({ dir });
    // Signalled the moment the ready line is read: the handler must already be installed.
    expect(await c.kill('SIGUSR2')).toBe(0);
    expect(c.logs()).toMatch(/"msg":"draining"/);
    expect(c.logs()).toMatch(/drained: no node locks held/);
  }, 60_000);
});
