/**
 * A power action ends the ramdisk boot that was running: the agent of that boot, reconnecting in
 * the moment before the power action lands (here it never lands: fake hardware), must not be
 * issued a fresh token — that would lock the next boot out (seen in the lab as nodes stuck in
 * `wait call-back`). Real conductor and agent processes.
 */
import { describe, expect, it } from 'vitest';
import path from 'node:path';
import { ApiClient } from '../../cli/api-client.js';
import { hostMacs } from '../../agent/hardware.js';
import { startAgentProcess, startConductorProcess, tmpDir, waitFor } from '../helpers.js';

describe('agent boots and power actions', () => {
  it('after a reboot through the API the old boot cannot reconnect (refused, no token issued)', async () => {
    const dir = tmpDir('ironfleet-boot-');
    const c = await startConductorProcess({ dir });
    const api = new ApiClient({ url: c.apiUrl });
    const n = await api.post<{ uuid: string }>('/v1/nodes', { driver: 'fake-hardware', name: 'boot' });
    for (const mac of hostMacs()) await api.post('/v1/ports', { address: mac, node_uuid: n.uuid });
    const agent = startAgentProcess({ dir, conductor: c.agentAddr, stateDir: path.join(dir, 'state') });
    try {
      const before = await waitFor(async () => {
        const a = await api.get<{ connected: boolean; boot_id: string }>(`/v1/nodes/${n.uuid}/agent`);
        return a.connected ? a : undefined;
      }, 30_000, 'agent');
      await api.put(`/v1/nodes/${n.uuid}/states/power`, { target: 'rebooting' });
      // The same boot (same boot id) reconnects and is refused with a reason it logs.
      await waitFor(() => /was ended by a power action; only a new boot is accepted/.test(agent.logs()), 20_000, 'refusal seen by the agent');
      const node = await api.get<{ driver_internal_info: Record<string, unknown> }>(`/v1/nodes/${n.uuid}`);
      expect(node.driver_internal_info.retired_agent_boot_id).toBe(before.boot_id);
      expect((await api.get<{ connected: boolean }>(`/v1/nodes/${n.uuid}/agent`)).connected).toBe(false);
      // One accepted connection in the conductor's log: the first one.
      expect(c.logs().match(/"msg":"agent connected"/g)).toHaveLength(1);
    } finally {
      await agent.kill('SIGTERM');
      await c.kill('SIGTERM');
    }
  }, 60_000);
});
