/**
 * A simulator worker process: serves a shard of the fleet. One TLS/HTTP server object handles the
 * requests of every BMC in the shard; each BMC has its own listening socket on its own loopback
 * address, which hands connections to that server. The parent talks to it over IPC.
 */
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { BmcService, emptyCounters, type BmcCounters } from './service.js';
import { Machine, type Health } from './machine.js';
import { drawTraits, type Profile } from './profiles.js';
import { rngFor } from './rng.js';
import { SIM_USERNAME, bmcHost, bmcPassword } from './layout.js';
import type { ParentMessage, WorkerMessage, FaultRequest } from './protocol.js';
import { SimulatedRamdisk } from './ramdisk.js';
import { QemuRamdisk } from './qemu-ramdisk.js';
import { createLogger } from '../shared/logger.js';

let services: BmcService[] = [];
const byHost = new Map<string, BmcService>();
const byIndex = new Map<number, BmcService>();
const listeners: net.Server[] = [];
let server: http.Server | https.Server | undefined;
let single: BmcService | undefined;
const ramdisks = new Map<number, SimulatedRamdisk | QemuRamdisk>();

function reply(msg: WorkerMessage): void {
  process.send?.(msg);
}

function sumCounters(list: BmcService[]): BmcCounters & { bmcs: number; peak_inflight_max: number; bmcs_with_sessions: number; sessions_repeat: number } {
  const total = { ...emptyCounters(), bmcs: list.length, peak_inflight_max: 0, bmcs_with_sessions: 0, sessions_repeat: 0 };
  for (const s of list) {
    for (const [k, v] of Object.entries(s.counters) as Array<[keyof BmcCounters, number]>) total[k] += v;
    total.peak_inflight_max = Math.max(total.peak_inflight_max, s.counters.peak_inflight);
    // Sessions opened on a BMC beyond its first (re-logins, duplicates): what a good client keeps at 0.
    if (s.counters.sessions_created > 0) total.bmcs_with_sessions++;
    total.sessions_repeat += Math.max(0, s.counters.sessions_created - 1);
  }
  return total;
}

function handler(req: http.IncomingMessage, res: http.ServerResponse): void {
  const svc = single ?? byHost.get(req.socket.localAddress?.replace(/^::ffff:/, '') ?? '');
  if (!svc) {
    res.writeHead(421);
    res.end();
    return;
  }
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  svc.handle(req, res, q < 0 ? url : url.slice(0, q), new URLSearchParams(q < 0 ? '' : url.slice(q + 1)));
}

async function init(m: Extract<ParentMessage, { type: 'init' }>): Promise<{ listening: number }> {
  const profile: Profile = m.profile;
  const machineFor = (i: number) => new Machine(m.seed, i, profile.power_delay_ms, m.initialPower === 'mixed' ? (rngFor(m.seed, i, 'initial')() < 0.5 ? 'On' : 'Off') : m.initialPower === 'on' ? 'On' : 'Off');
  const opts = { keepAliveTimeout: 65_000, headersTimeout: 70_000, requestTimeout: 0 };
  server = m.tls ? https.createServer({ ...opts, cert: m.tls.cert, key: m.tls.key }, handler) : http.createServer(opts, handler);
  if (m.single) {
    const machines = m.indexes.map(machineFor);
    single = new BmcService(0, machines, profile, drawTraits(profile, rngFor(m.seed, 0, 'traits')), SIM_USERNAME, bmcPassword(m.seed, 0), m.seed);
    services = [single];
    for (const i of m.indexes) byIndex.set(i, single);
    await new Promise<void>((resolve, reject) => {
      server!.once('error', reject);
      server!.listen(m.single!.port, m.single!.host, () => resolve());
    });
    return { listening: 1 };
  }
  const agentLog = createLogger({ name: 'ironfleet-sim-ramdisk', level: 'warn' });
  for (const i of m.indexes) {
    const machine = machineFor(i);
    if (m.agents && m.qemu) ramdisks.set(i, new QemuRamdisk(machine, { ...m.qemu, conductor: m.agents.conductor, log: agentLog }));
    else if (m.agents) ramdisks.set(i, new SimulatedRamdisk(machine, { conductor: m.agents.conductor, seed: m.seed, bootDelayMs: m.agents.bootDelayMs, diskDir: m.agents.diskDir, diskBytes: m.agents.diskBytes, deployStepPriorities: m.agents.deployStepPriorities, log: agentLog }));
    const svc = new BmcService(i, [machine], profile, drawTraits(profile, rngFor(m.seed, i, 'traits')), SIM_USERNAME, bmcPassword(m.seed, i), m.seed);
    services.push(svc);
    byHost.set(bmcHost(i), svc);
    byIndex.set(i, svc);
  }
  const srv = server;
  const listenOne = (i: number) =>
    new Promise<void>((resolve, reject) => {
      const l = net.createServer((sock) => srv.emit('connection', sock));
      l.once('error', (err: NodeJS.ErrnoException) => reject(new Error(`BMC ${i} cannot listen on ${bmcHost(i)}:${m.port}: ${err.code ?? err.message}`)));
      l.listen({ port: m.port, host: bmcHost(i), backlog: 64 }, () => resolve());
      listeners.push(l);
    });
  for (let k = 0; k < m.indexes.length; k += 500) await Promise.all(m.indexes.slice(k, k + 500).map(listenOne));
  return { listening: listeners.length };
}

