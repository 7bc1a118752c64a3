/**
 * bench/fleet-lifecycle: a whole fleet's life on BMCs that misbehave as real ones do. N simulated
 * machines (default 5,000; --quick 500) on the `realistic` profile — its storms, flapping and slow
 * BMCs — with real ramdisk agents (the simulator boots one per power-on), a conductor process on
 * SQLite, and faults injected as the deploy starts: a 60 s 5xx storm (half the requests) on 2 % of
 * the BMCs, 1 % black-holed for 20 s, session caps lowered to 2 on 1 %. Phases: enroll → manage →
 * inspect → provide → deploy all → undeploy half.
 *
 * Per phase: time, nodes per failure state with their last_error classes, BMC requests per node,
 * conductor CPU per node (its own process, from /proc). Overall: retries by code (/metrics).
 * `failed_transient` counts failures a BMC's faults do not explain (target 0); `failed_dead_bmc`
 * those whose BMC stayed unusable for a whole operation deadline (the error says so) and has a
 * standing fault in the simulator's record (black hole, slow, flapping). A node power sync put into
 * maintenance is waited for (power sync clears it when the BMC answers again), as automation would.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { ApiClient } from '../cli/api-client.js';
import { listAll as listNodePages } from '../cli/enroll.js';
import { forEachLimit } from '../shared/pool.js';
import type { Manifest } from '../sim/fleet.js';
import { printTable, serveBenchImage, sleep, spawnReady, treeCpuS, writeResults } from './lib.js';

const quick = process.argv.includes('--quick');
const N = Number(argValue('--nodes') ?? (quick ? 500 : 5000));
const PROFILE = argValue('--profile') ?? 'realistic';
const DEADLINE_S = Number(argValue('--deadline-s') ?? 60);
const PHASE_TIMEOUT_MS = Number(argValue('--phase-timeout-s') ?? (quick ? 400 : 1800)) * 1000;
const API_WIDTH = 48;
/**
 * How long a node held in power-failure maintenance is waited for: Ironic's own
 * power_failure_recovery_interval (300 s), the pace at which it looks at such nodes again.
 */
const RECOVERY_WAIT_MS = 300_000;

function argValue(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

interface NodeRow {
  uuid: string;
  name: string;
  provision_state: string;
  maintenance: boolean;
  last_error: string | null;
}

interface PhaseRow extends Record<string, string | number> {
  phase: string;
  nodes: number;
  seconds: number;
  ok: number;
  failed: number;
  requests_per_node: number;
  conductor_cpu_ms_per_node: number;
}

/**
 * A BMC that stayed unusable for a whole operation deadline, as the retry policy's error tells it:
 * only timeouts, refused/reset connections, an open breaker or "503 busy" for ≥ 90 % of the deadline.
 */
function deadBmc(lastError: string): boolean {
  const m = lastError.match(/tried \d+ times over ([0-9.]+) s \(answers: ([^)]*)\)/);
  if (!m) return false;
  const onlyUnusable = m[2]!.split(', ').every((a) => /^(RF_TIMEOUT|RF_CONNECT|RF_CIRCUIT_OPEN|RF_SESSION_CAP|HTTP 503)\b/.test(a));
  return onlyUnusable && Number(m[1]) >= DEADLINE_S * 0.9;
}

/** The standing faults a BMC drew from its profile (the simulator's own record), or none. */
function standingFaults(traits: { blackHole?: boolean; slowFactor?: number; flapping?: boolean }): string[] {
  const out: string[] = [];
  if (traits.blackHole) out.push('black hole');
  if ((traits.slowFactor ?? 1) > 1) out.push(`slow ×${traits.slowFactor}`);
  if (traits.flapping) out.push('flapping');
  return out;
}

/**
 * Has this node failed the phase? A failed state, or — for manage — back in `enroll` with a
 * last_error (Ironic's verify failure returns the node to enroll, not to a "failed" state).
 */
function failedIn(phase: string, n: NodeRow): boolean {
  return /failed$/.test(n.provision_state) || (phase === 'manage' && n.provision_state === 'enroll' && Boolean(n.last_error));
}

