/**
 * bench/console: the web console at fleet scale, measured in a real browser (Debian's chromium,
 * playwright-core). 10,000 nodes in a conductor process on SQLite — 1,000 of them Redfish nodes on
 * simulated BMCs (power sync every 1 s), 9,000 fake-hardware — in ten conductor groups.
 *
 * - first_render_ms_10k: navigation start → the map painted with all 10,000 cells (median of
 *   runs; target < 1,000). Baseline in the same run: listing the fleet the way Ironic's Horizon
 *   panel does (GET /v1/nodes/detail, paged) from the same page, before drawing anything.
 * - a power storm: 1,000 BMCs flipped on out of band within ~4 s (the simulator's fault API); power
 *   sync sees them and the console's stream carries them. event_lag_ms_p95 (change recorded by the
 *   conductor → applied in the page; target < 500), nodes per second delivered, bytes per second to
 *   the client (versus polling the node list every 2 s), and the per-update cost in the page
 *   (Performance API: parse + apply + repaint per batch).
 */
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { openDatabase } from '../conductor/db/database.js';
import { forEachLimit } from '../shared/pool.js';
import type { Manifest } from '../sim/fleet.js';
import { benchNodeRow, printTable, procSample, sleep, spawnReady, writeResults } from './lib.js';

// The functions given to page.evaluate/waitForFunction run in the browser, where these exist.
declare const window: any;
declare const document: any;

const quick = process.argv.includes('--quick');
const TOTAL = 10_000;
const REDFISH = 1_000;
const GROUPS = 10;
const RENDER_RUNS = quick ? 3 : 5;

