/**
 * The node lifecycle end to end with real processes: a conductor, the BMC simulator whose machines
 * boot a real ramdisk agent (gRPC) when powered on and write real (file-backed) disks, and a
 * loopback image server. enroll → manage → provide (automated cleaning) → deploy → active →
 * rebuild (fast-track: zero Reset calls) → undeploy → available; then the faults: the agent dying
 * mid-write, the conductor SIGKILLed mid-deploy, a black-holed BMC during a deploy, and a `wait`
 * step across a conductor restart.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { ApiClient } from '../../cli/api-client.js';
import { startConductorProcess, tmpDir, waitFor, type ConductorProc } from '../helpers.js';
import { admin, startSim, type SimProc } from '../sim/helpers.js';

type N = { uuid: string; provision_state: string; last_error: string | null; power_state: string; driver_internal_info: Record<string, unknown> };

const MiB = 1024 * 1024;

describe('node lifecycle with the simulator, its ramdisk agents and real disks', () => {
  const dir = tmpDir('ironfleet-life-');
  const diskDir = path.join(dir, 'disks');
  const images = new Map<string, Buffer>([
    ['a.raw', randomBytes(3 * MiB)],
    ['b.raw', randomBytes(2 * MiB)],
    ['slow.raw', randomBytes(8 * MiB)],
  ]);
  const sha = (name: string) => createHash('sha256').update(images.get(name)!).digest('hex');
  let server: http.Server;
  let imgBase = '';
  let conductor: ConductorProc;
  let sim: SimProc;
  let api: ApiClient;
  const nodes: string[] = [];
  const env = {
    IRONFLEET_CONDUCTOR__ERASE_DEVICES_PRIORITY: '0',
    IRONFLEET_CONDUCTOR__DEPLOY_CALLBACK_TIMEOUT_S: '20',
    IRONFLEET_AGENT__COMMAND_LOST_GRACE_S: '5',
    IRONFLEET_CONDUCTOR__FAST_TRACK_TIMEOUT_S: '3600',
    IRONFLEET_REDFISH__TIMEOUT_MS: '3000',
    IRONFLEET_REDFISH__BREAKER_THRESHOLD: '100',
    // A BMC operation rides through faults for 10 s here (60 by default), so a dead BMC fails fast.
    IRONFLEET_REDFISH__OPERATION_DEADLINE_S: '10',
    IRONFLEET_POWER_SYNC__INTERVAL_S: '0',
  };
  const db = `sqlite://${path.join(dir, 'ironfleet.db')}`;

  const startConductor = (agentPort = 0, apiPort = 0) => startConductorProcess({ dir, env, database: db, agentPort, apiPort, name: `conductor-${Date.now()}` });
  const node = (i: number) => api.get<N>(`/v1/nodes/${nodes[i]}`);
  const waitState = (i: number, state: string, ms = 60_000) =>
    waitFor(async () => {
      const n = await node(i);
      if (/failed$|^error$/.test(n.provision_state) && n.provision_state !== state) throw new Error(`node ${i} went to ${n.provision_state}: ${n.last_error}`);
      return n.provision_state === state ? n : undefined;
    }, ms, `node ${i} ${state}`);
  /** enroll → manageable → available (automated cleaning by the node's ramdisk agent). */
  const makeAvailable = async (i: number) => {
    await provision(i, 'manage');
    await waitState(i, 'manageable');
    await provision(i, 'provide');
    return waitState(i, 'available');
  };
  /** Makes node i available and starts deploying the slow image; returns once the agent is writing it. */
  const deployUntilWriting = async (i: number) => {
    await makeAvailable(i);
    await setImage(i, 'slow.raw');
    await provision(i, 'active');
    await waitFor(async () => {
      const cmds = await api.get<{ commands: Array<{ command_name: string; command_status: string }> }>(`/v1/nodes/${nodes[i]}/agent/commands`);
      return cmds.commands.some((c) => c.command_name === 'deploy.write_image' && c.command_status === 'RUNNING');
    }, 30_000, 'write_image running');
  };
  const provision = (i: number, target: string, body: Record<string, unknown> = {}) => api.put(`/v1/nodes/${nodes[i]}/states/provision`, { target, ...body });
  const resets = async (i: number) => Number((await admin(sim, 'GET', `/bmcs/${i}`)).json.machine.resets);
  /** The first `bytes` of machine i's first disk (a sparse 8 GiB file). */
  const disk = (i: number, bytes = 16 * MiB) => {
    const fd = openSync(path.join(diskDir, `m${i}-nvme0n1.img`), 'r');
    try {
      const b = Buffer.alloc(bytes);
      readSync(fd, b, 0, bytes, 0);
      return b;
    } finally {
      closeSync(fd);
    }
  };
  const setImage = (i: number, name: string) =>
    api.patch(`/v1/nodes/${nodes[i]}`, [
      { op: 'add', path: '/instance_info/image_source', value: `${imgBase}/${name}` },
      { op: 'add', path: '/instance_info/image_os_hash_algo', value: 'sha256' },
      { op: 'add', path: '/instance_info/image_os_hash_value', value: sha(name) },
    ]);

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      const name = (req.url ?? '/').slice(1);
      const body = images.get(name);
      if (!body) return void res.writeHead(404).end();
      res.writeHead(200, { 'content-length': body.length });
      if (name !== 'slow.raw') return void res.end(body);
      let o = 0;
      const tick = () => {
        if (res.destroyed) return;
        if (o >= body.length) return void res.end();
        res.write(body.subarray(o, o + 256 * 1024));
        o += 256 * 1024;
        setTimeout(tick, 150);
      };
      tick();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    imgBase = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    conductor = await startConductor();
    sim = await startSim(['--bmcs', '5', '--profile', 'ideal', '--http', '--agents', conductor.agentAddr, '--boot-delay-ms', '300', '--disk-dir', diskDir]);
    api = new ApiClient({ url: conductor.apiUrl });
    for (const b of sim.manifest.bmcs) {
      const n = await api.post<{ uuid: string }>('/v1/nodes', {
        driver: 'redfish',
        name: b.name,
        driver_info: { redfish_address: b.address, redfish_username: b.username, redfish_password: b.password, redfish_system_id: b.system_id },
      });
      for (const mac of b.macs) await api.post('/v1/ports', { address: mac, node_uuid: n.uuid });
      nodes.push(n.uuid);
    }
  }, 60_000);

  afterAll(async () => {
    await conductor?.kill('SIGTERM');
    await sim?.stop();
    await new Promise<void>((r) => server.close(() => r()));
  });

  it('enroll → manage → provide (cleaning by the agent) → deploy → rebuild without a power cycle → undeploy → available', async () => {
    await provision(0, 'manage');
    await waitState(0, 'manageable');
    const r0 = await resets(0);
    await provision(0, 'provide');
    const avail = await waitState(0, 'available');
    // Cleaning booted the ramdisk through the BMC (one Reset), the agent ran erase_devices_metadata.
    expect(await resets(0)).toBe(r0 + 1);
    expect(avail.driver_internal_info.agent_connected).toBe(true);
    expect((avail.driver_internal_info.agent_clean_steps as Array<{ step: string }>).map((s) => s.step)).toContain('erase_devices_metadata');
    const hist = await api.get<{ history: Array<{ event: string }> }>(`/v1/nodes/${nodes[0]}/history`);
    expect(hist.history.map((h) => h.event).join('\n')).toMatch(/clean.erase_devices_metadata .* succeeded/);

    const steps = await api.get<{ steps: Array<{ interface: string; step: string; priority: number }> }>(`/v1/nodes/${nodes[0]}/steps?kind=deploy`);
    expect(steps.steps.map((s) => `${s.interface}.${s.step}`)).toEqual(['deploy.boot_agent', 'deploy.write_image', 'deploy.prepare_instance_boot', 'deploy.boot_instance']);

    await setImage(0, 'a.raw');
    const r1 = await resets(0);
    await provision(0, 'active');
    await waitState(0, 'active');
    expect(disk(0).subarray(0, images.get('a.raw')!.length).equals(images.get('a.raw')!)).toBe(true);
    expect(await resets(0)).toBe(r1); // fast-track: the agent from cleaning was reused

    await setImage(0, 'b.raw');
    await provision(0, 'rebuild');
    const rebuilt = await waitState(0, 'active');
    expect(disk(0).subarray(0, images.get('b.raw')!.length).equals(images.get('b.raw')!)).toBe(true);
    expect(await resets(0)).toBe(r1); // zero Reset calls for the rebuild
    expect(rebuilt.last_error).toBeNull();

    await provision(0, 'deleted');
    const back = await waitState(0, 'available');
    expect(back.last_error).toBeNull();
    // Automated cleaning after undeploy wiped the partition-table area of the disk.
    expect(disk(0).subarray(0, MiB).every((b) => b === 0)).toBe(true);
  }, 120_000);

  it('the agent dying mid-write fails the deploy with a clear last_error', async () => {
    await deployUntilWriting(1);
    expect((await admin(sim, 'POST', '/bmcs/1/faults', { agent_crash: true })).json.agent_was_running).toBe(true);
    // Noticed when the stream drops (grace 5 s here), not at the 20 s call-back timeout.
    const failed = await waitState(1, 'deploy failed', 60_000);
    expect(failed.last_error).toMatch(/deploy step deploy.write_image failed: agent lost while running deploy.write_image: connection lost \(.*\) and not back within 5s/);
  }, 120_000);

  it('the machine rebooting under a running command: the new boot is refused (token of the old boot), the deploy fails after the grace', async () => {
    await deployUntilWriting(4);
    const boots = Number((await admin(sim, 'GET', '/bmcs/4')).json.agent.boots);
    // Power cut and back on behind the conductor's back: the ramdisk boots again (new boot id) and
    // looks up without the token the old boot was given — refused, so it cannot take the node over.
    await admin(sim, 'POST', '/bmcs/4/faults', { power: 'off' });
    await admin(sim, 'POST', '/bmcs/4/faults', { power: 'on' });
    const failed = await waitState(4, 'deploy failed', 60_000);
    expect(failed.last_error).toMatch(/agent lost while running deploy.write_image: connection lost/);
    expect(Number((await admin(sim, 'GET', '/bmcs/4')).json.agent.boots)).toBe(boots + 1);
    expect(conductor.logs()).toMatch(/agent token rejected/);
  }, 120_000);

  it('a black-holed BMC during a deploy fails it after the operation deadline, with the whole story, not a hang', async () => {
    await makeAvailable(2);
    await setImage(2, 'a.raw');
    // Fast-track off for this node: the deploy must go through the BMC.
    await api.patch(`/v1/nodes/${nodes[2]}`, [{ op: 'add', path: '/driver_info/fast_track', value: false }]);
    await admin(sim, 'POST', '/bmcs/2/faults', { black_hole: true });
    try {
      await provision(2, 'active');
      const failed = await waitState(2, 'deploy failed', 60_000);
      // The boot device is the first thing that needs the BMC; once it has failed for the whole
      // deadline the step fails — a second deadline on the reboot would not help.
      const m = failed.last_error?.match(/^deploy step deploy\.boot_agent failed: RF_TIMEOUT: set boot device pxe on BMC https?:\/\/[^ ]+: tried \d+ times over (\d+\.\d) s \(answers: RF_TIMEOUT ×\d+\)/);
      expect(m, failed.last_error ?? '').toBeTruthy();
      expect(Number(m![1])).toBeGreaterThanOrEqual(9);
      expect(Number(m![1])).toBeLessThan(20);
    } finally {
      await admin(sim, 'POST', '/bmcs/2/faults', { black_hole: false });
    }
  }, 120_000);

  it('conductor SIGKILLed mid-deploy: after restart the write result is collected and the node goes active', async () => {
    await makeAvailable(3);
    await setImage(3, 'slow.raw');
    await provision(3, 'active');
    await waitFor(async () => (await node(3)).provision_state === 'wait call-back', 30_000, 'deploy waiting on the agent');
    await conductor.kill('SIGKILL');
    conductor = await startConductor(conductor.agentPort, conductor.apiPort);
    api = new ApiClient({ url: conductor.apiUrl });
    const n = await waitState(3, 'active', 60_000);
    expect(n.last_error).toBeNull();
    expect(disk(3).subarray(0, images.get('slow.raw')!.length).equals(images.get('slow.raw')!)).toBe(true);
    expect(n.driver_internal_info).not.toHaveProperty('flow');
  }, 120_000);

  it('a wait step survives a conductor restart (manual cleaning with flow control only)', async () => {
    // Node 0 is available after the first test; manage it back and clean manually.
    await provision(0, 'manage');
    await waitState(0, 'manageable');
    const t0 = Date.now();
    await provision(0, 'clean', { clean_steps: [{ interface: 'deploy', step: 'wait', args: { seconds: 6 } }] });
    await waitFor(async () => (await node(0)).provision_state === 'clean wait', 10_000, 'clean wait');
    await conductor.kill('SIGKILL');
    conductor = await startConductor(conductor.agentPort, conductor.apiPort);
    api = new ApiClient({ url: conductor.apiUrl });
    const n = await waitState(0, 'manageable', 30_000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(6000);
    expect(n.last_error).toBeNull();
  }, 60_000);

  it('bad user steps are refused naming the field', async () => {
    await expect(provision(0, 'clean', { clean_steps: [{ interface: 'deploy', step: 'wait' }] })).rejects.toMatchObject({ status: 400, message: /clean_steps\.0\.args\.seconds/ });
    await expect(provision(0, 'clean', { clean_steps: [{ interface: 'deploy', step: 'rm_rf' }] })).rejects.toMatchObject({ status: 400, message: /clean_steps\.0: unknown step deploy\.rm_rf/ });
    await expect(api.put(`/v1/nodes/${nodes[0]}/states/raid`, { logical_disks: [{ raid_level: '7', size_gb: 'MAX', controller: 'software' }] })).rejects.toMatchObject({ status: 400, message: /target_raid_config\.logical_disks\.0\.raid_level/ });
  });
});
