/**
 * Shared driver of the power-sync and sensors benchmarks: one simulator fleet, and on it, in one
 * run, (a) ironfleet's BMC engine at several pool sizes, (b) the Ironic-style baseline — Debian's
 * python3-sushy with a ThreadPoolExecutor of 8, session auth, one client per node — and (c) the
 * simulator's GET ceiling measured with the load generator on the same fleet.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import { startFleet, type RunningFleet } from '../sim/fleet.js';
import { compileConfig } from '../conductor/config.js';
import { Conductor } from '../conductor/manager.js';
import { createLogger } from '../shared/logger.js';
import { benchNodeRow, printTable, runLoadGen, writeResults } from './lib.js';

const run = promisify(execFile);

export type Mode = 'power' | 'sensors';

export interface FleetBenchOptions {
  name: string;
  mode: Mode;
  quick: boolean;
  sizes: number[];
  poolSizes: number[];
  steadySweeps: number;
  baselineNodes: (n: number) => number;
  ceilingSeconds: number;
}

const SUSHY = `
import json, sys, time
from concurrent.futures import ThreadPoolExecutor
import sushy
m = json.load(open(sys.argv[1])); count = int(sys.argv[2]); mode = sys.argv[3]
bmcs = m['bmcs'][:count]
def connect(b):
    # Ironic's SessionCache keeps one sushy client per node: session auth, verify off for the fleet CA.
    return sushy.Sushy(b['address'], auth=sushy.auth.SessionAuth(username=b['username'], password=b['password']), verify=False)
def read(args):
    s, b = args
    if mode == 'power':
        return str(s.get_system('/redfish/v1/Systems/' + b['system_id']).power_state)
    ch = s.get_chassis('/redfish/v1/Chassis/' + b['system_id'])
    return (len(ch.thermal.temperatures), len(ch.power.power_supplies))
with ThreadPoolExecutor(max_workers=8) as ex:
    t0 = time.time(); clients = list(ex.map(connect, bmcs)); login_s = time.time() - t0
    sweeps = []
    for _ in range(2):
        t0 = time.time(); res = list(ex.map(read, zip(clients, bmcs))); sweeps.append(time.time() - t0)
print(json.dumps({'nodes': len(bmcs), 'login_s': login_s, 'sweeps_s': sweeps, 'sample': str(res[0])}))
`;

async function sushyBaseline(dir: string, manifest: string, count: number, mode: Mode): Promise<{ nodes: number; login_s: number; sweeps_s: number[] }> {
  const script = path.join(dir, 'sushy_baseline.py');
  writeFileSync(script, SUSHY);
  const env = { ...process.env };
  delete env.REQUESTS_CA_BUNDLE; // it would override verify=False inside python-requests
  delete env.CURL_CA_BUNDLE;
  const { stdout } = await run('/usr/bin/python3', ['-W', 'ignore', script, manifest, String(count), mode], { env, timeout: 900_000, maxBuffer: 16 * 1024 * 1024 });
  return JSON.parse(stdout.trim().split('\n').pop()!);
}


async function seedNodes(c: Conductor, fleet: RunningFleet): Promise<void> {
  const rows = fleet.manifest.bmcs.map((b) =>
    benchNodeRow({
      uuid: randomUUID(),
      name: b.name,
      driver: 'redfish',
      provision_state: 'available',
      driver_info: { redfish_address: b.address, redfish_username: b.username, redfish_password: b.password, redfish_system_id: b.system_id, redfish_verify_ca: false },
    }),
  );
  for (let i = 0; i < rows.length; i += 500) await c.store.db.insertInto('nodes').values(rows.slice(i, i + 500)).execute();
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export async function runFleetBench(o: FleetBenchOptions): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), `ironfleet-bench-${o.name}-`));
  const rows: Array<Record<string, string | number>> = [];
  const doc: Record<string, unknown> = { quick: o.quick, profile: 'realistic', mode: o.mode, gets_per_node: o.mode === 'power' ? 1 : 2, steady_sweeps: o.steadySweeps };
  const perSize: Record<string, unknown> = {};
  try {
    for (const n of o.sizes) {
      const tag = `${n / 1000}k`;
      console.log(`${o.name}: ${n} BMCs (realistic)…`);
      const fleet = await startFleet({ bmcs: n, profile: 'realistic', manifest: path.join(dir, `m-${n}.json`), admin_port: 0, port: 9643, seed: `bench-${o.name}` });
      const sizeDoc: Record<string, unknown> = {};
      try {
        // (c) the ceiling on this very fleet.
        const ceil = await runLoadGen(fleet.manifestPath, n, o.ceilingSeconds);
        const ceilingNodesPerS = o.mode === 'power' ? ceil.rps : ceil.rps / 2;
        await fleet.resetCounters();
        // (a) ironfleet.
        const cfg = compileConfig({ host: 'bench', database: { url: `sqlite://${path.join(dir, `c-${n}.db`)}` }, power_sync: { interval_s: 0, health_monitoring: true, sweep_deadline_ms: 120_000 }, redfish: { pool_size: o.poolSizes[0] } });
        const c = await Conductor.open(cfg, createLogger({ level: 'error' }));
        await seedNodes(c, fleet);
        const nodes = await c.store.listNodes();
        const sweep = async () => {
          const t0 = performance.now();
          if (o.mode === 'power') {
            const r = await c.powerSync.sweep();
            return { s: (performance.now() - t0) / 1000, ok: r.ok, failed: r.failed };
          }
          const r = await c.sensors.collect(nodes);
          return { s: (performance.now() - t0) / 1000, ok: r.ok, failed: r.failed };
        };
        const first = await sweep();
        const afterFirst = (await fleet.stats()).fleet as Record<string, number>;
        const sessionsAfterFirst = afterFirst.sessions_created;
        let best = Infinity;
        let sweepsAfterFirst = 0;
        for (const p of o.poolSizes) {
          if (c.pool!.poolSize !== p) await c.pool!.resize(p, await c.redfishTargets());
          await sweep(); // warm the new threads' sockets
          sweepsAfterFirst++;
          const times: number[] = [];
          let failed = 0;
          for (let i = 0; i < o.steadySweeps; i++) {
            const r = await sweep();
            times.push(r.s);
            failed += r.failed;
            sweepsAfterFirst++;
          }
          const med = median(times);
          best = Math.min(best, med);
          rows.push({ case: `ironfleet pool=${p}`, bmcs: n, sweep_s: Math.round(med * 1000) / 1000, nodes_per_s: Math.round(n / med), failed_per_sweep: Math.round(failed / o.steadySweeps), vs_ceiling: Math.round((n / med / ceilingNodesPerS) * 1000) / 1000 });
          sizeDoc[`sweep_s_pool_${p}`] = Math.round(med * 1000) / 1000;
        }
        const end = (await fleet.stats()).fleet as Record<string, number>;
        // New sessions on BMCs that already had one (a BMC whose first login failed, e.g. while
        // flapping, and logs in later is its first session, not a repeat).
        const repeats = end.sessions_repeat - afterFirst.sessions_repeat;
        await c.stop();
        // (b) the Ironic-style baseline on a sample of the same fleet, extrapolated to the fleet.
        const bn = Math.min(n, o.baselineNodes(n));
        console.log(`${o.name}: sushy baseline on ${bn} of ${n} BMCs…`);
        const base = await sushyBaseline(dir, fleet.manifestPath, bn, o.mode);
        const baseRate = bn / base.sweeps_s[base.sweeps_s.length - 1]!;
        const baseSweepS = n / baseRate;
        rows.push({ case: `sushy x8 threads (baseline, ${bn} sampled)`, bmcs: n, sweep_s: Math.round(baseSweepS * 10) / 10, nodes_per_s: Math.round(baseRate), failed_per_sweep: 0, vs_ceiling: Math.round((baseRate / ceilingNodesPerS) * 1000) / 1000 });
        rows.push({ case: 'simulator ceiling (load generator)', bmcs: n, sweep_s: Math.round((n / ceilingNodesPerS) * 1000) / 1000, nodes_per_s: Math.round(ceilingNodesPerS), failed_per_sweep: 0, vs_ceiling: 1 });
        Object.assign(sizeDoc, {
          first_sweep_s: Math.round(first.s * 1000) / 1000,
          best_steady_sweep_s: Math.round(best * 1000) / 1000,
          baseline_sample_nodes: bn,
          baseline_login_s: Math.round(base.login_s * 10) / 10,
          baseline_steady_sweep_s_extrapolated: Math.round(baseSweepS * 10) / 10,
          ceiling_get_per_s: Math.round(ceil.rps),
          speedup_vs_baseline: Math.round((baseSweepS / best) * 10) / 10,
          fraction_of_sim_ceiling: Math.round((n / best / ceilingNodesPerS) * 1000) / 1000,
          sessions_first_sweep: sessionsAfterFirst,
          sessions_per_sweep_after_first: Math.round((repeats / sweepsAfterFirst) * 1000) / 1000,
          late_first_sessions: end.sessions_created - sessionsAfterFirst - repeats,
          bmcs_with_session: end.bmcs_with_sessions,
        });
        perSize[tag] = sizeDoc;
      } finally {
        await fleet.stop();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  printTable(`${o.name} (realistic profile; ${o.mode === 'power' ? 'GET System per node' : 'GET Thermal + Power per node'}; steady sweeps = median of ${o.steadySweeps})`, rows);
  const largest = perSize[`${o.sizes[o.sizes.length - 1]! / 1000}k`] as Record<string, number>;
  Object.assign(doc, { sizes: perSize, rows, speedup_vs_baseline: largest.speedup_vs_baseline, fraction_of_sim_ceiling: largest.fraction_of_sim_ceiling, sessions_per_sweep_after_first: largest.sessions_per_sweep_after_first });
  for (const [tag, d] of Object.entries(perSize)) {
    const x = d as Record<string, number>;
    console.log(`${tag}: speedup_vs_baseline=${x.speedup_vs_baseline} (target >= 50), fraction_of_sim_ceiling=${x.fraction_of_sim_ceiling} (target >= 0.8), sessions_per_sweep_after_first=${x.sessions_per_sweep_after_first} (target 0)`);
  }
  console.log(`wrote ${writeResults(o.name, doc)}`);
}
