/**
 * bench/agent-streams: N simulated agents (one process, one gRPC connection each) connect to a
 * real conductor process and heartbeat; we measure the conductor's RSS and CPU per agent.
 *
 * Baseline in the same run: the same conductor process idle (0 agents) — figures are reported as
 * the marginal cost per agent and as ratios to the idle conductor and to the 1 GiB target.
 * Target: 10,000 agents with conductor RSS <= 1 GiB (conductor_rss_mib_10k_agents).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { request } from 'undici';
import { openDatabase } from '../conductor/db/database.js';
import { simulatedMac } from '../agent/hardware.js';
import { BIN, benchNodeRow, printTable, procSample, sleep, spawnReady, writeResults } from './lib.js';

const quick = process.argv.includes('--quick');
const SIZES = quick ? [200, 1000] : [1000, 10_000];
const HEARTBEAT_S = 10;
const STEADY_S = quick ? 12 : 40;
const CONNECT_TIMEOUT_S = quick ? 40 : 240;
const SEED = 'bench-streams';

async function seed(dbUrl: string, n: number): Promise<void> {
  const { db, close } = await openDatabase(dbUrl);
  const ts = new Date().toISOString();
  for (let i = 0; i < n; i += 500) {
    const batch = Array.from({ length: Math.min(500, n - i) }, (_, k) => i + k);
    await db.transaction().execute(async (tx) => {
      const rows = await tx
        .insertInto('nodes')
        .values(batch.map((j) => benchNodeRow({ uuid: randomUUID(), name: `bench-${j}`, driver: 'fake-hardware', provision_state: 'manageable', power_state: 'power on' })))
        .returning(['id', 'name'])
        .execute();
      await tx
        .insertInto('ports')
        .values(rows.flatMap((r) => { const j = Number(r.name!.slice(6)); return [0, 1].map((nic) => ({ uuid: randomUUID(), address: simulatedMac(SEED, j, nic), node_id: r.id, extra: '{}', pxe_enabled: 1, local_link_connection: '{}', physical_network: null, created_at: ts, updated_at: null })); }))
        .execute();
    });
  }
  await close();
}

async function metric(apiUrl: string, name: string): Promise<Map<string, number>> {
  const res = await request(`${apiUrl}/metrics`);
  const text = await res.body.text();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = line.match(/^(\S+?)(\{[^}]*\})?\s+([0-9.e+-]+)$/);
    if (m) out.set(m[2] ?? '', Number(m[3]));
  }
  return out;
}

async function startConductor(dbUrl: string): Promise<{ child: ChildProcess; apiUrl: string; agentAddr: string }> {
  const { child, ready } = await spawnReady(['conductor', '--api-port', '0', '--agent-port', '0', '--database', dbUrl], {
    env: { IRONFLEET_LOGGING__LEVEL: 'warn', IRONFLEET_AGENT__HEARTBEAT_INTERVAL_S: String(HEARTBEAT_S), IRONFLEET_HOST: 'bench' },
    nodeArgs: ['--max-old-space-size=2048'],
  });
  return { child, apiUrl: `http://127.0.0.1:${ready.api_port}`, agentAddr: `127.0.0.1:${ready.agent_port}` };
}

interface Row {
  agents: number;
  connect_s: number;
  conductor_rss_mib: number;
  rss_per_agent_kib: number;
  conductor_cpu_pct: number;
  cpu_ms_per_agent_per_min: number;
  heartbeats_per_s: number;
  expected_hb_per_s: number;
  agent_proc_rss_mib: number;
}

async function runSize(n: number): Promise<{ row: Row; idleRss: number }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ironfleet-bench-streams-'));
  const dbUrl = `sqlite://${path.join(dir, 'bench.db')}`;
  await seed(dbUrl, n);
  const c = await startConductor(dbUrl);
  try {
    await sleep(2000);
    const idleRss = procSample(c.child.pid!).rssMiB;
    const t0 = Date.now();
    const agents = spawn(process.execPath, ['--max-old-space-size=4096', BIN, 'sim-agents', '--conductor', c.agentAddr, '--count', String(n), '--seed', SEED, '--log-level', 'error'], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    try {
      let connected = 0;
      while (Date.now() - t0 < CONNECT_TIMEOUT_S * 1000) {
        connected = (await metric(c.apiUrl, 'ironfleet_agents_connected')).get('') ?? 0;
        if (connected >= n) break;
        await sleep(500);
      }
      const connectS = (Date.now() - t0) / 1000;
      if (connected < n) throw new Error(`only ${connected}/${n} agents connected within ${CONNECT_TIMEOUT_S}s`);
      await sleep(HEARTBEAT_S * 1000); // settle: every agent sent its inventory and first heartbeats
      const hb0 = (await metric(c.apiUrl, 'ironfleet_agent_messages_total')).get('{kind="heartbeat"}') ?? 0;
      const s0 = procSample(c.child.pid!);
      const w0 = Date.now();
      let peakRss = s0.rssMiB;
      while (Date.now() - w0 < STEADY_S * 1000) {
        await sleep(1000);
        peakRss = Math.max(peakRss, procSample(c.child.pid!).rssMiB);
      }
      const s1 = procSample(c.child.pid!);
      const secs = (Date.now() - w0) / 1000;
      const hb1 = (await metric(c.apiUrl, 'ironfleet_agent_messages_total')).get('{kind="heartbeat"}') ?? 0;
      const cpuPct = ((s1.cpuS - s0.cpuS) / secs) * 100;
      const agentRss = procSample(agents.pid!).rssMiB;
      return {
        idleRss,
        row: {
          agents: n,
          connect_s: Math.round(connectS * 10) / 10,
          conductor_rss_mib: Math.round(peakRss),
          rss_per_agent_kib: Math.round(((peakRss - idleRss) * 1024) / n * 10) / 10,
          conductor_cpu_pct: Math.round(cpuPct * 10) / 10,
          cpu_ms_per_agent_per_min: Math.round((((s1.cpuS - s0.cpuS) * 1000) / n / secs) * 60 * 100) / 100,
          heartbeats_per_s: Math.round(((hb1 - hb0) / secs) * 10) / 10,
          expected_hb_per_s: Math.round((n / HEARTBEAT_S) * 10) / 10,
          agent_proc_rss_mib: Math.round(agentRss),
        },
      };
    } finally {
      agents.kill('SIGTERM');
      await new Promise((r) => agents.once('exit', r));
    }
  } finally {
    c.child.kill('SIGTERM');
    await new Promise((r) => c.child.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main() {
  const rows: Row[] = [];
  let idle = 0;
  for (const n of SIZES) {
    console.log(`agent-streams: ${n} agents…`);
    const r = await runSize(n);
    idle = r.idleRss;
    rows.push(r.row);
  }
  printTable(`agent-streams (heartbeat every ${HEARTBEAT_S}s, steady window ${STEADY_S}s; baseline: idle conductor ${Math.round(idle)} MiB)`, rows.map((r) => ({ ...r })));
  const big = rows[rows.length - 1]!;
  const doc: Record<string, unknown> = {
    quick,
    heartbeat_interval_s: HEARTBEAT_S,
    steady_window_s: STEADY_S,
    baseline_idle_conductor_rss_mib: Math.round(idle),
    rows,
    target_rss_mib: 1024,
  };
  const tenK = rows.find((r) => r.agents === 10_000);
  if (tenK) {
    doc.conductor_rss_mib_10k_agents = tenK.conductor_rss_mib;
    doc.rss_ratio_to_target_10k = Math.round((tenK.conductor_rss_mib / 1024) * 1000) / 1000;
    doc.rss_ratio_to_idle_10k = Math.round((tenK.conductor_rss_mib / idle) * 100) / 100;
  }
  doc.largest = { agents: big.agents, rss_ratio_to_idle: Math.round((big.conductor_rss_mib / idle) * 100) / 100 };
  const file = writeResults('agent-streams', doc);
  console.log(`\nwrote ${file}`);
  if (tenK) console.log(`conductor_rss_mib_10k_agents = ${tenK.conductor_rss_mib} (target <= 1024) -> ${tenK.conductor_rss_mib <= 1024 ? 'MET' : 'NOT MET'}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
