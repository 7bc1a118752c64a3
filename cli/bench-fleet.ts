/**
 * `ironfleet bench-fleet`: what an operator runs against their own fleet before trusting anyone's
 * figures. A fresh conductor process (SQLite in a temporary directory, or `--database`), the fleet
 * enrolled from a simulator manifest or walked from a Redfish service (sushy-tools included),
 * managed, then K steady power-sync sweeps. The conductor is measured as its own process from /proc
 * (all threads): CPU per node per sweep over the steady window, RSS and KiB per BMC over the idle
 * conductor, BMC requests and new sessions during the steady sweeps (from its /metrics), sweep
 * p50/p95 (from its log), and the API at that size (`GET /v1/nodes` pages, `baremetal node list`).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ApiClient } from './api-client.js';
import { enrollEntries, listAll, manifestEntries, redfishEntries, type EnrollEntry } from './enroll.js';
import { forEachLimit } from '../shared/pool.js';
import { mainThreadCpuS, procSample } from '../shared/proc-stats.js';
import { IronfleetError } from '../shared/errors.js';

const BIN = fileURLToPath(new URL('../../bin/ironfleet.js', import.meta.url));

export interface BenchFleetOptions {
  manifest?: string;
  redfish?: { url: string; username: string; password: string; verifyCa: boolean | string; addressTemplate?: string };
  /** postgres://… (must hold no nodes); default: SQLite in a temporary directory. */
  database?: string;
  sweeps: number;
  intervalS: number;
  poolSize?: number;
  /** Extra conductor environment (IRONFLEET_… settings). */
  env?: Record<string, string>;
  /** Node flags for the conductor (e.g. --cpu-prof). */
  nodeArgs?: string[];
  progress: (text: string) => void;
}

export interface BenchFleetResult extends Record<string, unknown> {
  nodes: number;
  database: string;
  enrol_s: number;
  manage_s: number;
  manage_failed: number;
  sweep_s_p50: number;
  sweep_s_p95: number;
  cpu_ms_per_node_per_sweep: number;
  main_thread_cpu_ms_per_node_per_sweep: number;
  /** Power/health changes, maintenance entries and recoveries the steady sweeps recorded (0 on a steady fleet). */
  steady_sweep_changes: number;
  steady_sweep_failures: number;
  rss_mib: number;
  /** KiB per BMC over the idle conductor, lowest and highest over the steady window (sampled every 0.5 s). */
  rss_kib_per_bmc_steady_min: number;
  rss_kib_per_bmc_steady_max: number;
  rss_idle_mib: number;
  rss_kib_per_bmc: number;
  memory_mib: Record<string, number>;
  worker_gc_ms_per_node_per_sweep: number;
  requests_per_node_per_sweep: number;
  sessions_after_first_sweep: number;
  api_page_ms_p50: number;
  api_page_ms_max: number;
  baremetal_node_list_s: number | null;
  failed_emfile: number;
  api_connection_errors: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pct = (xs: number[], p: number) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))]! : 0);
const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;

/** Counter values from a Prometheus text page, by full series name. */
function series(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.slice(name.length + 1)) : 0;
}

function memoryBreakdown(m: string, rssMiB: number): Record<string, number> {
  const mib = (x: number) => Math.round(x / 2 ** 20);
  const main = series(m, 'ironfleet_nodejs_heap_size_total_bytes');
  const workers = series(m, 'ironfleet_bmc_worker_heap_bytes{kind="total"}');
  return {
    main_heap_used: mib(series(m, 'ironfleet_nodejs_heap_size_used_bytes')),
    main_heap_total: mib(main),
    workers_heap_used: mib(series(m, 'ironfleet_bmc_worker_heap_bytes{kind="used"}')),
    workers_heap_total: mib(workers),
    native_and_other: Math.round(rssMiB - mib(main) - mib(workers)),
  };
}

