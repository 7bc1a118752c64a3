/**
 * Deploy steps reported by the agent: a ramdisk configured to give an in-band step a priority
 * (here deploy.erase_devices_metadata at 85, as an operator would bake into the image) has it run
 * on every deploy, merged by priority between the conductor's steps; the agent is asked once per
 * boot. Real conductor, simulator with ramdisk agents, loopback image server.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import { createHash, randomBytes } from 'node:crypto';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { ApiClient } from '../../cli/api-client.js';
import { startConductorProcess, tmpDir, waitFor, type ConductorProc } from '../helpers.js';
import { startSim, type SimProc } from '../sim/helpers.js';

type Cmd = { command_name: string; command_status: string; created_at: string };

describe('agent-reported deploy steps', () => {
  const dir = tmpDir('ironfleet-dsteps-');
  const image = randomBytes(1024 * 1024);
  let server: http.Server;
  let conductor: ConductorProc;
  let sim: SimProc;
  let api: ApiClient;
  let uuid = '';

  const waitState = (state: string) =>
    waitFor(async () => {
      const n = await api.get<{ provision_state: string; reservation: string | null }>(`/v1/nodes/${uuid}`);
      return n.provision_state === state && !n.reservation ? n : undefined;
    }, 60_000, state);
  const commands = async () => (await api.get<{ commands: Cmd[] }>(`/v1/nodes/${uuid}/agent/commands`)).commands.sort((a, b) => Date.parse(a.created_at) - Date.parse(b.created_at));
  const steps = () => api.get<{ complete: boolean; steps: Array<{ interface: string; step: string; priority: number }> }>(`/v1/nodes/${uuid}/steps?kind=deploy`);

  beforeAll(async () => {
    server = http.createServer((_req, res) => res.writeHead(200, { 'content-length': image.length }).end(image));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    conductor = await startConductorProcess({ dir, env: { IRONFLEET_CONDUCTOR__ERASE_DEVICES_PRIORITY: '0', IRONFLEET_POWER_SYNC__INTERVAL_S: '0' } });
    sim = await startSim(['--bmcs', '1', '--profile', 'ideal', '--http', '--agents', conductor.agentAddr, '--boot-delay-ms', '200', '--disk-dir', path.join(dir, 'disks'),
      '--agent-deploy-step-priorities', 'deploy.erase_devices_metadata:85']);
    api = new ApiClient({ url: conductor.apiUrl });
    const b = sim.manifest.bmcs[0]!;
    uuid = (await api.post<{ uuid: string }>('/v1/nodes', {
      driver: 'redfish',
      driver_info: { redfish_address: b.address, redfish_username: b.username, redfish_password: b.password, redfish_system_id: b.system_id },
      instance_info: { image_source: `http://127.0.0.1:${(server.address() as AddressInfo).port}/i.raw`, image_os_hash_algo: 'sha256', image_os_hash_value: createHash('sha256').update(image).digest('hex') },
    })).uuid;
    for (const m of b.macs) await api.post('/v1/ports', { address: m, node_uuid: uuid });
  }, 60_000);

  afterAll(async () => {
    await conductor?.kill('SIGTERM');
    await sim?.stop();
    await new Promise<void>((r) => server.close(() => r()));
  });

  it('runs the step the agent gives a priority, between boot_agent and write_image, asking once per boot', async () => {
    await api.put(`/v1/nodes/${uuid}/states/provision`, { target: 'manage' });
    await waitState('manageable');
    await api.put(`/v1/nodes/${uuid}/states/provision`, { target: 'provide' });
    await waitState('available');
    expect((await steps()).complete).toBe(false); // the agent has not been asked yet

    await api.put(`/v1/nodes/${uuid}/states/provision`, { target: 'active' });
    await waitState('active');
    const deploy = (await commands()).filter((c) => c.command_name.startsWith('deploy.') || c.command_name === 'clean.erase_devices_metadata').slice(-3);
    expect(deploy.map((c) => `${c.command_name} ${c.command_status}`)).toEqual([
      'deploy.get_deploy_steps SUCCEEDED',
      'clean.erase_devices_metadata SUCCEEDED',
      'deploy.write_image SUCCEEDED',
    ]);
    const s = await steps();
    expect(s.complete).toBe(true);
    expect(s.steps.map((x) => `${x.interface}.${x.step}:${x.priority}`)).toEqual([
      'deploy.boot_agent:100',
      'deploy.erase_devices_metadata:85',
      'deploy.write_image:80',
      'deploy.prepare_instance_boot:60',
      'deploy.boot_instance:20',
    ]);

    // Rebuild on the same boot (fast-track): the step runs again, the list is not asked for again.
    await api.put(`/v1/nodes/${uuid}/states/provision`, { target: 'rebuild' });
    await waitState('active');
    const all = await commands();
    expect(all.filter((c) => c.command_name === 'deploy.get_deploy_steps')).toHaveLength(1);
    expect(all.filter((c) => c.command_name === 'deploy.write_image')).toHaveLength(2);
    expect(all.filter((c) => c.command_name === 'clean.erase_devices_metadata').length).toBeGreaterThanOrEqual(2);
  }, 120_000);
});
