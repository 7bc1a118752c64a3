/**
 * The lab: a self-contained fleet on one machine. The built-in Redfish simulator (its own
 * processes, HTTPS, realistic BMC behaviour) is enrolled into a conductor running on its embedded
 * SQLite database; simulated ramdisk agents (another process, real gRPC streams) connect; power
 * sync, health, sensors, provisioning and agent commands run; the API listens on Ironic's port for
 * `baremetal`. Bounded: it stops by itself after --duration seconds.
 */
import { openFdCount, openFileLimit } from '../shared/fd-limits.js';
import { stepsOf } from '../conductor/steps/registry.js';
import { forEachLimit } from '../shared/pool.js';
import { mkdirSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { destination } from 'pino';
import { compileConfig } from '../conductor/config.js';
import { startConductor, type RunningConductor } from '../conductor/service.js';
import { createLogger } from '../shared/logger.js';
import { ApiClient, ApiError } from './api-client.js';
import type { Manifest } from '../sim/fleet.js';
import { buildRamdisk } from '../agent/ramdisk/build.js';
import { GUEST_HOST } from '../sim/qemu-ramdisk.js';

export interface LabOptions {
  nodes: number;
  apiPort: number;
  agentPort: number;
  bmcPort: number;
  simAdminPort: number;
  profile: string;
  dir: string;
  durationS: number;
  /** One more machine: a qemu VM booting the built deploy ramdisk. */
  qemu?: boolean;
  /** The conductor's log level (its log file). @default info */
  logLevel?: 'trace' | 'debug' | 'info' | 'warn' | 'error';
}

const SEED = 'lab';
const BIN = fileURLToPath(new URL('../../bin/ironfleet.js', import.meta.url));

function startChild(args: string[], readyPrefix: string): Promise<{ child: ChildProcess; line: Record<string, unknown> }> {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const l = buf.split('\n').find((x) => x.startsWith(readyPrefix));
      if (l) resolve({ child, line: JSON.parse(l) });
    });
    child.once('exit', (code) => reject(new Error(`${args[0]} exited with ${code}`)));
  });
}