export async function benchFleet(o: BenchFleetOptions): Promise<BenchFleetResult> {
  const entries: EnrollEntry[] = o.manifest ? manifestEntries(JSON.parse(readFileSync(o.manifest, 'utf8'))) : await redfishEntries({ ...o.redfish!, progress: o.progress });
  if (!entries.length) throw new IronfleetError('IRF_INVALID_INPUT', 'bench-fleet: the fleet has no systems');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ironfleet-bench-fleet-'));
  const database = o.database ?? `sqlite://${path.join(dir, 'ironfleet.db')}`;
  const sweeps: Array<{ at: number; ms: number; changes: number; failed: number }> = [];
  let child: ChildProcess | undefined;
  try {
    child = spawn(process.execPath, [...(o.nodeArgs ?? []), '--max-old-space-size=8192', BIN, 'conductor', '--api-port', '0', '--agent-port', '0', '--database', database], {
      env: {
        ...process.env,
        IRONFLEET_HOST: `bench-fleet-${process.pid}`,
        IRONFLEET_LOGGING__LEVEL: 'info',
        IRONFLEET_SECURITY__SECRETS_KEY_FILE: path.join(dir, 'secrets.key'),
        IRONFLEET_POWER_SYNC__INTERVAL_S: String(o.intervalS),
        IRONFLEET_CONDUCTOR__MAX_CONCURRENT_CLEAN: String(entries.length + 10),
        ...(o.poolSize ? { IRONFLEET_REDFISH__POOL_SIZE: String(o.poolSize) } : {}),
        ...o.env,
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const ready = await new Promise<{ api_port: number }>((resolve, reject) => {
      let buf = '';
      child!.stdout!.on('data', (d: Buffer) => {
        buf += d.toString();
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (line.startsWith('{"ready"')) resolve(JSON.parse(line));
          else if (line.includes('"power sync sweep"')) {
            let r: Partial<Record<'duration_ms' | 'changed_power' | 'changed_health' | 'entered_maintenance' | 'recovered' | 'failed', number>> = {};
            try {
              r = JSON.parse(line);
            } catch {
              /* not a whole log line: skipped, as before */
            }
            if (typeof r.duration_ms === 'number') sweeps.push({ at: Date.now(), ms: r.duration_ms, changes: (r.changed_power ?? 0) + (r.changed_health ?? 0) + (r.entered_maintenance ?? 0) + (r.recovered ?? 0), failed: r.failed ?? 0 });
          }
        }
      });
      child!.once('exit', (code) => reject(new Error(`conductor exited with ${code}`)));
    });
    const pid = child.pid!;
    const apiUrl = `http://127.0.0.1:${ready.api_port}`;
    const api = new ApiClient({ url: apiUrl });
    if ((await api.get<{ nodes: unknown[] }>('/v1/nodes?limit=1')).nodes.length) throw new IronfleetError('IRF_INVALID_INPUT', 'bench-fleet: the database already holds nodes; give it an empty one');
    await sleep(2000);
    const idle = procSample(pid);
    const metrics = async () => (await fetch(`${apiUrl}/metrics`)).text();

    let t0 = Date.now();
    await enrollEntries(api, 'redfish', entries, o.progress);
    const enrolS = (Date.now() - t0) / 1000;
    const nodes = await listAll<{ uuid: string }>(api, 'nodes', 'uuid');

    t0 = Date.now();
    let apiErrors = 0;
    await forEachLimit(nodes, 48, async (n) => {
      for (let i = 0; ; i++) {
        try {
          return void (await api.put(`/v1/nodes/${n.uuid}/states/provision`, { target: 'manage' }));
        } catch (err) {
          if (i >= 10 || !/HTTP (409|503)/.test(String(err))) throw err;
          await sleep(500);
        }
      }
    });
    let rows: Array<{ uuid: string; provision_state: string; last_error: string | null }> = [];
    for (;;) {
      try {
        rows = await listAll(api, 'nodes', 'uuid,provision_state,last_error');
      } catch {
        apiErrors++;
        await sleep(2000);
        continue;
      }
      const moving = rows.filter((n) => n.provision_state !== 'manageable' && !(n.provision_state === 'enroll' && n.last_error)).length;
      o.progress(`manage: ${rows.length - moving}/${rows.length} settled`);
      if (moving === 0 || Date.now() - t0 > 3600_000) break;
      await sleep(2000);
    }
    const manageS = (Date.now() - t0) / 1000;
    const failed = rows.filter((n) => n.provision_state !== 'manageable');

    // The first sweep that starts after manage is done logs in nowhere new; the steady window
    // starts when it ends, and holds K whole sweep intervals.
    const firstAfter = Date.now();
    while (!sweeps.some((s) => s.at - s.ms >= firstAfter)) await sleep(200);
    const m0 = await metrics();
    const c0 = procSample(pid).cpuS;
    const t0main = mainThreadCpuS(pid);
    const w0 = Date.now();
    const n0 = sweeps.length;
    // RSS over the steady window: it breathes with the sweeps (sockets, garbage, keep-alive).
    let rssMin = Infinity;
    let rssMax = 0;
    while (sweeps.length < n0 + o.sweeps) {
      o.progress(`steady sweeps: ${sweeps.length - n0}/${o.sweeps}`);
      const { rssMiB } = procSample(pid);
      rssMin = Math.min(rssMin, rssMiB);
      rssMax = Math.max(rssMax, rssMiB);
      await sleep(500);
    }
    const c1 = procSample(pid).cpuS;
    const t1main = mainThreadCpuS(pid);
    const windowS = (Date.now() - w0) / 1000;
    const m1 = await metrics();
    const end = procSample(pid);
    const steady = sweeps.slice(n0).map((s) => s.ms / 1000);
    // A steady fleet changes nothing: each change a sweep records is a node write and history.
    const steadyChanges = sweeps.slice(n0).reduce((a, s) => a + s.changes, 0);
    const steadyFailed = sweeps.slice(n0).reduce((a, s) => a + s.failed, 0);

    const pages: number[] = [];
    for (let marker = ''; ; ) {
      const p0 = performance.now();
      const page = await api.get<{ nodes: Array<{ uuid: string }> }>(`/v1/nodes?limit=1000${marker}`);
      pages.push(performance.now() - p0);
      if (page.nodes.length < 1000) break;
      marker = `&marker=${page.nodes[page.nodes.length - 1]!.uuid}`;
    }
    let baremetal: number | null = null;
    if (existsSync('/usr/bin/baremetal')) {
      const b0 = performance.now();
      await promisify(execFile)('/usr/bin/baremetal', ['--os-endpoint', apiUrl, '--os-auth-type', 'none', 'node', 'list', '--limit', '0', '-f', 'value', '-c', 'UUID'], { maxBuffer: 64 << 20, timeout: 600_000 });
      baremetal = round((performance.now() - b0) / 1000);
    }
    const n = entries.length;
    return {
      nodes: n,
      database: database.startsWith('postgres') ? 'postgresql' : 'sqlite',
      enrol_s: round(enrolS, 1),
      manage_s: round(manageS, 1),
      manage_failed: failed.length,
      sweep_s_p50: round(pct(steady, 0.5)),
      sweep_s_p95: round(pct(steady, 0.95)),
      steady_window_s: round(windowS, 1),
      cpu_ms_per_node_per_sweep: round(((c1 - c0) * 1000) / (n * o.sweeps), 3),
      // Of which the main thread (listing, applying results, API); the rest is BMC threads and V8's.
      main_thread_cpu_ms_per_node_per_sweep: round(((t1main - t0main) * 1000) / (n * o.sweeps), 3),
      rss_mib: Math.round(end.rssMiB),
      rss_idle_mib: Math.round(idle.rssMiB),
      rss_kib_per_bmc: round(((end.rssMiB - idle.rssMiB) * 1024) / n, 1),
      rss_kib_per_bmc_steady_min: round(((Math.min(rssMin, end.rssMiB) - idle.rssMiB) * 1024) / n, 1),
      rss_kib_per_bmc_steady_max: round(((Math.max(rssMax, end.rssMiB) - idle.rssMiB) * 1024) / n, 1),
      steady_sweep_changes: steadyChanges,
      steady_sweep_failures: steadyFailed,
      requests_per_node_per_sweep: round((series(m1, 'ironfleet_bmc_requests_total{kind="requests"}') - series(m0, 'ironfleet_bmc_requests_total{kind="requests"}')) / (n * o.sweeps)),
      sessions_after_first_sweep: series(m1, 'ironfleet_bmc_requests_total{kind="logins"}') - series(m0, 'ironfleet_bmc_requests_total{kind="logins"}'),
      // Where the RSS goes, from the conductor's own /metrics after the steady sweeps (MiB): the
      // main thread's V8 heap, the BMC workers' heaps, and the rest (sockets, TLS, SQLite, code).
      memory_mib: memoryBreakdown(m1, end.rssMiB),
      worker_gc_ms_per_node_per_sweep: round(((series(m1, 'ironfleet_bmc_worker_gc_seconds_total{kind="minor"}') + series(m1, 'ironfleet_bmc_worker_gc_seconds_total{kind="major"}') - series(m0, 'ironfleet_bmc_worker_gc_seconds_total{kind="minor"}') - series(m0, 'ironfleet_bmc_worker_gc_seconds_total{kind="major"}')) * 1000) / (n * o.sweeps), 4),
      fds_open: series(m1, 'ironfleet_process_open_fds'),
      fds_max: series(m1, 'ironfleet_process_max_fds'),
      api_page_ms_p50: round(pct(pages, 0.5), 1),
      api_page_ms_max: round(Math.max(...pages), 1),
      baremetal_node_list_s: baremetal,
      failed_emfile: failed.filter((r) => /EMFILE/.test(r.last_error ?? '')).length,
      api_connection_errors: apiErrors,
      manage_errors: Object.entries(failed.reduce<Record<string, number>>((a, r) => ((a[(r.last_error ?? '').slice(0, 80)] = (a[(r.last_error ?? '').slice(0, 80)] ?? 0) + 1), a), {})).slice(0, 5),
    };
  } finally {
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child!.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([exited, sleep(30_000)]);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The result as the table an operator reads. */
export function benchFleetTable(r: BenchFleetResult): string {
  const rows: Array<[string, string]> = [
    ['nodes', String(r.nodes)],
    ['database', r.database],
    ['enrol / manage', `${r.enrol_s} s / ${r.manage_s} s (${r.manage_failed} failed)`],
    ['sweep p50 / p95', `${r.sweep_s_p50} s / ${r.sweep_s_p95} s`],
    ['conductor CPU per node per sweep', `${r.cpu_ms_per_node_per_sweep} ms`],
    ['  of which the main thread', `${r.main_thread_cpu_ms_per_node_per_sweep} ms`],
    ['conductor RSS (idle)', `${r.rss_mib} MiB (${r.rss_idle_mib} MiB): ${r.rss_kib_per_bmc} KiB per BMC`],
    ['  over the steady sweeps, KiB per BMC', `${r.rss_kib_per_bmc_steady_min} – ${r.rss_kib_per_bmc_steady_max}`],
    ['  BMC threads GC per node per sweep', `${r.worker_gc_ms_per_node_per_sweep} ms`],
    ['  of which (MiB)', `main heap ${r.memory_mib.main_heap_total} (${r.memory_mib.main_heap_used} used), BMC workers' heaps ${r.memory_mib.workers_heap_total} (${r.memory_mib.workers_heap_used} used), native + other ${r.memory_mib.native_and_other}`],
    ['changes / failures in the steady sweeps', `${r.steady_sweep_changes} / ${r.steady_sweep_failures}`],
    ['BMC requests per node per sweep', String(r.requests_per_node_per_sweep)],
    ['sessions created after the first sweep', String(r.sessions_after_first_sweep)],
    ['descriptors open / limit', `${r.fds_open} / ${r.fds_max}`],
    ['GET /v1/nodes?limit=1000 p50 / max', `${r.api_page_ms_p50} / ${r.api_page_ms_max} ms`],
    ['baremetal node list (all)', r.baremetal_node_list_s === null ? 'baremetal not installed' : `${r.baremetal_node_list_s} s`],
    ['EMFILE failures / API connection errors', `${r.failed_emfile} / ${r.api_connection_errors}`],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n');
}

export function writeBenchFleet(file: string, r: BenchFleetResult): void {
  writeFileSync(file, JSON.stringify(r, null, 2));
}
