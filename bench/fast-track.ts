/**
 * bench/fast-track: redeploy (rebuild) a whole fleet whose ramdisk agents are already connected,
 * with fast-track on (the agent is reused, no power cycle) against the same rebuild with
 * fast-track off (reboot into the ramdisk through Redfish, simulated boot delay, agent calls back,
 * then reboot into the instance). Real processes: a conductor (SQLite), the BMC simulator in one
 * process (`--workers 1`) holding N Redfish BMCs and N real gRPC agents that write a small served
 * image, sha256-verified, onto their file-backed disks.
 *
 * Per node: overhead = (time the node reached `active` − time its rebuild was requested) − the
 * image write (the agent's deploy.write_image command, sent → result). Target: overhead_p50_ms ≤ 200
 * with fast-track, 1,000 agents, all rebuilt in one run.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { ApiClient } from '../cli/api-client.js';
import { forEachLimit } from '../shared/pool.js';
import type { Manifest } from '../sim/fleet.js';
import { printTable, serveBenchImage, procSample, sleep, spawnReady, treeCpuS, writeResults } from './lib.js';

const quick = process.argv.includes('--quick');
const N = Number(argValue('--nodes') ?? (quick ? 200 : 1000));
const BOOT_DELAY_MS = Number(argValue('--boot-delay-ms') ?? (quick ? 1000 : 5000));
const IMAGE_BYTES = 1024 * 1024;
const PHASE_TIMEOUT_MS = quick ? 45_000 : 240_000;
const API_WIDTH = 64;
/** Rebuilds kept in flight by the operator's client (Metal3's PROVISIONING_LIMIT default). */
const WINDOW = Number(argValue('--in-flight') ?? 20);

function argValue(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}


const pct = (xs: number[], p: number) => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};

interface NodeRow {
  uuid: string;
  name: string;
  provision_state: string;
  provision_updated_at: string | null;
  last_error: string | null;
}