export async function runLab(o: LabOptions): Promise<void> {
  const dir = path.resolve(o.dir);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const t0 = Date.now();
  const say = (s: string) => console.log(`[lab ${((Date.now() - t0) / 1000).toFixed(1).padStart(6)}s] ${s}`);
  const children: ChildProcess[] = [];
  let running: RunningConductor | undefined;
  let stopping = false;
  const stop = async (why: string) => {
    if (stopping) return;
    stopping = true;
    say(`stopping (${why})`);
    await running?.stop(); // logs out of every BMC first
    for (const c of children) c.kill('SIGTERM');
    say('stopped');
    process.exit(0);
  };
  process.once('SIGINT', () => void stop('SIGINT'));
  process.once('SIGTERM', () => void stop('SIGTERM'));
  if (o.durationS > 0) setTimeout(() => void stop(`--duration ${o.durationS}s reached`), o.durationS * 1000).unref();

  // 1. The BMC fleet: its own processes, one HTTPS Redfish service per BMC on 127.10.x.y.
  const manifestPath = path.join(dir, 'fleet.json');
  // Every simulated machine boots a ramdisk agent (real gRPC to the conductor) when it powers on,
  // after a 2 s boot; its disks are sparse files under the lab directory.
  const sim = await startChild(
    ['sim', '--bmcs', String(o.nodes), '--profile', o.profile, '--seed', SEED, '--port', String(o.bmcPort), '--admin-port', String(o.simAdminPort), '--manifest', manifestPath,
      '--agents', `127.0.0.1:${o.agentPort}`, '--boot-delay-ms', '2000', '--disk-dir', path.join(dir, 'disks')],
    '{"ready"',
  );
  children.push(sim.child);
  const simAdmin = String(sim.line.admin);
  say(`BMC simulator: ${o.nodes} Redfish BMCs (${o.profile}) on 127.10.x.y:${o.bmcPort}, started in ${sim.line.startup_ms} ms; admin ${simAdmin}/stats`);

  // The image the lab deploys: 4 MiB with a partition-table-like header, served on loopback.
  const image = Buffer.alloc(4 * 1024 * 1024);
  for (let i = 0; i < image.length; i += 4096) image.writeUInt32LE(i * 2654435761 >>> 0, i);
  image.write('IRONFLEET-LAB-IMAGE', 0);
  const imageSha = createHash('sha256').update(image).digest('hex');
  // Behind HTTP basic auth, as image stores often are: the credentials ride in the image URL and
  // must never show up in the API, node history, logs or the database in clear.
  const imagePassword = randomBytes(12).toString('base64url');
  const imageAuth = `Basic ${Buffer.from(`lab:${imagePassword}`).toString('base64')}`;
  const imageServer = http.createServer((req, res) => {
    if (req.headers.authorization !== imageAuth) {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="lab images"' });
      return res.end();
    }
    res.writeHead(200, { 'content-length': image.length });
    res.end(image);
  });
  await new Promise<void>((r) => imageServer.listen(0, '127.0.0.1', () => r()));
  imageServer.unref();
  const imagePort = (imageServer.address() as AddressInfo).port;
  const imageUrl = `http://lab:${imagePassword}@127.0.0.1:${imagePort}/lab-image.raw`;

  // 2. The conductor on its embedded database.
  const logFile = path.join(dir, 'conductor.log');
  const log = createLogger({ name: 'ironfleet-lab', level: o.logLevel ?? 'info', destination: destination({ dest: logFile, mkdir: true, sync: false }) });
  const cfg = compileConfig({
    host: 'lab-conductor',
    database: { url: `sqlite://${path.join(dir, 'ironfleet.db')}` },
    api: { host: '127.0.0.1', port: o.apiPort },
    agent: { host: '127.0.0.1', port: o.agentPort, heartbeat_interval_s: 10 },
    // Lab: metadata erase only in automated cleaning (erase_devices would zero 8 GiB per disk).
    conductor: { node_locked_retry_attempts: 0, erase_devices_priority: 0, fast_track_timeout_s: 900 },
    power_sync: { interval_s: 10, max_retries: 3 },
    sensors: { interval_s: 30 },
    firmware: { poll_interval_ms: 2000 },
  });
  running = await startConductor(cfg, log);
  const conductor = running.conductor;
  const url = `http://127.0.0.1:${running.apiPort}`;
  const api = new ApiClient({ url });
  say(`conductor: API ${url} (Ironic v1), agents 127.0.0.1:${running.agentPort}, database ${path.join(dir, 'ironfleet.db')}, log ${logFile}`);
  say(`web console: open ${url}/console/ in a browser — the fleet map, deploys and BMC trouble live as the lab runs`);
  for (const name of conductor.drivers.names()) {
    const d = stepsOf(conductor.drivers.get(name)).describe();
    say(`hardware type ${name}: default deploy ${d.deploy.join(' -> ')} (${d.steps} steps its interfaces own; ? = only on nodes it applies to)`);
  }

  // 3. Enroll the fleet from the simulator's manifest, through the API, verifying BMC TLS with its CA.
  const enroll = spawn(process.execPath, [BIN, 'node', 'enroll', '--from', manifestPath, '--url', url], { stdio: 'ignore' });
  await new Promise((r) => enroll.once('exit', r));
  const manifest = (await (await fetch(`${simAdmin}/manifest`)).json()) as Manifest;
  const names = manifest.bmcs.map((b) => b.name);
  say(`enrolled ${names.length} nodes (driver redfish, 2 ports each) from ${manifestPath}`);

  const giveImage = (n: string) =>
    api.patch(`/v1/nodes/${n}`, [
      { op: 'add', path: '/instance_info/image_source', value: imageUrl },
      { op: 'add', path: '/instance_info/image_os_hash_algo', value: 'sha256' },
      { op: 'add', path: '/instance_info/image_os_hash_value', value: imageSha },
    ]);
  for (const n of names) await giveImage(n);

  let limited = 0;
  const moveAll = async (verb: string, want: string, subset = names) => {
    await forEachLimit(subset, 32, async (n) => {
      // Past max_concurrent_clean/deploy the conductor answers 503 (as Ironic): retry, as an
      // operator's tool would, until a slot frees up.
      for (let attempt = 0; attempt < 600; attempt++) {
        try {
          await api.put(`/v1/nodes/${n}/states/provision`, { target: verb });
          return;
        } catch (err) {
          if (!(err instanceof ApiError) || err.status !== 503) return;
          limited++;
          await new Promise((r) => setTimeout(r, 250));
        }
      }
    });
    await forEachLimit(subset, 32, async (n) => {
      await api.waitNode(n, (x) => (x.provision_state === want && !x.reservation) || Boolean(x.last_error), 180_000).catch(() => {});
    });
  };
  await moveAll('manage', 'manageable');
  say('all nodes verified through their BMCs (one Redfish session each): enroll -> manageable');
  await moveAll('inspect', 'manageable');
  say(`inspected: powered on through Redfish, ${conductor.hub.sessions.size}/${o.nodes} ramdisk agents booted and sent IPA-format inventories (GET /v1/nodes/<node>/inventory)`);
  await moveAll('provide', 'available');
  say(`provided: automated cleaning by the agents (erase_devices_metadata), fast-track (no reboot): manageable -> available${limited ? ` (${limited} requests refused with 503 past max_concurrent_clean=50 and retried)` : ''}`);
  const half = names.slice(0, Math.ceil(names.length / 2));
  await moveAll('active', 'active', half);
  say(`${half.length} nodes deployed: fast-track agent wrote a sha256-verified image to its disk: available -> active (GET /v1/nodes/<node>/steps?kind=deploy)`);
  console.log(`\n  Open: ${url}/console/   (live fleet map; click a node for its drawer)`);
  console.log(`  Try:  baremetal --os-endpoint ${url} --os-auth-type none node list`);
  console.log(`        baremetal --os-endpoint ${url} --os-auth-type none node history list ${names[0]}`);
  console.log(`        curl -s ${url}/metrics | grep -E 'ironfleet_(bmc_sessions|power_sync_duration_seconds_sum|node_temperature_celsius)' | head`);
  console.log(`        curl -s -XPOST ${simAdmin}/bmcs/3/faults -d '{"black_hole":true}'   # then watch ${names[3]} go to maintenance\n`);

  // 5. Steady traffic: power cycles, rebuilds, burn-ins, firmware, and the odd BMC fault.
  let round = 0;
  const tick = async () => {
    const i = round++;
    const node = names[(i * 7) % names.length]!;
    try {
      const n = await api.get<{ provision_state: string; power_state: string | null; maintenance: boolean }>(`/v1/nodes/${node}`);
      if (n.maintenance) return;
      switch (i % 6) {
        case 0:
          await api.post(`/v1/nodes/${node}/agent/commands`, { name: 'clean.burnin_cpu', params: { duration_s: 2, cpus: 1 } });
          break;
        case 1:
          if (n.provision_state === 'active') await api.put(`/v1/nodes/${node}/states/provision`, { target: 'rebuild' });
          break;
        case 2:
          if (n.provision_state === 'available') await api.put(`/v1/nodes/${node}/states/power`, { target: n.power_state === 'power on' ? 'power off' : 'power on' });
          break;
        case 3:
          if (i % 30 === 3) await api.post(`/v1/nodes/${node}/firmware/update`, { image_url: `http://firmware.lab/bios-2.${i % 9}.${i % 7}.bin`, component: 'bios' });
          break;
        case 4:
          if (i % 60 === 4) {
            const idx = (i * 7) % names.length;
            await fetch(`${simAdmin}/bmcs/${idx}/faults`, { method: 'POST', body: JSON.stringify({ storm: { error_rate: 1, duration_s: 45 } }) });
            say(`fault injected: BMC of ${node} answers 5xx for 45 s (watch it enter and leave maintenance)`);
          }
          break;
        default:
          if (n.provision_state === 'active' && i % 12 === 5) await api.put(`/v1/nodes/${node}/states/provision`, { target: 'deleted' });
          else if (n.provision_state === 'available') {
            // Undeploy cleared instance_info (as Ironic does): give the node its image again.
            await giveImage(node);
            await api.put(`/v1/nodes/${node}/states/provision`, { target: 'active' });
          }
      }
    } catch {
      /* busy node: next round */
    }
  };
  setInterval(() => void tick(), 400).unref();
  if (o.qemu) {
    void runVm({ api, dir, say, agentPort: running.agentPort, imagePort, imagePassword, imageSha, children }).catch((err: Error) => say(`qemu VM: ${err.message}`));
  }

  let cmdOk = 0;
  let cmdFailed = 0;
  conductor.hub.on('command-finished', (c) => (c.status === 'SUCCEEDED' ? cmdOk++ : cmdFailed++));
  const dashboard = async () => {
    const nodes = await conductor.store.listNodesForSweep();
    const byState = new Map<string, number>();
    for (const n of nodes) byState.set(n.provision_state, (byState.get(n.provision_state) ?? 0) + 1);
    const on = nodes.filter((n) => n.power_state === 'power on').length;
    const maint = nodes.filter((n) => n.maintenance).length;
    const ps = conductor.powerSync.lastReport;
    const bmc = await conductor.pool!.stats();
    const rss = Math.round(process.memoryUsage().rss / 1048576);
    say(
      `agents ${conductor.hub.sessions.size}/${o.nodes} | ${[...byState].map(([s, c]) => `${s}=${c}`).join(' ')} | on=${on} maint=${maint} | ` +
        `sync ${ps ? `${ps.duration_ms}ms ok=${ps.ok} fail=${ps.failed}` : '-'} | ${bmc.sessions === undefined ? 'BMC pool stopped' : `BMC sessions ${bmc.sessions} logins ${bmc.logins} 304s ${bmc.not_modified} sockets ${bmc.bmc_sockets_open ?? 0}/${bmc.bmc_socket_budget || '∞'}`} | fds ${openFdCount() ?? '?'}/${openFileLimit() ?? '∞'} | cmds ok=${cmdOk} failed=${cmdFailed} | rss ${rss} MiB`,
    );
  };
  setInterval(() => void dashboard().catch(() => {}), 5000).unref();
  await new Promise(() => {});
}