/** The machine of BMC `index` (single-address mode: one service, many machines). */
function machineOf(svc: BmcService, index: number): Machine | undefined {
  return single ? single.machines.find((x) => x.index === index) : svc.machines[0];
}

function applyFault(f: FaultRequest): Record<string, unknown> {
  const svc = byIndex.get(f.index);
  if (!svc) throw new Error(`index: BMC ${f.index} is not served by this worker`);
  const out: Record<string, unknown> = {};
  if (f.black_hole !== undefined) svc.faults.blackHole = f.black_hole;
  if (f.down !== undefined) svc.faults.down = f.down;
  if (f.slow_factor !== undefined) svc.faults.slowFactor = f.slow_factor;
  if (f.storm) {
    svc.faults.stormRate = f.storm.error_rate;
    svc.faults.stormUntil = Date.now() + f.storm.duration_s * 1000;
  }
  if (f.script) svc.faults.script = f.script.map((r) => ({ ...r }));
  if (f.max_sessions !== undefined) svc.traits.maxSessions = f.max_sessions;
  if (f.expire_sessions) out.sessions_expired = svc.expireSessions();
  if (f.health) machineOf(svc, f.index)?.setHealth(f.health as Health);
  if (f.agent_crash) {
    const r = ramdisks.get(f.index);
    out.agent_was_running = r?.running ?? false;
    r?.kill();
  }
  if (f.power) out.power_refused = machineOf(svc, f.index)?.reset(f.power === 'on' ? 'On' : 'ForceOff') ?? null;
  return { ...out, faults: svc.faults };
}

function bmcDetail(index: number): Record<string, unknown> {
  const svc = byIndex.get(index);
  if (!svc) throw new Error(`index: BMC ${index} is not served by this worker`);
  const m = machineOf(svc, index)!;
  return {
    index,
    counters: svc.counters,
    traits: svc.traits,
    faults: svc.faults,
    machine: { id: m.id, power: m.power, health: m.health, boot: m.boot, bios_version: m.biosVersion, bmc_version: m.bmcVersion, resets: m.resets },
    ...(ramdisks.has(index) ? { agent: { running: ramdisks.get(index)!.running, boots: ramdisks.get(index)!.boots, instance_boots: ramdisks.get(index)!.instanceBoots } } : {}),
  };
}

process.on('message', (raw: ParentMessage) => {
  void (async () => {
    try {
      switch (raw.type) {
        case 'init':
          reply({ type: 'reply', id: raw.id, ok: true, result: await init(raw) });
          return;
        case 'stats':
          reply({ type: 'reply', id: raw.id, ok: true, result: sumCounters(services) });
          return;
        case 'counter':
          reply({ type: 'reply', id: raw.id, ok: true, result: [...byIndex].map(([i, svc]) => [i, (svc.counters as unknown as Record<string, number>)[raw.field] ?? 0]) });
          return;
        case 'bmc':
          reply({ type: 'reply', id: raw.id, ok: true, result: bmcDetail(raw.index) });
          return;
        case 'fault':
          reply({ type: 'reply', id: raw.id, ok: true, result: applyFault(raw.fault) });
          return;
        case 'reset-counters':
          for (const s of services) {
            const live = s.counters.sessions_live;
            const sse = s.counters.sse_clients;
            Object.assign(s.counters, emptyCounters(), { sessions_live: live, sse_clients: sse });
          }
          reply({ type: 'reply', id: raw.id, ok: true, result: {} });
          return;
        case 'stop':
          for (const r of ramdisks.values()) r.kill(); // agents and VMs go down with their machines
          for (const s of services) s.stop();
          for (const l of listeners) l.close();
          server?.closeAllConnections?.();
          server?.close();
          reply({ type: 'reply', id: raw.id, ok: true, result: {} });
          setTimeout(() => process.exit(0), 50);
          return;
      }
    } catch (err) {
      reply({ type: 'reply', id: raw.id, ok: false, error: (err as Error).message });
    }
  })();
});

process.on('disconnect', () => process.exit(0));
// However the worker ends, its machines' ramdisks (agents, qemu VMs) end with it.
process.on('exit', () => {
  for (const r of ramdisks.values()) r.kill();
});
