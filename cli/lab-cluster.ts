/**
 * The lab with several conductors (`npm run lab -- --conductors 3`): an embedded PostgreSQL, N
 * conductor processes sharing it (APIs on 6385…, agent endpoints on 6388+100·k…), the simulated
 * fleet whose ramdisk agents know every conductor's endpoint, the fleet enrolled and walked to
 * half-deployed through whichever conductor's API (forwarded to each node's owner), steady traffic,
 * and chaos: every `killEveryS` one conductor is killed with SIGKILL and restarted 20 s later. The
 * dashboard shows each conductor's state and the nodes it owns, and every takeover is timed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { ApiClient } from './api-client.js';
import { startEmbeddedPg } from './embedded-pg.js';
import { forEachLimit } from '../shared/pool.js';

const BIN = fileURLToPath(new URL('../../bin/ironfleet.js', import.meta.url));

export interface ClusterLabOptions {
  conductors: number;
  nodes: number;
  profile: string;
  apiPort: number;
  agentPort: number;
  bmcPort: number;
  simAdminPort: number;
  dir: string;
  durationS: number;
  killEveryS: number;
}

interface Member {
  name: string;
  apiPort: number;
  agentPort: number;
  child?: ChildProcess;
}

function ready(child: ChildProcess, log?: string): Promise<Record<string, unknown>> {
  if (log) child.stdout!.pipe(createWriteStream(log, { flags: 'a' }), { end: false });
  return new Promise((resolve, reject) => {
    let buf = '';
    const onData = (d: Buffer) => {
      buf += d.toString();
      const l = buf.split('\n').find((x) => x.startsWith('{"ready"'));
      if (l) {
        child.stdout!.off('data', onData);
        resolve(JSON.parse(l));
      }
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`exited with ${code}`)));
  });
}

export async function runClusterLab(o: ClusterLabOptions): Promise<void> {
  const dir = path.resolve(o.dir);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const t0 = Date.now();
  const say = (s: string) => console.log(`[lab ${((Date.now() - t0) / 1000).toFixed(1).padStart(6)}s] ${s}`);
  const pg = await startEmbeddedPg();
  const members: Member[] = Array.from({ length: o.conductors }, (_, k) => ({ name: `conductor-${k + 1}`, apiPort: o.apiPort + k, agentPort: o.agentPort + 100 * k }));
  let sim: ChildProcess | undefined;
  let stopping = false;
  const stop = async (why: string) => {
    if (stopping) return;
    stopping = true;
    say(`stopping (${why})`);
    for (const m of members) m.child?.kill('SIGTERM');
    await Promise.all(members.map((m) => (m.child && m.child.exitCode === null ? new Promise((r) => m.child!.once('exit', r)) : undefined)));
    sim?.kill('SIGTERM');
    await pg.stop();
    say('stopped');
    process.exit(0);
  };
  process.once('SIGINT', () => void stop('SIGINT'));
  process.once('SIGTERM', () => void stop('SIGTERM'));
  if (o.durationS > 0) setTimeout(() => void stop(`--duration ${o.durationS}s reached`), o.durationS * 1000).unref();

  const db = await pg.database('lab');
  say(`PostgreSQL (embedded) at ${pg.url.replace(/:[^:@/]+@/, ':******@')}, database lab`);
  const manifestPath = path.join(dir, 'fleet.json');
  const agents = members.map((m) => `127.0.0.1:${m.agentPort}`).join(',');
  sim = spawn(process.execPath, [BIN, 'sim', '--bmcs', String(o.nodes), '--profile', o.profile, '--seed', 'lab', '--port', String(o.bmcPort), '--admin-port', String(o.simAdminPort), '--manifest', manifestPath, '--agents', agents, '--boot-delay-ms', '2000', '--disk-dir', path.join(dir, 'disks')], { stdio: ['ignore', 'pipe', 'inherit'] });
  const simReady = await ready(sim);
  const simAdmin = String(simReady.admin);
  say(`BMC simulator: ${o.nodes} Redfish BMCs (${o.profile}); their ramdisk agents know every conductor: ${agents}`);

  const start = async (m: Member) => {
    m.child = spawn(process.execPath, [BIN, 'conductor', '--api-port', String(m.apiPort), '--agent-port', String(m.agentPort), '--database', db], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, IRONFLEET_HOST: m.name, IRONFLEET_SECURITY__SECRETS_KEY_FILE: path.join(dir, 'secrets.key'), IRONFLEET_POWER_SYNC__INTERVAL_S: '10', IRONFLEET_CONDUCTOR__HEARTBEAT_INTERVAL_S: '2', IRONFLEET_CONDUCTOR__HEARTBEAT_TIMEOUT_S: '6', IRONFLEET_CONDUCTOR__ERASE_DEVICES_PRIORITY: '0', IRONFLEET_CONDUCTOR__FAST_TRACK_TIMEOUT_S: '900' },
    });
    await ready(m.child, path.join(dir, `${m.name}.log`));
  };
  for (const m of members) await start(m);
  // Requests rotate over the conductors that are up (the chaos kills one now and then).
  const up = () => members.filter((m) => m.child && m.child.exitCode === null && m.child.signalCode === null);
  const api = (k = 0) => {
    const live = up();
    return new ApiClient({ url: `http://127.0.0.1:${(live[k % live.length] ?? members[0]!).apiPort}` });
  };
  say(`${o.conductors} conductors on one database: APIs ${members.map((m) => `http://127.0.0.1:${m.apiPort}`).join(', ')} (any of them takes any request; console at /console/ on each, colour by "Conductor"); logs ${dir}/conductor-*.log`);

  const enroll = spawn(process.execPath, [BIN, 'node', 'enroll', '--from', manifestPath, '--url', `http://127.0.0.1:${members[0]!.apiPort}`], { stdio: 'ignore' });
  await new Promise((r) => enroll.once('exit', r));
  const image = Buffer.alloc(4 * 1024 * 1024, 3);
  const sha = createHash('sha256').update(image).digest('hex');
  const server = http.createServer((_q, r) => void r.writeHead(200, { 'content-length': image.length }).end(image));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  server.unref();
  const imageUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/lab.img`;
  const names = (await api().get<{ nodes: Array<{ name: string }> }>('/v1/nodes?limit=1000')).nodes.map((n) => n.name);
  const move = async (verb: string, want: string, subset: string[]) => {
    await forEachLimit(subset, 16, async (n) => {
      for (let attempt = 0; attempt < 300; attempt++) {
        try {
          await api(attempt).put(`/v1/nodes/${n}/states/provision`, { target: verb });
          return;
        } catch {
          await new Promise((r) => setTimeout(r, 500));
        }
      }
    });
    await forEachLimit(subset, 16, async (n) => void (await api().waitNode(n, (x) => x.provision_state === want || Boolean(x.last_error), 300_000).catch(() => undefined)));
  };
  await move('manage', 'manageable', names);
  await move('provide', 'available', names);
  for (const n of names) await api().patch(`/v1/nodes/${n}`, [{ op: 'add', path: '/instance_info/image_source', value: imageUrl }, { op: 'add', path: '/instance_info/image_checksum', value: sha }]);
  await move('active', 'active', names.slice(0, Math.ceil(names.length / 2)));
  say(`fleet enrolled, verified, cleaned by agents and half deployed through ${o.conductors} conductors`);

  // Traffic through rotating APIs.
  let i = 0;
  setInterval(() => {
    const n = names[(i * 7) % names.length]!;
    const k = i++;
    void (async () => {
      const node = await api(k).get<{ provision_state: string; power_state: string | null }>(`/v1/nodes/${n}`);
      if (node.provision_state === 'active' && k % 3 === 0) await api(k).put(`/v1/nodes/${n}/states/provision`, { target: 'rebuild' });
      else if (node.provision_state === 'available') await api(k).put(`/v1/nodes/${n}/states/power`, { target: node.power_state === 'power on' ? 'power off' : 'power on' });
    })().catch(() => undefined);
  }, 500).unref();

  // Chaos: SIGKILL one conductor on a schedule, time the takeover, restart it 20 s later.
  let victimIdx = 0;
  let takeovers = 0;
  const chaos = async () => {
    const m = members[victimIdx++ % members.length]!;
    const before = (await api(victimIdx).get<{ nodes: Array<{ conductor: string }> }>('/v1/nodes?limit=1000&fields=uuid,conductor')).nodes.filter((n) => n.conductor === m.name).length;
    const logins = async () => ((await (await fetch(`${simAdmin}/stats`)).json()) as { fleet: Record<string, number> }).fleet.requests_login ?? 0;
    const l0 = await logins();
    const tk = Date.now();
    m.child?.kill('SIGKILL');
    say(`chaos: SIGKILL ${m.name} (owned ${before} nodes)`);
    for (;;) {
      await new Promise((r) => setTimeout(r, 500));
      const left = (await api(0).get<{ nodes: Array<{ conductor: string }> }>('/v1/nodes?limit=1000&fields=uuid,conductor').catch(() => ({ nodes: [{ conductor: m.name }] }))).nodes.filter((n) => n.conductor === m.name).length;
      if (left === 0) break;
    }
    takeovers++;
    const owned = ((Date.now() - tk) / 1000).toFixed(1);
    // Logins at the BMCs themselves over the takeover and the survivors' next sweep (10 s).
    await new Promise((r) => setTimeout(r, 10_000));
    say(`takeover: ${m.name}'s ${before} nodes owned by the survivors ${owned} s after the kill; BMC logins since the kill: ${(await logins()) - l0}`);
    setTimeout(() => void start(m).then(() => say(`${m.name} restarted and rejoined the ring`)).catch((err: Error) => say(`${m.name} restart failed: ${err.message}`)), 20_000).unref();
  };
  if (o.killEveryS > 0) setInterval(() => void chaos().catch(() => undefined), o.killEveryS * 1000).unref();

  const dashboard = async () => {
    const conductors = (await api(i).get<{ conductors: Array<{ hostname: string; alive: boolean; state: string }> }>('/v1/conductors')).conductors;
    const nodes = (await api(i).get<{ nodes: Array<{ conductor: string; provision_state: string }> }>('/v1/nodes?limit=1000&fields=uuid,conductor,provision_state')).nodes;
    const stats = ((await (await fetch(`${simAdmin}/stats`)).json()) as { fleet: Record<string, number> }).fleet;
    const owned = (h: string) => nodes.filter((n) => n.conductor === h).length;
    const states = new Map<string, number>();
    for (const n of nodes) states.set(n.provision_state, (states.get(n.provision_state) ?? 0) + 1);
    say(
      `${conductors.map((c) => `${c.hostname} ${c.alive ? c.state : 'DEAD'} owns ${owned(c.hostname)}`).join(' | ')} | ${[...states].map(([s, c]) => `${s}=${c}`).join(' ')} | ` +
        `BMCs with a session ${stats.bmcs_with_sessions}/${o.nodes}, logins ${stats.requests_login}, duplicate sessions ${stats.sessions_repeat} | takeovers ${takeovers}`,
    );
  };
  setInterval(() => void dashboard().catch(() => undefined), 5000).unref();
  await new Promise(() => {});
}