interface Phase {
  case: string;
  nodes: number;
  in_flight: number;
  active: number;
  failed: number;
  total_s: number;
  per_node_p50_ms: number;
  write_p50_ms: number;
  before_write_p50_ms: number;
  after_write_p50_ms: number;
  overhead_p50_ms: number;
  overhead_p95_ms: number;
  bmc_resets: number;
  conductor_cpu_ms_per_node: number;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ironfleet-bench-ft-'));
  const children: ChildProcess[] = [];
  let server: http.Server | undefined;
  try {
    // The image: 1 MiB, served on loopback; every node writes it with sha256 verification.
    const img = await serveBenchImage(IMAGE_BYTES);
    server = img.server;
    const { url: imageUrl, sha } = img;

    const conductor = await spawnReady(['conductor', '--api-port', '0', '--agent-port', '0', '--database', `sqlite://${path.join(dir, 'ironfleet.db')}`], {
      env: {
        IRONFLEET_HOST: 'bench-conductor',
        IRONFLEET_LOGGING__LEVEL: 'warn',
        IRONFLEET_CONDUCTOR__ERASE_DEVICES_PRIORITY: '0',
        IRONFLEET_CONDUCTOR__FAST_TRACK_TIMEOUT_S: '3600',
        IRONFLEET_CONDUCTOR__DEPLOY_CALLBACK_TIMEOUT_S: '900',
        IRONFLEET_POWER_SYNC__INTERVAL_S: '0',
        IRONFLEET_SENSORS__INTERVAL_S: '0',
        IRONFLEET_REDFISH__BREAKER_THRESHOLD: '100',
        // "All at once" means all N in flight: lift Ironic's admission limits (250 deploy, 50 clean).
        IRONFLEET_CONDUCTOR__MAX_CONCURRENT_DEPLOY: String(N + 10),
        IRONFLEET_CONDUCTOR__MAX_CONCURRENT_CLEAN: String(N + 10),
      },
      ...(process.env.BENCH_CPU_PROF_DIR ? { nodeArgs: ['--max-old-space-size=4096', '--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF_DIR}`] } : {}),
    });
    children.push(conductor.child);
    const apiUrl = `http://127.0.0.1:${conductor.ready.api_port}`;
    const agentAddr = `127.0.0.1:${conductor.ready.agent_port}`;
    const manifestPath = path.join(dir, 'fleet.json');
    const sim = await spawnReady(
      ['sim', '--bmcs', String(N), '--profile', 'ideal', '--http', '--workers', '1', '--seed', 'bench-ft', '--admin-port', '0', '--manifest', manifestPath,
        '--port', String(20000 + Math.floor(Math.random() * 20000)), '--agents', agentAddr, '--boot-delay-ms', String(BOOT_DELAY_MS), '--disk-dir', path.join(dir, 'disks')],
    );
    children.push(sim.child);
    const simAdmin = String(sim.ready.admin);
    const api = new ApiClient({ url: apiUrl });
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as Manifest;
    const t0 = Date.now();
    const uuids: string[] = new Array(manifest.bmcs.length);
    await forEachLimit(manifest.bmcs, API_WIDTH, async (b, i) => {
      const n = await api.post<{ uuid: string }>('/v1/nodes', {
        driver: 'redfish',
        name: b.name,
        driver_info: { redfish_address: b.address, redfish_username: b.username, redfish_password: b.password, redfish_system_id: b.system_id },
        instance_info: { image_source: imageUrl, image_os_hash_algo: 'sha256', image_os_hash_value: sha },
      });
      for (const mac of b.macs) await api.post('/v1/ports', { address: mac, node_uuid: n.uuid });
      uuids[i] = n.uuid;
    });
    console.log(`enrolled ${N} nodes in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

    const listAll = async (): Promise<NodeRow[]> => {
      const out: NodeRow[] = [];
      let next: string | undefined = `/v1/nodes?limit=1000&fields=uuid,name,provision_state,provision_updated_at,last_error`;
      while (next) {
        const page: { nodes: NodeRow[]; next?: string } = await api.get(next);
        out.push(...page.nodes);
        next = page.next ? page.next.slice(apiUrl.length) : undefined;
      }
      return out;
    };
    /** Requests `verb` on every node, waits until all are in `want` (or failed); returns per-node figures. */
    const moveAll = async (verb: string, want: string, timeoutMs = PHASE_TIMEOUT_MS, requested = new Map<string, number>()) => {
      const start = Date.now();
      await forEachLimit(uuids, API_WIDTH, async (u) => {
        requested.set(u, Date.now());
        await api.put(`/v1/nodes/${u}/states/provision`, { target: verb });
      });
      for (;;) {
        const rows = await listAll();
        const done = rows.filter((r) => r.provision_state === want || /failed$/.test(r.provision_state));
        if (done.length === rows.length) return { rows, requested, totalMs: Math.max(...rows.map((r) => Date.parse(r.provision_updated_at ?? '') || Date.now())) - start };
        if (Date.now() - start > timeoutMs) {
          const stuck = rows.filter((r) => r.provision_state !== want);
          throw new Error(`${verb}: ${stuck.length} nodes not ${want} after ${timeoutMs} ms (e.g. ${stuck[0]?.name} ${stuck[0]?.provision_state} ${stuck[0]?.last_error ?? ''})`);
        }
        await sleep(250);
      }
    };
    const resets = async (): Promise<number> => {
      let sum = 0;
      await forEachLimit(manifest.bmcs, API_WIDTH, async (_b, i) => {
        const r = await fetch(`${simAdmin}/bmcs/${i}`);
        sum += Number(((await r.json()) as { machine: { resets: number } }).machine.resets);
      });
      return sum;
    };

    // Setup (not measured): verify, then provide — automated cleaning powers every machine on,
    // its agent boots and connects and stays under the fast-track lease; then a first deploy.
    let t = Date.now();
    await moveAll('manage', 'manageable');
    const cpuAt = () => ({ conductor: treeCpuS(conductor.child.pid!), sim: treeCpuS(sim.child.pid!) });
    const c0 = cpuAt();
    t = Date.now();
    await moveAll('provide', 'available', PHASE_TIMEOUT_MS + BOOT_DELAY_MS * 2);
    const c1 = cpuAt();
    console.log(`setup: ${N} agents booted and connected (cleaning), available in ${((Date.now() - t) / 1000).toFixed(1)} s (CPU s: conductor ${(c1.conductor - c0.conductor).toFixed(1)}, simulator ${(c1.sim - c0.sim).toFixed(1)})`);
    t = Date.now();
    await moveAll('active', 'active');
    console.log(`setup: first deploy of ${N} nodes in ${((Date.now() - t) / 1000).toFixed(1)} s`);

    /**
     * Rebuilds every node: `window` > 0 keeps that many rebuilds in flight (an operator tool or
     * Metal3's PROVISIONING_LIMIT of 20 does this), 0 requests all of them at once.
     */
    const phase = async (label: string, window: number): Promise<Phase> => {
      const r0 = await resets();
      const cpu0 = procSample(conductor.child.pid!).cpuS;
      const requested = new Map<string, number>();
      const start = Date.now();
      let rows: NodeRow[];
      if (window > 0) {
        await forEachLimit(uuids, window, async (u) => {
          requested.set(u, Date.now());
          await api.put(`/v1/nodes/${u}/states/provision`, { target: 'rebuild' });
          const deadline = Date.now() + PHASE_TIMEOUT_MS;
          for (;;) {
            await sleep(50);
            const n = await api.get<NodeRow>(`/v1/nodes/${u}?fields=provision_state,provision_updated_at`);
            if (n.provision_state === 'active' || /failed$/.test(n.provision_state)) return;
            if (Date.now() > deadline) throw new Error(`rebuild of ${u}: still ${n.provision_state} after ${PHASE_TIMEOUT_MS} ms`);
          }
        });
        rows = await listAll();
      } else {
        rows = (await moveAll('rebuild', 'active', PHASE_TIMEOUT_MS + BOOT_DELAY_MS * 4, requested)).rows;
      }
      const totalMs = Math.max(...rows.map((r) => Date.parse(r.provision_updated_at ?? '') || Date.now())) - start;
      const cpu1 = procSample(conductor.child.pid!).cpuS;
      const writes = new Map<string, { sent: number; done: number }>();
      await forEachLimit(uuids, API_WIDTH, async (u) => {
        const { commands } = await api.get<{ commands: Array<{ command_name: string; command_status: string; created_at: string; updated_at: string | null }> }>(`/v1/nodes/${u}/agent/commands`);
        const w = commands.filter((c) => c.command_name === 'deploy.write_image' && c.command_status === 'SUCCEEDED').sort((a, b) => Date.parse(b.created_at) - Date.parse(a.created_at))[0];
        if (w?.updated_at) writes.set(u, { sent: Date.parse(w.created_at), done: Date.parse(w.updated_at) });
      });
      const active = rows.filter((r) => r.provision_state === 'active' && writes.has(r.uuid));
      const at = (r: NodeRow) => Date.parse(r.provision_updated_at!);
      const perNode = active.map((r) => at(r) - requested.get(r.uuid)!);
      const write = active.map((r) => writes.get(r.uuid)!.done - writes.get(r.uuid)!.sent);
      const overhead = active.map((r, i) => perNode[i]! - write[i]!);
      return {
        case: label,
        nodes: rows.length,
        in_flight: window || rows.length,
        active: active.length,
        failed: rows.length - rows.filter((r) => r.provision_state === 'active').length,
        total_s: Math.round(totalMs / 100) / 10,
        per_node_p50_ms: pct(perNode, 50),
        write_p50_ms: pct(write, 50),
        before_write_p50_ms: pct(active.map((r) => writes.get(r.uuid)!.sent - requested.get(r.uuid)!), 50),
        after_write_p50_ms: pct(active.map((r) => at(r) - writes.get(r.uuid)!.done), 50),
        overhead_p50_ms: pct(overhead, 50),
        overhead_p95_ms: pct(overhead, 95),
        bmc_resets: (await resets()) - r0,
        conductor_cpu_ms_per_node: Math.round(((cpu1 - cpu0) * 1000) / rows.length),
      };
    };

    const on = await phase('(a) fast-track on', WINDOW);
    const onBurst = await phase('(b) fast-track on, all at once', 0);
    await forEachLimit(uuids, API_WIDTH, async (u) => {
      await api.patch(`/v1/nodes/${u}`, [{ op: 'add', path: '/driver_info/fast_track', value: false }]);
    });
    const off = await phase(`(c) fast-track off (boot ${BOOT_DELAY_MS} ms)`, WINDOW);
    const offBurst = await phase(`(d) fast-track off, all at once`, 0);
    const rows = [on, onBurst, off, offBurst];
    printTable(`fast-track: rebuild of ${N} nodes whose agents are connected, ${IMAGE_BYTES / 1024 / 1024} MiB image, ${WINDOW} in flight unless "all at once"`, rows as unknown as Array<Record<string, string | number>>);
    const ratio = (a: number, b: number) => Math.round((a / b) * 1000) / 1000;
    const doc = {
      nodes: N,
      in_flight: WINDOW,
      boot_delay_ms: BOOT_DELAY_MS,
      image_bytes: IMAGE_BYTES,
      phases: rows,
      overhead_p50_ms: on.overhead_p50_ms,
      overhead_p50_ms_fast_track_off: off.overhead_p50_ms,
      overhead_p50_ms_all_at_once: onBurst.overhead_p50_ms,
      total_s: on.total_s,
      total_s_fast_track_off: off.total_s,
      total_s_all_at_once: onBurst.total_s,
      total_s_all_at_once_fast_track_off: offBurst.total_s,
      speedup_total_vs_fast_track_off: ratio(off.total_s, on.total_s),
      speedup_total_all_at_once_vs_fast_track_off: ratio(offBurst.total_s, onBurst.total_s),
      ratio_overhead_vs_fast_track_off: ratio(on.overhead_p50_ms, off.overhead_p50_ms),
      target_overhead_p50_ms: 200,
      target_met: on.overhead_p50_ms <= 200 && on.failed === 0,
    };
    const file = writeResults('fast-track', doc);
    console.log(`\noverhead_p50_ms ${on.overhead_p50_ms} (target ≤ 200; fast-track off ${off.overhead_p50_ms}; all at once ${onBurst.overhead_p50_ms}); total ${on.total_s} s vs ${off.total_s} s fast-track off (×${doc.speedup_total_vs_fast_track_off}); BMC resets ${on.bmc_resets} vs ${off.bmc_resets}\nwrote ${file}`);
  } finally {
    for (const c of children.reverse()) {
      if (c.exitCode === null) {
        c.kill('SIGTERM');
        await new Promise((r) => c.once('exit', r));
      }
    }
    server?.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
