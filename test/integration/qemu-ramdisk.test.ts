/**
 * The deploy ramdisk for real: `ironfleet ramdisk build` (Debian kernel + busybox + Node + the
 * bundled agent + mdadm and disk tools), booted by the simulator's BMC in a qemu VM (TCG) with
 * three virtio disks when the conductor powers the machine on through Redfish. The agent inside
 * connects over a guestfwd to the conductor on the host (user networking, restrict=on), reports
 * its inventory, builds a real md RAID-1 across two disks with mdadm, writes a GPT disk image
 * onto the array with sha256 verification and reads it back from the device; a second deploy
 * reuses the running VM (fast-track); a wrong checksum fails the deploy and leaves nothing
 * bootable. After power-off the host reads both mirror members and finds the image on each.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, openSync, readFileSync, readSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { ApiClient } from '../../cli/api-client.js';
import { buildRamdisk, type RamdiskManifest } from '../../agent/ramdisk/build.js';
import { GUEST_HOST } from '../../sim/qemu-ramdisk.js';
import { ROOT, startConductorProcess, tmpDir, waitFor, type ConductorProc } from '../helpers.js';
import { admin, startSim, type SimProc } from '../sim/helpers.js';

type N = { uuid: string; provision_state: string; last_error: string | null; driver_internal_info: Record<string, unknown> };
type Cmd = { command_name: string; command_status: string; command_result: Record<string, unknown> | null; created_at: string };

const MiB = 1024 * 1024;

/**
 * A small GPT disk image (one partition starting with a marker), built with sgdisk. 20 MiB: above
 * the agent's inline-write limit (16 MiB), so the deploys in the VM go through the image-sink
 * worker thread, which the ramdisk ships as its own bundled file.
 */
function diskImage(dir: string, marker: string): Buffer {
  const f = path.join(dir, `${marker}.img`);
  writeFileSync(f, Buffer.alloc(20 * MiB));
  execFileSync('sgdisk', ['-o', '-n', '1:2048:+8M', '-c', '1:ironfleet-test', f], { stdio: 'ignore' });
  const b = readFileSync(f);
  b.write(`${marker}\n`, 2048 * 512);
  return b;
}

/** Bytes of a disk file. */
function readAt(file: string, pos: number, len: number): Buffer {
  const fd = openSync(file, 'r');
  try {
    const b = Buffer.alloc(len);
    readSync(fd, b, 0, len, pos);
    return b;
  } finally {
    closeSync(fd);
  }
}

