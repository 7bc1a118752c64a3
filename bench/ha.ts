/**
 * bench/ha: several conductors on one PostgreSQL (embedded), N simulated BMCs on the realistic
 * profile (default 3,000; --quick 300), power sync every I s (10; --quick 3), and a deploying
 * subset with real ramdisk agents (the simulator boots them with all three agent endpoints). First
 * one conductor alone (the baseline for sweep throughput), then three; under load (deploys
 * writing) one conductor is killed with SIGKILL.
 *
 * Keys: takeover_s_p50 / takeover_s_max (kill → each orphaned node read again by its new owner,
 * seen at the BMC itself; target ≤ 15), bmc_logins_during_takeover (target 0),
 * nodes_swept_twice_per_interval (BMCs read twice within 0.9 interval while three conductors run;
 * target 0), stuck_nodes (deploys in no end state, locks, RUNNING deferred rows; target 0; a deploy
 * the dead conductor was mid-step in ends failed naming it: deploys_failed_mid_step),
 * sweep_s_1 / sweep_s_before_takeover / sweep_s_after_takeover, sweep_speedup_3_vs_1 (this is a
 * 2-core machine: three conductors share it; read the per-conductor CPU), cpu_ms_per_node_sweep.
 */
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { openDatabase } from '../conductor/db/database.js';
import { startEmbeddedPg } from '../cli/embedded-pg.js';
import { freePort } from '../shared/net.js';
import type { Manifest } from '../sim/fleet.js';
import { benchNodeRow, printTable, procSample, serveSlowly, sleep, spawnReady, writeResults } from './lib.js';