/** A short class of a last_error: codes and words, without node-specific ids, numbers and URLs. */
function errorClass(e: string): string {
  return e
    .replace(/https?:\/\/[^ ]+/g, '<bmc>')
    .replace(/[0-9a-f]{8}-[0-9a-f-]{27}/g, '<id>')
    .replace(/\d+(\.\d+)?/g, 'N')
    .slice(0, 110);
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ironfleet-bench-life-'));
  const children: ChildProcess[] = [];
  let server: http.Server | undefined;
  try {
    const img = await serveBenchImage(1024 * 1024);
    server = img.server;
    const { url: imageUrl, sha } = img;

    const conductor = await spawnReady(['conductor', '--api-port', '0', '--agent-port', '0', '--database', `sqlite://${path.join(dir, 'ironfleet.db')}`], {
      env: {
        IRONFLEET_HOST: 'bench-conductor',
        IRONFLEET_LOGGING__LEVEL: 'warn',
        IRONFLEET_CONDUCTOR__ERASE_DEVICES_PRIORITY: '0',
        IRONFLEET_CONDUCTOR__FAST_TRACK_TIMEOUT_S: '3600',
        IRONFLEET_CONDUCTOR__DEPLOY_CALLBACK_TIMEOUT_S: '900',
        IRONFLEET_REDFISH__OPERATION_DEADLINE_S: String(DEADLINE_S),
        IRONFLEET_POWER_SYNC__INTERVAL_S: '30',
        IRONFLEET_SENSORS__INTERVAL_S: '0',
        // The whole fleet in flight at once: the faults, not the admission limits, are under test.
        IRONFLEET_CONDUCTOR__MAX_CONCURRENT_DEPLOY: String(N + 10),
        IRONFLEET_CONDUCTOR__MAX_CONCURRENT_CLEAN: String(N + 10),
      },
      nodeArgs: ['--max-old-space-size=4096'],
    });
    children.push(conductor.child);
    const apiUrl = `http://127.0.0.1:${conductor.ready.api_port}`;
    const manifestPath = path.join(dir, 'fleet.json');
    const sim = await spawnReady([
      'sim', '--bmcs', String(N), '--profile', PROFILE, '--seed', 'bench-life', '--admin-port', '0', '--manifest', manifestPath,
      '--port', String(20000 + Math.floor(Math.random() * 20000)), '--agents', `127.0.0.1:${conductor.ready.agent_port}`, '--boot-delay-ms', '2000', '--disk-dir', path.join(dir, 'disks'),
    ]);
    children.push(sim.child);
    const simAdmin = String(sim.ready.admin);
    const simJson = async (method: string, p: string, body?: unknown) => (await fetch(`${simAdmin}${p}`, { method, body: body === undefined ? undefined : JSON.stringify(body) })).json() as Promise<Record<string, any>>;
    const simFault = async (i: number, body: unknown): Promise<void> => void (await simJson('POST', `/bmcs/${i}/faults`, body));
    const bmcRequests = async () => {
      const f = (await simJson('GET', '/stats')).fleet as Record<string, number>;
      return (f.requests_get ?? 0) + (f.requests_login ?? 0) + (f.requests_action ?? 0);
    };
    const api = new ApiClient({ url: apiUrl });
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as Manifest;
    const uuids: string[] = new Array(manifest.bmcs.length);
    const rows: PhaseRow[] = [];
    const failures: Record<string, Record<string, number>> = {};
    /** Every node that failed a phase, with its state and last_error then. */
    const failedAt = new Map<string, NodeRow>();
    const cpu = () => treeCpuS(conductor.child.pid!);

    // Marker paging that keeps the fields on every page (cli/enroll.ts).
    const listAll = () => listNodePages<NodeRow>(api, 'nodes', 'uuid,name,provision_state,maintenance,last_error');

    /** Waits (inside the phase's time) for power sync to take a node out of power-failure maintenance. */
    const recovered = async (u: string, t0: number): Promise<boolean> => {
      while (Date.now() - t0 < RECOVERY_WAIT_MS) {
        const n: { maintenance: boolean; fault: string | null } = await api.get(`/v1/nodes/${u}?fields=maintenance,fault`);
        if (!n.maintenance) return true;
        if (n.fault !== 'power failure') return false;
        await sleep(5000);
      }
      return false;
    };

    /** Runs one phase: `request` per node, then waits until each is in `want` or failed; records the row. */
    const phase = async (name: string, targets: string[], request: (u: string) => Promise<unknown>, want: string) => {
      const r0 = await bmcRequests();
      const c0 = cpu();
      const t0 = Date.now();
      /** Nodes the API refused because power sync put them into maintenance (their BMC failed its sweeps). */
      const held = new Set<string>();
      const send = async (u: string): Promise<void> => {
        for (let attempt = 0; ; attempt++) {
          try {
            await request(u);
            return;
          } catch (err) {
            if (/maintenance mode/.test((err as Error).message)) {
              held.add(u);
              return;
            }
            // 409 (locked by power sync for a moment) or 503: the operator's client tries again.
            if (attempt < 20 && /HTTP (409|503)/.test((err as Error).message)) {
              await sleep(500);
              continue;
            }
            throw err;
          }
        }
      };
      await forEachLimit(targets, API_WIDTH, send);
      // Power sync put these into maintenance ("power failure") and clears that itself once the BMC
      // answers a sweep again: as an operator's automation would, wait for that (in parallel, up to
      // RECOVERY_WAIT_MS), then ask again. A BMC that stays dead stays held.
      await Promise.all(
        [...held].map(async (u) => {
          if (!(await recovered(u, Date.now()))) return;
          held.delete(u);
          await send(u);
        }),
      );
      const set = new Set(targets.filter((u) => !held.has(u)));
      let nodes: NodeRow[];
      for (;;) {
        nodes = (await listAll()).filter((n) => set.has(n.uuid));
        const settled = nodes.filter((n) => n.provision_state === want || failedIn(name, n));
        if (settled.length === nodes.length) break;
        if (Date.now() - t0 > PHASE_TIMEOUT_MS) {
          console.log(`${name}: ${nodes.length - settled.length} nodes still moving after ${PHASE_TIMEOUT_MS / 1000} s; counted as failed`);
          break;
        }
        await sleep(1000);
      }
      const seconds = (Date.now() - t0) / 1000;
      const heldRows = (await listAll()).filter((n) => held.has(n.uuid));
      const failed = [...nodes.filter((n) => n.provision_state !== want), ...heldRows.map((n) => ({ ...n, provision_state: 'maintenance (power sync)' }))];
      for (const f of failed) failedAt.set(f.uuid, f);
      for (const f of failed) {
        const key = `${f.provision_state}: ${errorClass(f.last_error ?? '(no last_error)')}`;
        (failures[name] ??= {})[key] = (failures[name]![key] ?? 0) + 1;
      }
      rows.push({
        phase: name,
        nodes: targets.length,
        seconds: Math.round(seconds * 10) / 10,
        ok: targets.length - failed.length,
        failed: failed.length,
        requests_per_node: Math.round(((await bmcRequests()) - r0) / targets.length * 10) / 10,
        conductor_cpu_ms_per_node: Math.round(((cpu() - c0) * 1000) / targets.length),
      });
      console.log(`${name}: ${targets.length - failed.length}/${targets.length} ${want} in ${seconds.toFixed(1)} s`);
      return failed;
    };

    // enroll
    {
      const r0 = await bmcRequests();
      const c0 = cpu();
      const t0 = Date.now();
      await forEachLimit(manifest.bmcs, API_WIDTH, async (b, i) => {
        const n = await api.post<{ uuid: string }>('/v1/nodes', {
          driver: 'redfish',
          name: b.name,
          driver_info: { redfish_address: b.address, redfish_username: b.username, redfish_password: b.password, redfish_system_id: b.system_id, redfish_verify_ca: false },
          instance_info: { image_source: imageUrl, image_os_hash_algo: 'sha256', image_os_hash_value: sha },
        });
        for (const mac of b.macs) await api.post('/v1/ports', { address: mac, node_uuid: n.uuid });
        uuids[i] = n.uuid;
      });
      rows.push({ phase: 'enroll', nodes: N, seconds: Math.round((Date.now() - t0) / 100) / 10, ok: N, failed: 0, requests_per_node: Math.round(((await bmcRequests()) - r0) / N * 10) / 10, conductor_cpu_ms_per_node: Math.round(((cpu() - c0) * 1000) / N) });
      console.log(`enroll: ${N} nodes in ${rows[0]!.seconds} s`);
    }
    const verb = (target: string) => (u: string) => api.put(`/v1/nodes/${u}/states/provision`, { target });
    const live = (all: string[], failed: NodeRow[]) => {
      const bad = new Set(failed.map((f) => f.uuid));
      return all.filter((u) => !bad.has(u));
    };
    let fleet = uuids;
    fleet = live(fleet, await phase('manage', fleet, verb('manage'), 'manageable'));
    fleet = live(fleet, await phase('inspect', fleet, verb('inspect'), 'manageable'));
    fleet = live(fleet, await phase('provide', fleet, verb('provide'), 'available'));

    // The faults, as the deploy starts.
    const pick = (share: number, salt: number) => manifest.bmcs.map((_, i) => i).filter((i) => (i * 2654435761 + salt) % 1000 < share * 1000);
    const storm = pick(0.02, 17);
    const hole = pick(0.01, 503);
    const capped = pick(0.01, 911);
    await forEachLimit(storm, 16, (i) => simFault(i, { storm: { error_rate: 0.5, duration_s: 60 } }));
    await forEachLimit(hole, 16, (i) => simFault(i, { black_hole: true }));
    await forEachLimit(capped, 16, (i) => simFault(i, { max_sessions: 2 }));
    const unhole = setTimeout(() => void forEachLimit(hole, 16, (i) => simFault(i, { black_hole: false })), 20_000);
    console.log(`faults: 5xx storm (50 %, 60 s) on ${storm.length} BMCs, black hole (20 s) on ${hole.length}, session cap 2 on ${capped.length}`);
    fleet = live(fleet, await phase('deploy', fleet, verb('active'), 'active'));
    clearTimeout(unhole);
    await forEachLimit(hole, 16, (i) => simFault(i, { black_hole: false }));
    await phase('undeploy', fleet.slice(0, Math.floor(fleet.length / 2)), verb('deleted'), 'available');

    const metrics = await (await fetch(`${apiUrl}/metrics`)).text();
    const retries: Record<string, number> = {};
    for (const m of metrics.matchAll(/^ironfleet_bmc_operation_retries_total\{code="([A-Z_]+)"\} (\d+)/gm)) retries[m[1]!] = Number(m[2]);
    const failedNodes = [...failedAt.values()];
    // A failure is "dead BMC" only when both agree: the error says the BMC stayed unusable for the
    // whole deadline, and the simulator's record shows a standing fault (not a passing storm).
    const indexOf = new Map(uuids.map((u, i) => [u, i]));
    const explained = new Map<string, string[]>();
    await forEachLimit(failedNodes, 16, async (n) => {
      const detail = await simJson('GET', `/bmcs/${indexOf.get(n.uuid)}`);
      explained.set(n.uuid, standingFaults(detail.traits ?? {}));
    });
    const dead = failedNodes.filter((n) => deadBmc(n.last_error ?? '') && explained.get(n.uuid)!.length > 0);
    const byFault: Record<string, number> = {};
    for (const n of dead) for (const f of explained.get(n.uuid)!) byFault[f.replace(/×.*/, '')] = (byFault[f.replace(/×.*/, '')] ?? 0) + 1;
    for (const n of failedNodes.filter((f) => !dead.includes(f))) console.log(`  transient: ${n.name} (${n.provision_state}; BMC faults: ${explained.get(n.uuid)!.join(', ') || 'none'}): ${n.last_error}`);
    printTable(`fleet-lifecycle (${N} nodes, ${PROFILE}; operation deadline ${DEADLINE_S} s)`, rows);
    for (const [p, f] of Object.entries(failures)) for (const [k, n] of Object.entries(f)) console.log(`  ${p}: ${n} × ${k}`);
    console.log(`retries by code: ${JSON.stringify(retries)}`);
    const failedTransient = failedNodes.length - dead.length;
    console.log(`failed_transient=${failedTransient} (target 0), failed_dead_bmc=${dead.length} ${JSON.stringify(byFault)}`);
    writeResults('fleet-lifecycle', {
      nodes: N,
      profile: PROFILE,
      operation_deadline_s: DEADLINE_S,
      failed_transient: failedTransient,
      failed_dead_bmc: dead.length,
      failed_dead_bmc_by_fault: byFault,
      ...Object.fromEntries(rows.map((r) => [`phase_s_${r.phase}`, r.seconds])),
      ...Object.fromEntries(rows.map((r) => [`requests_per_node_${r.phase}`, r.requests_per_node])),
      ...Object.fromEntries(rows.map((r) => [`conductor_cpu_ms_per_node_${r.phase}`, r.conductor_cpu_ms_per_node])),
      retries_by_code: retries,
      failures_by_phase: failures,
      faults: { storm_bmcs: storm.length, black_holed_bmcs: hole.length, session_capped_bmcs: capped.length },
      rows,
    });
  } finally {
    for (const c of children) c.kill('SIGTERM');
    server?.close();
    await sleep(500);
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