/**
 * The lab's real machine: one more BMC whose server is a qemu VM (TCG). Its power-on boots the
 * deploy ramdisk built from Debian packages; the conductor inspects it, cleans it and deploys the
 * lab image onto an mdadm RAID-1 across two of its three virtio disks, reading it back from the array.
 */
async function runVm(o: { api: ApiClient; dir: string; say: (s: string) => void; agentPort: number; imagePort: number; imagePassword: string; imageSha: string; children: ChildProcess[] }): Promise<void> {
  const t0 = Date.now();
  const secs = () => `${((Date.now() - t0) / 1000).toFixed(0)} s`;
  const out = path.resolve('var', 'ramdisk');
  o.say('qemu VM: building the deploy ramdisk (Debian kernel + busybox + Node + agent + mdadm; cached in var/ramdisk)');
  const m = await buildRamdisk({ outDir: out });
  o.say(`qemu VM: ramdisk ${m.cached ? 'up to date' : `built in ${(m.build_ms / 1000).toFixed(1)} s`}: kernel ${m.kernel_version}, initramfs ${(m.initramfs_bytes / 2 ** 20).toFixed(1)} MiB`);
  const manifestPath = path.join(o.dir, 'vm-fleet.json');
  const sim = await startChild(
    ['sim', '--bmcs', '1', '--profile', 'ideal', '--http', '--seed', 'lab-vm', '--port', '8444', '--admin-port', '0', '--manifest', manifestPath,
      '--agents', `127.0.0.1:${o.agentPort}`, '--qemu-ramdisk', out, '--qemu-disks', '3', '--qemu-disk-mib', '256', '--qemu-forward', String(o.imagePort), '--disk-dir', path.join(o.dir, 'vm')],
    '{"ready"',
  );
  o.children.push(sim.child);
  const b = ((await (await fetch(`${String(sim.line.admin)}/manifest`)).json()) as Manifest).bmcs[0]!;
  const name = 'vm-00000';
  const { uuid } = await o.api.post<{ uuid: string }>('/v1/nodes', {
    driver: 'redfish',
    name,
    driver_info: { redfish_address: b.address, redfish_username: b.username, redfish_password: b.password, redfish_system_id: b.system_id },
    instance_info: { image_source: `http://lab:${o.imagePassword}@${GUEST_HOST}:${o.imagePort}/lab-image.raw`, image_os_hash_algo: 'sha256', image_os_hash_value: o.imageSha, image_verify: true },
  });
  for (const mac of b.macs) await o.api.post('/v1/ports', { address: mac, node_uuid: uuid });
  await o.api.put(`/v1/nodes/${name}/states/raid`, {
    logical_disks: [{ size_gb: 'MAX', raid_level: '1', controller: 'software', is_root_volume: true, physical_disks: [{ name: '/dev/vda' }, { name: '/dev/vdb' }] }],
  });
  const move = async (verb: string, want: string) => {
    await o.api.put(`/v1/nodes/${name}/states/provision`, { target: verb });
    const n = await o.api.waitNode(name, (x) => (x.provision_state === want && !x.reservation) || /failed$/.test(String(x.provision_state)), 600_000);
    if (n.provision_state !== want) throw new Error(`${verb} ended in ${n.provision_state}: ${n.last_error}`);
  };
  o.say(`qemu VM: ${name} enrolled (BMC ${b.address}); inspecting: Redfish power-on boots the ramdisk in a TCG VM`);
  await move('manage', 'manageable');
  await move('inspect', 'manageable');
  const inv = (await o.api.get<{ inventory: { disks: Array<{ name: string }> } }>(`/v1/nodes/${name}/inventory`)).inventory;
  o.say(`qemu VM: ${name} inspected after ${secs()}: its agent reported ${inv.disks.map((d) => d.name).join(', ')}`);
  await move('provide', 'available');
  await move('active', 'active');
  const n = await o.api.get<{ driver_internal_info: { raid_config?: Array<{ device: string; members: string[]; level: string }> } }>(`/v1/nodes/${name}`);
  const md = n.driver_internal_info.raid_config?.[0];
  o.say(`qemu VM: ${name} deployed after ${secs()}: image written onto ${md?.device} (RAID-${md?.level} over ${md?.members.join(' + ')}) by real mdadm in the VM, sha256 verified and read back; agent kept under the fast-track lease`);
}