const pct = (xs: number[], p: number) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))]! : 0);
const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ironfleet-bench-console-'));
  const children: ChildProcess[] = [];
  try {
    const manifestPath = path.join(dir, 'fleet.json');
    const sim = await spawnReady(['sim', '--bmcs', String(REDFISH), '--profile', 'ideal', '--http', '--seed', 'bench-console', '--admin-port', '0', '--manifest', manifestPath, '--port', String(20000 + Math.floor(Math.random() * 20000)), '--initial-power', 'off']);
    children.push(sim.child);
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as Manifest;

    // Seeding is setup, not what is measured: rows straight into the database.
    const dbUrl = `sqlite://${path.join(dir, 'ironfleet.db')}`;
    const { db, close } = await openDatabase(dbUrl);
    const rows = Array.from({ length: TOTAL }, (_, i) => {
      const b = i < REDFISH ? manifest.bmcs[i]! : undefined;
      return {
        ...benchNodeRow({
          uuid: randomUUID(),
          name: b ? b.name : `fake-${String(i).padStart(5, '0')}`,
          driver: b ? 'redfish' : 'fake-hardware',
          provision_state: b ? 'manageable' : ['available', 'active', 'manageable'][i % 3]!,
          power_state: b ? 'power off' : i % 3 === 1 ? 'power on' : 'power off',
          driver_info: b ? { redfish_address: b.address, redfish_username: b.username, redfish_password: b.password, redfish_system_id: b.system_id } : {},
        }),
        conductor_group: `rack-${String(i % GROUPS).padStart(2, '0')}`,
      };
    });
    for (let i = 0; i < rows.length; i += 500) await db.insertInto('nodes').values(rows.slice(i, i + 500)).execute();
    await close();

    const conductor = await spawnReady(['conductor', '--api-port', '0', '--agent-port', '0', '--database', dbUrl], {
      env: { IRONFLEET_HOST: 'bench-conductor', IRONFLEET_LOGGING__LEVEL: 'warn', IRONFLEET_POWER_SYNC__INTERVAL_S: '1', IRONFLEET_POWER_SYNC__FORCE_POWER_STATE: 'false', IRONFLEET_SECURITY__SECRETS_KEY_FILE: path.join(dir, 'secrets.key') },
    });
    children.push(conductor.child);
    const apiUrl = `http://127.0.0.1:${conductor.ready.api_port}`;
    const simAdmin = String(sim.ready.admin);
    // Power sync's first sweep logs in to every BMC; wait until it has recorded them all.
    for (let t = Date.now(); Date.now() - t < 60_000; await sleep(500)) {
      const r = (await (await fetch(`${apiUrl}/v1/nodes?driver=redfish&limit=1&fields=uuid`)).json()) as { nodes: unknown[] };
      const m = await (await fetch(`${apiUrl}/metrics`)).text();
      if (r.nodes.length && /ironfleet_power_sync_sweep_duration_seconds_count [1-9]/.test(m)) break;
    }

    const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
    try {
      const context = await browser.newContext({ viewport: { width: 1600, height: 1000 } });
      // First render, fresh page each time.
      const renders: number[] = [];
      const snapshotMs: number[] = [];
      const page = await context.newPage();
      for (let k = 0; k < RENDER_RUNS; k++) {
        await page.goto(`${apiUrl}/console/`);
        await page.waitForFunction(() => window.__console?.ready > 0 && window.__map?.cellCount === 10_000, undefined, { timeout: 30_000 });
        renders.push(await page.evaluate(() => window.__console.ready as number));
        snapshotMs.push(await page.evaluate(() => window.__console.snapshotMs as number));
      }
      await page.waitForFunction(() => document.querySelector('[data-testid=link]')?.textContent?.includes('live'));
      // The Horizon way, from the same page: every node's detail, paged, before anything is drawn.
      const listing = await page.evaluate(async () => {
        const t0 = performance.now();
        let bytes = 0;
        let next: string | undefined = '/v1/nodes/detail?limit=1000';
        let n = 0;
        while (next) {
          const res: Response = await fetch(next, { headers: { 'x-openstack-ironic-api-version': 'latest' } });
          const text = await res.text();
          bytes += text.length;
          const doc = JSON.parse(text) as { nodes: unknown[]; next?: string };
          n += doc.nodes.length;
          next = doc.next ? new URL(doc.next).pathname + new URL(doc.next).search : undefined;
        }
        return { ms: performance.now() - t0, bytes, n };
      });
      const snapshotBytes = (await (await fetch(`${apiUrl}/console/api/fleet`)).text()).length;
      // Polling alternative for the storm comparison: the smallest useful list (uuid + power), every 2 s.
      let pollBytes = 0;
      for (let next: string | undefined = `${apiUrl}/v1/nodes?limit=1000&fields=uuid,power_state,provision_state,maintenance`; next; ) {
        const text = await (await fetch(next)).text();
        pollBytes += text.length;
        next = (JSON.parse(text) as { next?: string }).next;
      }

      // The storm.
      const before = await page.evaluate(() => {
        const s = window.__console;
        return { events: s.events, rows: s.rows, lags: s.lags.length, apply: s.applyMs.length, bytes: s.bytes(), paints: window.__map.paintTimes.length };
      });
      const c0 = procSample(conductor.child.pid!);
      const t0 = Date.now();
      // A rack row powering on over ~4 s: ten waves of 100, so several sweeps (every 1 s) carry it.
      for (let w = 0; w < 10; w++) {
        const wave = [...Array(REDFISH / 10).keys()].map((k) => w * (REDFISH / 10) + k);
        await forEachLimit(wave, 50, async (i) => void (await fetch(`${simAdmin}/bmcs/${i}/faults`, { method: 'POST', body: JSON.stringify({ power: 'on' }) })).text());
        await sleep(400);
      }
      const flipped = Date.now();
      await page.getByTestId('dimension').selectOption('power');
      const onBefore = rows.filter((r) => r.power_state === 'power on').length;
      await page.waitForFunction((n) => Number(document.querySelector('[data-testid=legend] li[data-value="power on"]')?.getAttribute('data-count') ?? 0) >= n, onBefore + REDFISH, { timeout: 60_000 });
      const done = Date.now();
      await sleep(500);
      const after = await page.evaluate((b) => {
        const s = window.__console;
        const m = window.__map;
        return { events: s.events - b.events, rows: s.rows - b.rows, lags: s.lags.slice(b.lags) as number[], apply: s.applyMs.slice(b.apply) as number[], bytes: s.bytes() - b.bytes, paints: m.paintTimes.slice(b.paints) as number[] };
      }, before);
      const c1 = procSample(conductor.child.pid!);
      const stormS = (done - t0) / 1000;
      const perUpdate = after.apply.map((a, i) => a + (after.paints[i] ?? 0));

      const first = pct(renders, 0.5);
      const result = {
        nodes: TOTAL,
        first_render_ms_10k: round(first),
        first_render_ms_runs: renders.map((x) => round(x)),
        snapshot_fetch_ms: round(pct(snapshotMs, 0.5)),
        snapshot_bytes: snapshotBytes,
        baseline_list_detail_ms: round(listing.ms),
        baseline_list_detail_bytes: listing.bytes,
        first_render_vs_list_detail: round(first / listing.ms, 2),
        storm_nodes: REDFISH,
        storm_flip_s: round((flipped - t0) / 1000, 2),
        storm_seen_s: round(stormS, 2),
        event_lag_ms_p50: round(pct(after.lags, 0.5)),
        event_lag_ms_p95: round(pct(after.lags, 0.95)),
        event_lag_ms_max: round(Math.max(0, ...after.lags)),
        stream_batches: after.events,
        nodes_delivered: after.rows,
        nodes_per_s_delivered: round(after.rows / stormS),
        stream_bytes_per_s: Math.round(after.bytes / stormS),
        polling_bytes_per_s: Math.round(pollBytes / 2),
        stream_vs_polling_bytes: round(after.bytes / stormS / (pollBytes / 2), 3),
        update_cost_ms_p50: round(pct(perUpdate, 0.5), 2),
        update_cost_ms_p95: round(pct(perUpdate, 0.95), 2),
        update_cost_us_per_node: round((perUpdate.reduce((a, b) => a + b, 0) * 1000) / Math.max(1, after.rows), 1),
        conductor_cpu_s_during_storm: round(c1.cpuS - c0.cpuS, 2),
        conductor_rss_mib: round(c1.rssMiB),
        targets: { first_render_ms_10k: '< 1000', event_lag_ms_p95: '< 500' },
      };
      printTable('console: 10,000 nodes in chromium', [
        { measure: 'first render (median)', value: `${result.first_render_ms_10k} ms`, compare: `list /v1/nodes/detail alone: ${result.baseline_list_detail_ms} ms (${result.first_render_vs_list_detail}×)` },
        { measure: 'snapshot', value: `${(snapshotBytes / 1024).toFixed(0)} KiB in ${result.snapshot_fetch_ms} ms`, compare: `detail listing: ${(listing.bytes / 1024).toFixed(0)} KiB` },
        { measure: 'storm: event lag p50/p95/max', value: `${result.event_lag_ms_p50} / ${result.event_lag_ms_p95} / ${result.event_lag_ms_max} ms`, compare: 'target p95 < 500' },
        { measure: 'storm: delivered', value: `${after.rows} nodes in ${after.events} batches, ${result.nodes_per_s_delivered}/s`, compare: `seen ${result.storm_seen_s} s after the first flip` },
        { measure: 'storm: bytes/s to the client', value: `${result.stream_bytes_per_s}`, compare: `polling every 2 s: ${result.polling_bytes_per_s} (${result.stream_vs_polling_bytes}×)` },
        { measure: 'per update in the page p50/p95', value: `${result.update_cost_ms_p50} / ${result.update_cost_ms_p95} ms`, compare: `${result.update_cost_us_per_node} µs per node` },
        { measure: 'conductor', value: `${result.conductor_cpu_s_during_storm} s CPU in the storm`, compare: `RSS ${result.conductor_rss_mib} MiB` },
      ]);
      if (process.env.CONSOLE_SCREENSHOT) {
        await page.getByTestId('dimension').selectOption('provision');
        await sleep(300);
        await page.screenshot({ path: process.env.CONSOLE_SCREENSHOT });
      }
      console.log(`results: ${writeResults('console', result)}`);
    } finally {
      await browser.close();
    }
  } finally {
    for (const c of children) c.kill('SIGTERM');
    await sleep(300);
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
