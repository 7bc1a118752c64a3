/**
 * The lab: a self-contained fleet on one machine. A conductor on its embedded SQLite database,
 * a fleet of simulated machines enrolled through the API, their agents (a separate process, real
 * gRPC streams) connected, and provisioning traffic running — with the API on Ironic's port for
 * `baremetal` to talk to. Bounded: it stops by itself after --duration seconds.
 */
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { destination } from 'pino';
import { compileConfig } from '../conductor/config.js';
import { startConductor, type RunningConductor } from '../conductor/service.js';
import { createLogger } from '../shared/logger.js';
import { simulatedMac } from '../agent/hardware.js';
import { ApiClient } from './api-client.js';

export interface LabOptions {
  nodes: number;
  apiPort: number;
  agentPort: number;
  dir: string;
  durationS: number;
}

const SEED = 'lab';
const BIN = fileURLToPath(new URL('../../bin/ironfleet.js', import.meta.url));

async function pool<T>(items: T[], width: number, fn: (t: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

export async function runLab(o: LabOptions): Promise<void> {
  const dir = path.resolve(o.dir);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const logFile = path.join(dir, 'conductor.log');
  const log = createLogger({ name: 'ironfleet-lab', level: 'info', destination: destination({ dest: logFile, mkdir: true, sync: false }) });
  const cfg = compileConfig({
    host: 'lab-conductor',
    database: { url: `sqlite://${path.join(dir, 'ironfleet.db')}` },
    api: { host: '127.0.0.1', port: o.apiPort },
    agent: { host: '127.0.0.1', port: o.agentPort, heartbeat_interval_s: 10 },
    conductor: { node_locked_retry_attempts: 0 },
  });
  const t0 = Date.now();
  const say = (s: string) => console.log(`[lab ${((Date.now() - t0) / 1000).toFixed(1).padStart(6)}s] ${s}`);
  let running: RunningConductor | undefined;
  let agents: ChildProcess | undefined;
  let stopping = false;
  const stop = async (why: string) => {
    if (stopping) return;
    stopping = true;
    say(`stopping (${why})`);
    agents?.kill('SIGTERM');
    await running?.stop();
    say('stopped');
    process.exit(0);
  };
  process.once('SIGINT', () => void stop('SIGINT'));
  process.once('SIGTERM', () => void stop('SIGTERM'));
  if (o.durationS > 0) setTimeout(() => void stop(`--duration ${o.durationS}s reached`), o.durationS * 1000).unref();

  running = await startConductor(cfg, log);
  const url = `http://127.0.0.1:${running.apiPort}`;
  const api = new ApiClient({ url });
  say(`conductor up: API ${url} (Ironic v1), agent endpoint 127.0.0.1:${running.agentPort}, database ${path.join(dir, 'ironfleet.db')}, log ${logFile}`);

  // Enroll the fleet through the API, like an operator would.
  const idx = Array.from({ length: o.nodes }, (_, i) => i);
  await pool(idx, 16, async (i) => {
    const name = `lab-${String(i).padStart(5, '0')}`;
    const n = await api.post<{ uuid: string }>('/v1/nodes', { driver: 'fake-hardware', name, properties: { cpu_arch: 'x86_64' } });
    for (let nic = 0; nic < 2; nic++) await api.post('/v1/ports', { address: simulatedMac(SEED, i, nic), node_uuid: n.uuid });
  });
  say(`enrolled ${o.nodes} nodes with 2 ports each`);

  agents = spawn(process.execPath, [BIN, 'sim-agents', '--conductor', `127.0.0.1:${running.agentPort}`, '--count', String(o.nodes), '--seed', SEED], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  agents.on('exit', (code) => {
    if (!stopping) say(`simulated agents exited with ${code}`);
  });
  const conductor = running.conductor;
  while (conductor.hub.sessions.size < o.nodes && Date.now() - t0 < 120_000) await new Promise((r) => setTimeout(r, 200));
  say(`${conductor.hub.sessions.size}/${o.nodes} agents connected over gRPC (inventories streaming in)`);

  let cmdOk = 0;
  let cmdFailed = 0;
  conductor.hub.on('command-finished', (c) => (c.status === 'SUCCEEDED' ? cmdOk++ : cmdFailed++));
  const names = idx.map((i) => `lab-${String(i).padStart(5, '0')}`);
  const moveAll = async (verb: string, want: string, subset = names) => {
    await pool(subset, 32, async (n) => {
      await api.put(`/v1/nodes/${n}/states/provision`, { target: verb });
    });
    await pool(subset, 32, async (n) => {
      await api.waitNode(n, (x) => x.provision_state === want && !x.reservation, 120_000);
    });
  };
  await moveAll('manage', 'manageable');
  say('all nodes verified: enroll -> manageable');
  await moveAll('inspect', 'manageable');
  say('all nodes inspected by their agents: GET /v1/nodes/<node>/inventory shows IPA-format inventories');
  await moveAll('provide', 'available');
  say('all nodes provided: manageable -> available');
  const half = names.slice(0, Math.ceil(names.length / 2));
  await moveAll('active', 'active', half);
  say(`${half.length} nodes deployed: available -> active`);
  console.log(`\n  Try:  baremetal --os-endpoint ${url} --os-auth-type none node list`);
  console.log(`        baremetal --os-endpoint ${url} --os-auth-type none node show ${names[0]}`);
  console.log(`        node bin/ironfleet.js node agent-command ${names[1]} clean.burnin_cpu --params '{"duration_s":5,"cpus":1}' --url ${url}`);
  console.log(`        curl -s ${url}/v1/nodes/${names[0]}/inventory | head -c 400; curl -s ${url}/metrics | grep ironfleet_agents\n`);

  // Steady traffic: a rolling burn-in on one machine at a time, rebuilds and power cycles.
  let round = 0;
  const busy = new Set<string>();
  const tick = async () => {
    round++;
    const node = names[round % names.length]!;
    if (busy.has(node)) return;
    busy.add(node);
    try {
      const n = await api.get<{ provision_state: string }>(`/v1/nodes/${node}`);
      const r = Math.floor(round / names.length) + round;
      if (r % 5 === 0) await api.post(`/v1/nodes/${node}/agent/commands`, { name: 'clean.burnin_cpu', params: { duration_s: 2, cpus: 1 } });
      else if (r % 5 === 1) await api.post(`/v1/nodes/${node}/agent/commands`, { name: 'system.get_inventory', params: {} });
      else if (n.provision_state === 'active') await api.put(`/v1/nodes/${node}/states/provision`, { target: r % 5 === 2 ? 'rebuild' : 'deleted' });
      else if (n.provision_state === 'available') await api.put(`/v1/nodes/${node}/states/provision`, { target: 'active' });
    } catch {
      /* node busy: next round */
    } finally {
      busy.delete(node);
    }
  };
  const traffic = setInterval(() => void tick(), 500);
  traffic.unref();

  const dashboard = async () => {
    const res = await api.get<{ nodes: Array<{ provision_state: string; power_state: string | null }> }>('/v1/nodes?fields=provision_state,power_state&limit=1000');
    const byState = new Map<string, number>();
    for (const n of res.nodes) byState.set(n.provision_state, (byState.get(n.provision_state) ?? 0) + 1);
    const states = [...byState].map(([s, c]) => `${s}=${c}`).join(' ');
    const rss = Math.round(process.memoryUsage().rss / 1048576);
    const msgs = [...conductor.hub.received.values()].reduce((a, b) => a + b, 0);
    say(`agents ${conductor.hub.sessions.size}/${o.nodes} | ${states} | agent cmds ok=${cmdOk} failed=${cmdFailed} | agent msgs ${msgs} | rss ${rss} MiB`);
  };
  const dash = setInterval(() => void dashboard().catch(() => {}), 5000);
  dash.unref();
  await new Promise(() => {});
}
