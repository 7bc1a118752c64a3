/**
 * Several conductors with real ramdisk agents (the simulator boots one per power-on, given the
 * list of all three conductors' agent endpoints): an agent reaching a conductor that does not own
 * its node is redirected to the owner, deploys complete whichever conductor's API was used, and
 * when the owner is killed with SIGKILL during (b) a deploy waiting on write_image and (c) a
 * deploy waiting for the agent to call back, the agents reconnect through the list, are sent to
 * the new owner, and both deploys finish active — the image on disk, no lock left.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import path from 'node:path';
import { freshPgDatabase, serveSlowly, tmpDir, waitFor, type ConductorProc } from '../helpers.js';
import { admin, startSim, type SimProc } from '../sim/helpers.js';
import { callVia, clusterEnv, leftovers, startThree } from './cluster-helpers.js';

type N = { uuid: string; name: string; provision_state: string; conductor: string | null; last_error: string | null };
const MiB = 1024 * 1024;

describe('three conductors with ramdisk agents', () => {
  const dir = tmpDir('ironfleet-ha-agents-');
  const image = randomBytes(24 * MiB);
  const sha = createHash('sha256').update(image).digest('hex');
  let served: Awaited<ReturnType<typeof serveSlowly>> | undefined;
  let imageUrl = '';
  let db = '';
  let sim: SimProc;
  const conductors = new Map<string, ConductorProc>();
  const env = {
    ...clusterEnv(dir),
    IRONFLEET_POWER_SYNC__INTERVAL_S: '0',
    IRONFLEET_CONDUCTOR__ERASE_DEVICES_PRIORITY: '0',
    IRONFLEET_CONDUCTOR__FAST_TRACK_TIMEOUT_S: '3600',
    IRONFLEET_AGENT__COMMAND_LOST_GRACE_S: '30',
  };
  const call = <T = unknown>(c: string, method: string, p: string, body?: unknown) => callVia<T>(conductors.get(c)!, method, p, body);
  const via = () => [...conductors.keys()][0]!;
  const node = async (uuid: string) => (await call<N>(via(), 'GET', `/v1/nodes/${uuid}`)).json;
  const waitState = (uuid: string, state: string, ms = 60_000) =>
    waitFor(async () => {
      const n = await node(uuid);
      if (/failed$/.test(n.provision_state)) throw new Error(`${n.name}: ${n.provision_state}: ${n.last_error}`);
      return n.provision_state === state ? n : undefined;
    }, ms, `${uuid} ${state}`);
  const disk = (name: string) => {
    const i = sim.manifest.bmcs.findIndex((b) => b.name === name);
    const fd = openSync(path.join(dir, 'disks', `m${i}-nvme0n1.img`), 'r');
    try {
      const b = Buffer.alloc(image.length);
      readSync(fd, b, 0, b.length, 0);
      return b;
    } finally {
      closeSync(fd);
    }
  };

  beforeAll(async () => {
    served = await serveSlowly(image, 150);
    imageUrl = served.url;
    db = await freshPgDatabase(inject('pgUrl'));
    await startThree(dir, db, env, conductors);
    const agents = [...conductors.values()].map((c) => c.agentAddr).join(',');
    sim = await startSim(['--bmcs', '6', '--profile', 'ideal', '--http', '--agents', agents, '--boot-delay-ms', '2500', '--disk-dir', path.join(dir, 'disks')]);
    for (const b of sim.manifest.bmcs) {
      const n = await call<N>('c1', 'POST', '/v1/nodes', { driver: 'redfish', name: b.name, driver_info: { redfish_address: b.address, redfish_username: b.username, redfish_password: b.password, redfish_system_id: b.system_id } });
      for (const mac of b.macs) await call('c1', 'POST', '/v1/ports', { address: mac, node_uuid: n.json.uuid });
      await call('c1', 'PATCH', `/v1/nodes/${n.json.uuid}`, [
        { op: 'add', path: '/instance_info/image_source', value: imageUrl },
        { op: 'add', path: '/instance_info/image_checksum', value: sha },
      ]);
    }
  }, 120_000);

  afterAll(async () => {
    for (const c of conductors.values()) await c.kill('SIGKILL');
    await sim?.stop();
    await served?.close();
  });

  it('agents are redirected to their nodes\' owners; cleaning by agents completes on every owner', async () => {
    const all = (await call<{ nodes: N[] }>('c1', 'GET', '/v1/nodes?detail=true')).json.nodes;
    for (const n of all) await call('c2', 'PUT', `/v1/nodes/${n.uuid}/states/provision`, { target: 'manage' });
    for (const n of all) await waitState(n.uuid, 'manageable');
    for (const n of all) await call('c3', 'PUT', `/v1/nodes/${n.uuid}/states/provision`, { target: 'provide' });
    for (const n of all) await waitState(n.uuid, 'available', 90_000);
    const owners = new Set((await call<{ nodes: N[] }>('c1', 'GET', '/v1/nodes?detail=true')).json.nodes.map((n) => n.conductor));
    expect(owners.size).toBeGreaterThan(1);
    // Every agent ended up on its owner (redirected when it first reached another conductor).
    const logs = [...conductors.values()].map((c) => c.logs()).join('\n');
    expect(logs).toMatch(/agent redirected to the conductor that owns its node/);
  }, 180_000);

  it('SIGKILL the owner during a write_image and a call-back wait: both deploys finish on the new owner', async () => {
    const all = (await call<{ nodes: N[] }>('c1', 'GET', '/v1/nodes?detail=true')).json.nodes;
    const count = new Map<string, N[]>();
    for (const n of all) count.set(n.conductor!, [...(count.get(n.conductor!) ?? []), n]);
    const [victim, theirs] = [...count].sort((a, b) => b[1].length - a[1].length)[0]!;
    expect(theirs.length).toBeGreaterThanOrEqual(2);
    const [writing, calling] = theirs as [N, N];
    const survivor = [...conductors.keys()].find((c) => c !== victim)!;
    // (c): its agent is powered off first, so the deploy boots a fresh one and waits for its call-back.
    expect((await call(survivor, 'PUT', `/v1/nodes/${calling.uuid}/states/power`, { target: 'power off' })).status).toBe(202);
    await waitFor(async () => (await call<{ power_state: string }>(survivor, 'GET', `/v1/nodes/${calling.uuid}`)).json.power_state === 'power off' || undefined, 30_000, 'calling off');
    // (b): the fast-track agent starts writing the (slow) image.
    expect((await call(survivor, 'PUT', `/v1/nodes/${writing.uuid}/states/provision`, { target: 'active' })).status).toBe(202);
    await waitFor(async () => {
      const cmds = (await call<{ commands: Array<{ command_name: string; command_status: string }> }>(survivor, 'GET', `/v1/nodes/${writing.uuid}/agent/commands`)).json.commands;
      return cmds.some((c) => c.command_name === 'deploy.write_image' && c.command_status === 'RUNNING') || undefined;
    }, 60_000, 'write_image running');
    expect((await call(survivor, 'PUT', `/v1/nodes/${calling.uuid}/states/provision`, { target: 'active' })).status).toBe(202);
    await waitFor(async () => (await node(calling.uuid)).provision_state === 'wait call-back' || undefined, 30_000, 'wait call-back');

    await conductors.get(victim)!.kill('SIGKILL');
    conductors.delete(victim);
    const a = await waitState(writing.uuid, 'active', 90_000);
    const b = await waitState(calling.uuid, 'active', 90_000);
    expect(a.last_error).toBeNull();
    expect(b.last_error).toBeNull();
    expect(a.conductor).not.toBe(victim);
    expect(disk(writing.name).equals(image)).toBe(true);
    expect(disk(calling.name).equals(image)).toBe(true);
    expect(await leftovers(db)).toEqual({ locks: 0, running: 0 });
  }, 240_000);

  it('SIGKILL the owner in the middle of a conductor-side step (boot_agent on a stalled BMC): the new owner resumes the step', async () => {
    const all = (await call<{ nodes: Array<N & { reservation: string | null }> }>(via(), 'GET', '/v1/nodes?detail=true')).json.nodes;
    const n = all.find((x) => x.provision_state === 'available')!;
    const owner = n.conductor!;
    const other = [...conductors.keys()].find((c) => c !== owner)!;
    const bmc = sim.manifest.bmcs.findIndex((b) => b.name === n.name);
    expect((await call(other, 'PUT', `/v1/nodes/${n.uuid}/states/power`, { target: 'power off' })).status).toBe(202);
    await waitFor(async () => (await node(n.uuid)).provision_state === 'available' && (await call<{ power_state: string }>(other, 'GET', `/v1/nodes/${n.uuid}`)).json.power_state === 'power off' || undefined, 30_000, 'off');
    // The BMC stops answering: boot_agent hangs inside its boot-device request, lock held.
    await admin(sim, 'POST', `/bmcs/${bmc}/faults`, { black_hole: true });
    expect((await call(other, 'PUT', `/v1/nodes/${n.uuid}/states/provision`, { target: 'active' })).status).toBe(202);
    await waitFor(async () => {
      const x = (await call<N & { reservation: string | null }>(other, 'GET', `/v1/nodes/${n.uuid}`)).json;
      return (x.provision_state === 'deploying' && x.reservation === owner) || undefined;
    }, 20_000, 'mid-step');
    await new Promise((r) => setTimeout(r, 1000));
    await conductors.get(owner)!.kill('SIGKILL');
    conductors.delete(owner);
    await admin(sim, 'POST', `/bmcs/${bmc}/faults`, { black_hole: false });
    const done = await waitState(n.uuid, 'active', 120_000);
    expect(done.last_error).toBeNull();
    expect(done.conductor).toBe(other);
    const history = (await call<{ history: Array<{ event: string }> }>(other, 'GET', `/v1/nodes/${n.uuid}/history`)).json.history.map((h) => h.event).join('\n');
    expect(history).toMatch(new RegExp(`Conductor ${owner} went offline in the middle of deploy step deploy.boot_agent; resuming it here`));
    expect(disk(n.name).equals(image)).toBe(true);
  }, 180_000);
});