const quick = process.argv.includes('--quick');
const N = quick ? 300 : 3000;
const DEPLOYS = quick ? 6 : 24;
const INTERVAL_S = quick ? 3 : 10;
/** Intervals of steady state over which CPU is measured. */
const WINDOW = quick ? 1 : 3;
const pct = (xs: number[], p: number) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))]! : 0);
const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ironfleet-bench-ha-'));
  const children = new Map<string, ChildProcess>();
  const pgServer = await startEmbeddedPg();
  // The deploy image trickles (4 MiB/s) so the deploys are mid-write when a conductor dies.
  const image = Buffer.alloc((quick ? 8 : 16) * 1024 * 1024, 7);
  const sha = (await import('node:crypto')).createHash('sha256').update(image).digest('hex');
  const { url: imageUrl, close: closeImage } = await serveSlowly(image, 250);
  try {
    const db = await pgServer.database('ha');
    const names = ['c1', 'c2', 'c3'];
    const agentPorts = await Promise.all(names.map(() => freePort()));
    const manifestPath = path.join(dir, 'fleet.json');
    const sim = await spawnReady([
      'sim', '--bmcs', String(N), '--profile', 'realistic', '--seed', 'bench-ha', '--admin-port', '0', '--manifest', manifestPath, '--initial-power', 'off',
      '--port', String(20000 + Math.floor(Math.random() * 20000)), '--agents', agentPorts.map((p) => `127.0.0.1:${p}`).join(','), '--boot-delay-ms', '1500', '--disk-dir', path.join(dir, 'disks'),
    ]);
    children.set('sim', sim.child);
    const simAdmin = String(sim.ready.admin);
    const simJson = async (p: string) => (await (await fetch(`${simAdmin}${p}`)).json()) as Record<string, any>;
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as Manifest;

    // Seeding is setup: manageable nodes (swept), and the deploying subset available with ports and an image.
    const { db: kdb, close } = await openDatabase(db);
    const uuids: string[] = manifest.bmcs.map(() => randomUUID());
    const rows = manifest.bmcs.map((b, i) => ({
      ...benchNodeRow({ uuid: uuids[i]!, name: b.name, driver: 'redfish', provision_state: i < DEPLOYS ? 'available' : 'manageable', driver_info: { redfish_address: b.address, redfish_username: b.username, redfish_password: b.password, redfish_system_id: b.system_id, redfish_verify_ca: false } }),
      instance_info: i < DEPLOYS ? JSON.stringify({ image_source: imageUrl, image_checksum: sha }) : '{}',
    }));
    for (let i = 0; i < rows.length; i += 500) await kdb.insertInto('nodes').values(rows.slice(i, i + 500)).execute();
    const ids = await kdb.selectFrom('nodes').select(['id', 'uuid']).where('uuid', 'in', uuids.slice(0, DEPLOYS)).execute();
    const ts = new Date().toISOString();
    await kdb.insertInto('ports').values(ids.flatMap((r) => manifest.bmcs[uuids.indexOf(r.uuid)]!.macs.map((mac) => ({ uuid: randomUUID(), address: mac, node_id: r.id, extra: '{}', pxe_enabled: 1, local_link_connection: '{}', physical_network: null, created_at: ts, updated_at: null })))).execute();
    await close();

    const env = {
      IRONFLEET_LOGGING__LEVEL: 'warn',
      IRONFLEET_POWER_SYNC__INTERVAL_S: String(INTERVAL_S),
      // --quick: a short heartbeat to keep the run short; the full run uses the defaults (5 s / 10 s).
      ...(quick ? { IRONFLEET_CONDUCTOR__HEARTBEAT_INTERVAL_S: '1', IRONFLEET_CONDUCTOR__HEARTBEAT_TIMEOUT_S: '4' } : {}),
      IRONFLEET_CONDUCTOR__ERASE_DEVICES_PRIORITY: '0',
      IRONFLEET_SECURITY__SECRETS_KEY_FILE: path.join(dir, 'secrets.key'),
    };
    const apis = new Map<string, string>();
    const start = async (name: string) => {
      const c = await spawnReady(['conductor', '--api-port', '0', '--agent-port', String(agentPorts[names.indexOf(name)]), '--database', db], { env: { ...env, IRONFLEET_HOST: name } });
      children.set(name, c.child);
      apis.set(name, `http://127.0.0.1:${c.ready.api_port}`);
    };
    const lastSweeps = async (name: string) => ((await (await fetch(`${apis.get(name)}/console/api/fleet`)).json()) as { panels: { sweeps: Array<{ t: number; ms: number; nodes: number }> } }).panels.sweeps;
    const waitSweeps = async (name: string, n: number) => {
      for (let t = Date.now(); Date.now() - t < (INTERVAL_S * (n + 3) + 60) * 1000; await sleep(500)) if ((await lastSweeps(name)).length >= n) return;
      throw new Error(`${name}: fewer than ${n} sweeps`);
    };
    const cpuOver = async (who: string[], ms: number) => {
      const a = who.map((w) => procSample(children.get(w)!.pid!).cpuS);
      await sleep(ms);
      return who.map((w, i) => procSample(children.get(w)!.pid!).cpuS - a[i]!);
    };

    // 1. One conductor alone.
    await start('c1');
    await waitSweeps('c1', quick ? 1 : 3);
    const [cpu1] = await cpuOver(['c1'], INTERVAL_S * WINDOW * 1000);
    const s1 = (await lastSweeps('c1')).slice(-2);
    const sweep1 = Math.max(...s1.map((s) => s.ms)) / 1000;
    children.get('c1')!.kill('SIGTERM');
    await new Promise((r) => children.get('c1')!.once('exit', r));

    // 2. Three conductors.
    for (const n of names) await start(n);
    for (const n of names) await waitSweeps(n, quick ? 1 : 2);
    const cpu3 = await cpuOver(names, INTERVAL_S * WINDOW * 1000);
    const owned = new Map<string, string>();
    for (let next: string | undefined = `${apis.get('c1')}/v1/nodes?limit=1000&fields=uuid,conductor`; next; ) {
      const page = (await (await fetch(next)).json()) as { nodes: Array<{ uuid: string; conductor: string }>; next?: string };
      for (const n of page.nodes) owned.set(n.uuid, n.conductor);
      next = page.next;
    }
    const sweepBefore = Math.max(...(await Promise.all(names.map(async (n) => (await lastSweeps(n)).at(-1)!.ms)))) / 1000;
    // Double sweeps: BMC reads within 0.9 of an interval, counted at the BMCs themselves.
    const g0 = (await simJson('/counters/requests_get')).values as number[];
    await sleep(INTERVAL_S * 900);
    const g1 = (await simJson('/counters/requests_get')).values as number[];
    const sweptTwice = g1.filter((v, i) => i >= DEPLOYS && v - g0[i]! >= 2).length;

    // 3. Deploys through c1's API (forwarded to their owners); kill the conductor with the most nodes.
    const victim = names.map((n) => [n, [...owned.values()].filter((o) => o === n).length] as const).sort((a, b) => b[1] - a[1])[0]![0];
    for (const u of uuids.slice(0, DEPLOYS)) await fetch(`${apis.get('c1')}/v1/nodes/${u}/states/provision`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ target: 'active' }) });
    const survivor = names.find((n) => n !== victim)!;
    const writing = async () => {
      let n = 0;
      for (const u of uuids.slice(0, DEPLOYS)) {
        const cmds = (await (await fetch(`${apis.get(survivor)}/v1/nodes/${u}/agent/commands`)).json()) as { commands: Array<{ command_name: string; command_status: string }> };
        if (cmds.commands.some((c) => c.command_name === 'deploy.write_image' && c.command_status === 'RUNNING')) n++;
      }
      return n;
    };
    for (let t = Date.now(); Date.now() - t < 90_000 && (await writing()) < Math.ceil(DEPLOYS / 2); ) await sleep(500);
    const orphans = manifest.bmcs.map((_, i) => i).filter((i) => i >= DEPLOYS && owned.get(uuids[i]!) === victim);
    const before = (await simJson('/counters/requests_get')).values as number[];
    const sessions0 = (await simJson('/stats')).fleet.sessions_created as number;
    const logins0 = (await simJson('/stats')).fleet.requests_login as number;
    const tKill = Date.now();
    children.get(victim)!.kill('SIGKILL');
    children.delete(victim);
    const seen = new Map<number, number>();
    while (seen.size < orphans.length && Date.now() - tKill < 90_000) {
      await sleep(250);
      const now = (await simJson('/counters/requests_get')).values as number[];
      for (const i of orphans) if (!seen.has(i) && now[i]! > before[i]!) seen.set(i, (Date.now() - tKill) / 1000);
    }
    const takeover = [...seen.values()];
    const survivors = names.filter((n) => n !== victim);
    for (const n of survivors) await waitSweeps(n, (await lastSweeps(n)).length + 1);
    const sweepAfter = Math.max(...(await Promise.all(survivors.map(async (n) => (await lastSweeps(n)).at(-1)!.ms)))) / 1000;
    const stats1 = (await simJson('/stats')).fleet;

    // 4. Every deploy ends; nothing is left locked or RUNNING.
    const states = async () => Promise.all(uuids.slice(0, DEPLOYS).map(async (u) => ((await (await fetch(`${apis.get(survivor)}/v1/nodes/${u}`)).json()) as { provision_state: string; last_error: string | null })));
    for (let t = Date.now(); Date.now() - t < 180_000; await sleep(1000)) if ((await states()).every((s) => s.provision_state === 'active' || /failed$/.test(s.provision_state))) break;
    const final = await states();
    const client = new pg.Client({ connectionString: db });
    await client.connect();
    // What the dead conductor left behind (the survivors' own in-flight work is not stuck).
    const locks = Number((await client.query(`SELECT count(*)::int AS n FROM nodes WHERE reservation = $1`, [victim])).rows[0].n);
    const runningRows = Number((await client.query(`SELECT count(*)::int AS n FROM deferred_actions WHERE state = 'RUNNING' AND conductor = $1`, [victim])).rows[0].n);
    await client.end();
    const notActive = final.filter((s) => s.provision_state !== 'active');
    // A deploy the dead conductor was in the middle of a step of ends failed, naming it (a defined
    // end); stuck is one still in a transitional state after the settle time.
    const failedMidStep = notActive.filter((s) => /failed$/.test(s.provision_state) && /went offline while the node was/.test(s.last_error ?? ''));
    const stuckDeploys = notActive.filter((s) => !/failed$/.test(s.provision_state));

    const result = {
      nodes: N,
      conductors: 3,
      interval_s: INTERVAL_S,
      deploys: DEPLOYS,
      victim,
      orphaned_nodes: orphans.length,
      orphaned_swept: takeover.length,
      takeover_s_p50: round(pct(takeover, 0.5)),
      takeover_s_max: round(takeover.length ? Math.max(...takeover) : -1),
      bmc_logins_during_takeover: stats1.requests_login - logins0,
      bmc_sessions_created_during_takeover: stats1.sessions_created - sessions0,
      nodes_swept_twice_per_interval: sweptTwice,
      stuck_nodes: stuckDeploys.length + locks + runningRows,
      deploys_failed_mid_step: failedMidStep.length,
      deploys_not_active: notActive.map((s) => `${s.provision_state}: ${s.last_error}`),
      sweep_s_1: round(sweep1),
      sweep_s_before_takeover: round(sweepBefore),
      sweep_s_after_takeover: round(sweepAfter),
      sweep_speedup_3_vs_1: round(sweep1 / sweepBefore),
      cpu_ms_per_node_sweep_1: round((cpu1! * 1000) / (N * WINDOW)),
      cpu_ms_per_node_sweep_3: Object.fromEntries(names.map((n, i) => [n, round((cpu3[i]! * 1000) / ((N / 3) * WINDOW))])),
      cpu_s_per_interval_3: Object.fromEntries(names.map((n, i) => [n, round(cpu3[i]! / WINDOW)])),
      targets: { takeover_s_max: '<= 15', bmc_logins_during_takeover: 0, nodes_swept_twice_per_interval: 0, stuck_nodes: 0 },
    };
    printTable(`ha: ${N} nodes, 3 conductors on PostgreSQL, power sync every ${INTERVAL_S} s, ${DEPLOYS} deploys with agents; SIGKILL ${victim}`, [
      { measure: 'takeover (kill → orphan read by its new owner) p50 / max', value: `${result.takeover_s_p50} / ${result.takeover_s_max} s`, target: '≤ 15 s', note: `${takeover.length}/${orphans.length} orphaned nodes` },
      { measure: 'BMC logins during takeover', value: String(result.bmc_logins_during_takeover), target: '0', note: `sessions created ${result.bmc_sessions_created_during_takeover}` },
      { measure: 'BMCs read twice within 0.9 interval', value: String(sweptTwice), target: '0', note: '3 conductors running' },
      { measure: 'stuck nodes (deploys in no end state + locks + RUNNING rows)', value: String(result.stuck_nodes), target: '0', note: `${DEPLOYS - notActive.length}/${DEPLOYS} active, ${failedMidStep.length} failed mid-step naming the dead conductor` },
      { measure: 'sweep: 1 conductor / 3 / after takeover', value: `${result.sweep_s_1} / ${result.sweep_s_before_takeover} / ${result.sweep_s_after_takeover} s`, target: '', note: `speedup ${result.sweep_speedup_3_vs_1}× on 2 cores` },
      { measure: 'CPU ms per node per sweep: 1 / 3 conductors', value: `${result.cpu_ms_per_node_sweep_1} / ${JSON.stringify(result.cpu_ms_per_node_sweep_3)}`, target: '', note: '' },
    ]);
    console.log(`results: ${writeResults('ha', result)}`);
  } finally {
    for (const c of children.values()) c.kill('SIGKILL');
    await sleep(500);
    await closeImage();
    await pgServer.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