/** Where an md (1.2 superblock) member's data starts inside a disk file, if the partition is one. */
function mdMemberData(disk: string): number[] {
  let out: number[];
  try {
    out = execFileSync('partx', ['-g', '-o', 'START', disk], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim().split('\n').filter(Boolean).map(Number);
  } catch {
    return []; // no partition table
  }
  const found: number[] = [];
  for (const start of out) {
    const sb = readAt(disk, start * 512 + 4096, 256);
    if (sb.readUInt32LE(0) !== 0xa92b4efc) continue;
    found.push(start * 512 + Number(sb.readBigUInt64LE(128)) * 512);
  }
  return found;
}

describe('the deploy ramdisk in qemu (TCG): inventory, RAID-1 with real mdadm, verified write, fast-track, checksum failure', () => {
  const dir = tmpDir('ironfleet-qemu-');
  const diskDir = path.join(dir, 'disks');
  let ramdisk: RamdiskManifest;
  const images = new Map<string, Buffer>();
  const sha = (name: string) => createHash('sha256').update(images.get(name)!).digest('hex');
  let server: http.Server;
  let imgPort = 0;
  let conductor: ConductorProc;
  let sim: SimProc;
  let api: ApiClient;
  let uuid = '';
  let mac = '';
  const figures: Record<string, number | string> = {};

  const node = () => api.get<N>(`/v1/nodes/${uuid}`);
  const waitState = (state: string, ms: number) =>
    waitFor(async () => {
      const n = await node();
      if (/failed$/.test(n.provision_state) && n.provision_state !== state) throw new Error(`node went to ${n.provision_state}: ${n.last_error}`);
      return n.provision_state === state && !(n as { reservation?: string | null }).reservation ? n : undefined;
    }, ms, `node ${state}`);
  const provision = (target: string) => api.put(`/v1/nodes/${uuid}/states/provision`, { target });
  const bmc = async () => (await admin(sim, 'GET', '/bmcs/0')).json as { machine: { resets: number; boot: { target: string; enabled: string } }; agent: { running: boolean; boots: number } };
  const setImage = (name: string, checksum = sha(name)) =>
    api.patch(`/v1/nodes/${uuid}`, [
      { op: 'add', path: '/instance_info/image_source', value: `http://${GUEST_HOST}:${imgPort}/${name}` },
      { op: 'add', path: '/instance_info/image_os_hash_algo', value: 'sha256' },
      { op: 'add', path: '/instance_info/image_os_hash_value', value: checksum },
      { op: 'add', path: '/instance_info/image_verify', value: true },
    ]);
  const lastWrite = async () => {
    const { commands } = await api.get<{ commands: Cmd[] }>(`/v1/nodes/${uuid}/agent/commands`);
    return commands.filter((c) => c.command_name === 'deploy.write_image').sort((a, b) => Date.parse(b.created_at) - Date.parse(a.created_at))[0]!;
  };

  beforeAll(async () => {
    let t = Date.now();
    ramdisk = await buildRamdisk({ outDir: path.join(ROOT, 'var', 'ramdisk') });
    figures.ramdisk_build_s = ramdisk.cached ? `cached (built in ${(ramdisk.build_ms / 1000).toFixed(1)} s)` : ((Date.now() - t) / 1000).toFixed(1);
    figures.initramfs_mib = (ramdisk.initramfs_bytes / MiB).toFixed(1);
    images.set('a.img', diskImage(dir, 'IRONFLEET-IMAGE-A'));
    images.set('b.img', diskImage(dir, 'IRONFLEET-IMAGE-B'));
    server = http.createServer((req, res) => {
      const body = images.get((req.url ?? '/').slice(1));
      if (!body) return void res.writeHead(404).end();
      res.writeHead(200, { 'content-length': body.length }).end(body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    imgPort = (server.address() as AddressInfo).port;
    conductor = await startConductorProcess({
      dir,
      env: {
        IRONFLEET_CONDUCTOR__ERASE_DEVICES_PRIORITY: '0',
        IRONFLEET_CONDUCTOR__DEPLOY_CALLBACK_TIMEOUT_S: '240',
        IRONFLEET_CONDUCTOR__FAST_TRACK_TIMEOUT_S: '3600',
        IRONFLEET_POWER_SYNC__INTERVAL_S: '0',
        IRONFLEET_AGENT__HEARTBEAT_INTERVAL_S: '10',
      },
    });
    sim = await startSim(['--bmcs', '1', '--profile', 'ideal', '--http', '--agents', conductor.agentAddr, '--disk-dir', diskDir,
      '--qemu-ramdisk', path.join(ROOT, 'var', 'ramdisk'), '--qemu-disks', '3', '--qemu-disk-mib', '256', '--qemu-forward', String(imgPort)]);
    api = new ApiClient({ url: conductor.apiUrl });
    const b = sim.manifest.bmcs[0]!;
    mac = b.macs[0]!;
    const n = await api.post<{ uuid: string }>('/v1/nodes', {
      driver: 'redfish',
      name: b.name,
      driver_info: { redfish_address: b.address, redfish_username: b.username, redfish_password: b.password, redfish_system_id: b.system_id },
    });
    uuid = n.uuid;
    for (const m of b.macs) await api.post('/v1/ports', { address: m, node_uuid: uuid });
  }, 300_000);

  afterAll(async () => {
    console.log(`qemu ramdisk figures: ${JSON.stringify(figures)}`);
    await sim?.stop();
    await conductor?.kill('SIGTERM');
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  });

  it('inspection boots the ramdisk in the VM through Redfish; the inventory shows three virtio disks and the VM NIC MAC', async () => {
    await provision('manage');
    await waitState('manageable', 60_000);
    const t0 = Date.now();
    await provision('inspect');
    const connected = waitFor(async () => ((await api.get<{ connected: boolean }>(`/v1/nodes/${uuid}/agent`)).connected ? Date.now() : undefined), 240_000, 'agent connected');
    figures.boot_to_connected_s = ((await connected) - t0) / 1000;
    await waitState('manageable', 240_000);
    const inv = (await api.get<{ inventory: { disks: Array<{ name: string; size: number }>; interfaces: Array<{ mac_address: string }> } }>(`/v1/nodes/${uuid}/inventory`)).inventory;
    expect(inv.disks.map((d) => d.name).sort()).toEqual(['/dev/vda', '/dev/vdb', '/dev/vdc']);
    expect(inv.disks.every((d) => d.size === 256 * MiB)).toBe(true);
    expect(inv.interfaces.map((i) => i.mac_address.toLowerCase())).toContain(mac.toLowerCase());
    expect((await bmc()).agent.boots).toBe(1);
  }, 300_000);

  it('a wrong checksum fails the deploy in the VM with a clear last_error; nothing is marked bootable', async () => {
    await api.put(`/v1/nodes/${uuid}/states/raid`, {
      logical_disks: [{ size_gb: 'MAX', raid_level: '1', controller: 'software', is_root_volume: true, physical_disks: [{ name: '/dev/vda' }, { name: '/dev/vdb' }] }],
    });
    await provision('provide');
    await waitState('available', 240_000);
    await setImage('a.img', sha('b.img'));
    await provision('active');
    const n = await waitState('deploy failed', 240_000);
    expect(n.last_error).toMatch(/deploy\.write_image failed: .*CHECKSUM_MISMATCH: checksum mismatch/);
    const b = await bmc();
    expect(b.machine.boot.target).not.toBe('Hdd');
    const hist = await api.get<{ history: Array<{ event: string }> }>(`/v1/nodes/${uuid}/history`);
    expect(hist.history.map((h) => h.event).join('\n')).not.toMatch(/prepare_instance_boot/);
  }, 300_000);

  it('deploys onto a real md RAID-1 across two disks; the agent reads the image back from the array', async () => {
    const before = await bmc();
    await setImage('a.img');
    await provision('active');
    const n = await waitState('active', 300_000);
    const raid = n.driver_internal_info.raid_config as Array<{ device: string; level: string; members: string[]; is_root_volume?: boolean }>;
    const root = raid.find((r) => r.is_root_volume)!;
    expect(root.level).toBe('1');
    expect(root.device).toMatch(/^\/dev\/md\d+$/);
    expect(root.members.map((m) => m.replace(/\d+$/, '')).sort()).toEqual(['/dev/vda', '/dev/vdb']);
    const w = await lastWrite();
    expect(w.command_status).toBe('SUCCEEDED');
    expect(w.command_result).toMatchObject({ target: root.device, checksum: sha('a.img'), read_back_checksum: sha('a.img') });
    // Fast-track from the failed deploy: the same boot of the VM.
    expect((await bmc()).agent.boots).toBe(before.agent.boots);
  }, 360_000);

  it('fast-track: a second deploy (rebuild) runs on the same running VM, no Reset, no reboot', async () => {
    const before = await bmc();
    await setImage('b.img');
    await provision('rebuild');
    await waitState('active', 300_000);
    const after = await bmc();
    expect(after.machine.resets).toBe(before.machine.resets);
    expect(after.agent.boots).toBe(before.agent.boots);
    expect(after.agent.running).toBe(true);
    expect((await lastWrite()).command_result).toMatchObject({ read_back_checksum: sha('b.img') });
  }, 360_000);

  it('after power-off both mirror members hold the image (read on the host); the third disk holds none', async () => {
    await api.put(`/v1/nodes/${uuid}/states/power`, { target: 'power off' });
    await waitFor(async () => ((await bmc()).agent.running ? undefined : true), 60_000, 'VM stopped');
    const img = images.get('b.img')!;
    for (const d of ['vda', 'vdb']) {
      const file = path.join(diskDir, `m0-${d}.img`);
      const data = mdMemberData(file);
      expect(data.length, `${d} holds an md member`).toBeGreaterThan(0);
      const found = data.some((off) => readAt(file, off, img.length).equals(img));
      expect(found, `${d}: the image is on the mirror member`).toBe(true);
    }
    expect(mdMemberData(path.join(diskDir, 'm0-vdc.img'))).toEqual([]);
  }, 120_000);
});
