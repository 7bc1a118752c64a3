/**
 * The web console in a real browser (Debian's chromium driven by playwright-core) against a real
 * conductor process (HTTP basic auth on) and the simulator with machines that boot ramdisk agents:
 * the map shows the fleet, a power change made behind the conductor's back (the simulator's fault
 * API) reaches the page within 2 s, the drawer shows inventory and history, a deploy started in the
 * browser shows a moving progress bar and lands, actions (single and bulk) change the nodes as the
 * API sees them, no credentials means 401, and the BMC password never reaches the page.
 * Screenshots go to .tmp/screenshots (or CONSOLE_SCREENSHOT_DIR: scripts/console-screenshots.mjs).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { ROOT, serveSlowly, startConductorProcess, tmpDir, waitFor, type ConductorProc } from '../helpers.js';
import { admin, startSim, type SimProc } from '../sim/helpers.js';

const MiB = 1024 * 1024;
const USER = 'operator';
const PASS = 'console-test-password';
const SHOTS = process.env.CONSOLE_SCREENSHOT_DIR ?? path.join(ROOT, '.tmp', 'screenshots');

type N = { uuid: string; name: string; provision_state: string; power_state: string | null; maintenance: boolean; last_error: string | null };

describe('the web console in chromium', () => {
  const dir = tmpDir('ironfleet-console-');
  const image = randomBytes(48 * MiB);
  const checksum = createHash('sha256').update(image).digest('hex');
  let served: Awaited<ReturnType<typeof serveSlowly>> | undefined;
  let imageUrl = '';
  let conductor: ConductorProc;
  let sim: SimProc;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  const nodes: N[] = [];
  /** Every response body the page received (the live stream is read separately). */
  const bodies: string[] = [];

  const call = async <T = unknown>(method: string, p: string, body?: unknown): Promise<T> => {
    const res = await fetch(`${conductor.apiUrl}${p}`, {
      method,
      headers: { authorization: `Basic ${Buffer.from(`${USER}:${PASS}`).toString('base64')}`, 'x-openstack-ironic-api-version': 'latest', ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${p}: ${res.status} ${text}`);
    return (text ? JSON.parse(text) : undefined) as T;
  };
  const node = (i: number) => call<N>('GET', `/v1/nodes/${nodes[i]!.uuid}`);
  const waitState = (i: number, state: string, ms = 60_000) =>
    waitFor(async () => {
      const n = await node(i);
      if (/failed$/.test(n.provision_state)) throw new Error(`node ${i}: ${n.provision_state}: ${n.last_error}`);
      return n.provision_state === state ? n : undefined;
    }, ms, `node ${i} ${state}`);
  const legendCount = (value: string) => page.locator(`[data-testid=legend] li[data-value="${value}"]`).getAttribute('data-count').then((v) => Number(v ?? 0), () => 0);
  const nodeId = (i: number) => page.evaluate((name) => {
    const m = (window as any).__map;
    for (const [id] of m.model.rows) if (m.model.get(id, 'name') === name) return id as number;
    return -1;
  }, nodes[i]!.name);
  const clickNode = async (i: number, modifiers: Array<'Shift'> = []) => {
    const id = await nodeId(i);
    const c = await page.evaluate((x) => (window as any).__map.centreOf(x), id);
    await page.getByTestId('map').click({ position: c, modifiers });
  };
  const shot = async (name: string) => {
    mkdirSync(SHOTS, { recursive: true });
    writeFileSync(path.join(SHOTS, name), await page.screenshot({ fullPage: false }));
  };

  beforeAll(async () => {
    // The image trickles out (≈ 12 MiB/s) so the deploy's progress bar has time to move.
    served = await serveSlowly(image, 80);
    imageUrl = served.url;
    const cfg = path.join(dir, 'conductor.yaml');
    writeFileSync(cfg, `api:\n  auth:\n    strategy: http_basic\n    users:\n      ${USER}: ${PASS}\n`);
    conductor = await startConductorProcess({
      dir,
      config: cfg,
      env: {
        IRONFLEET_POWER_SYNC__INTERVAL_S: '0.5',
        IRONFLEET_POWER_SYNC__FORCE_POWER_STATE: 'false',
        IRONFLEET_SENSORS__INTERVAL_S: '2',
        IRONFLEET_AGENT__PROGRESS_INTERVAL_MS: '200',
        IRONFLEET_CONDUCTOR__ERASE_DEVICES_PRIORITY: '0',
      },
    });
    sim = await startSim(['--bmcs', '4', '--profile', 'ideal', '--http', '--agents', conductor.agentAddr, '--boot-delay-ms', '300', '--disk-dir', path.join(dir, 'disks')]);
    for (const b of sim.manifest.bmcs) {
      const n = await call<N>('POST', '/v1/nodes', { driver: 'redfish', name: b.name, driver_info: { redfish_address: b.address, redfish_username: b.username, redfish_password: b.password, redfish_system_id: b.system_id } });
      for (const mac of b.macs) await call('POST', '/v1/ports', { address: mac, node_uuid: n.uuid });
      nodes.push(n);
    }
    for (let i = 0; i < nodes.length; i++) await call('PUT', `/v1/nodes/${nodes[i]!.uuid}/states/provision`, { target: 'manage' });
    for (let i = 0; i < nodes.length; i++) await waitState(i, 'manageable');
    // Node 0 is cleaned by its agent (which also sends the inventory) and waits, available.
    await call('PUT', `/v1/nodes/${nodes[0]!.uuid}/states/provision`, { target: 'provide' });
    await waitState(0, 'available');
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
    context = await browser.newContext({ httpCredentials: { username: USER, password: PASS }, viewport: { width: 1400, height: 900 } });
    page = await context.newPage();
    page.on('response', (r) => {
      if (!r.url().includes('/console/api/events')) void r.text().then((t) => bodies.push(t), () => undefined);
    });
    await page.goto(`${conductor.apiUrl}/console/`);
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await conductor?.kill('SIGTERM');
    await sim?.stop();
    await served?.close();
  });

  it('shows every node on the map, with legend counts that match the API', async () => {
    await page.getByTestId('node-count').filter({ hasText: '4 nodes' }).waitFor();
    await page.getByTestId('link').filter({ hasText: 'live' }).waitFor();
    expect(await page.evaluate(() => (window as any).__map.cellCount)).toBe(4);
    const states = (await Promise.all(nodes.map((_, i) => node(i)))).map((n) => n.provision_state);
    expect(await legendCount('manageable')).toBe(states.filter((s) => s === 'manageable').length);
    expect(await legendCount('available')).toBe(1);
    // Clicking a legend entry filters: only the available node stays at full strength.
    await page.locator('[data-testid=legend] li[data-value="available"]').click();
    expect(await page.evaluate(() => [...(window as any).__map.model.rows.keys()].filter((id: number) => (window as any).__map.model.visible(id)).length)).toBe(1);
    await page.locator('[data-testid=legend] li[data-value="available"]').click();
    await shot('console-map-small.png');
  });

  it('a power change made at the BMC (out of band) reaches the page within 2 s', async () => {
    await page.getByTestId('dimension').selectOption('power');
    await waitFor(async () => (await legendCount('power off')) === 3 || undefined, 10_000, 'three nodes off');
    const before = await legendCount('power on');
    const t0 = Date.now();
    expect((await admin(sim, 'POST', '/bmcs/3/faults', { power: 'on' })).status).toBe(200);
    await page.waitForFunction((n) => Number(document.querySelector('[data-testid=legend] li[data-value="power on"]')?.getAttribute('data-count') ?? 0) === n, before + 1, { timeout: 5_000 });
    const ms = Date.now() - t0;
    expect(ms).toBeLessThan(2_000);
    expect((await node(3)).power_state).toBe('power on');
    await page.getByTestId('dimension').selectOption('provision');
  });

  it('search by MAC finds the node (through the ports API); Enter opens it', async () => {
    await page.getByTestId('search').fill(sim.manifest.bmcs[2]!.macs[1]!.toUpperCase());
    await waitFor(() => page.evaluate(() => (window as any).__map.model.matches?.size === 1) || undefined, 5_000, 'one match');
    await page.getByTestId('search').press('Enter');
    await page.getByTestId('drawer').locator('h2', { hasText: nodes[2]!.name }).waitFor();
    await page.getByTestId('drawer').getByRole('button', { name: 'Close' }).click();
    await page.getByTestId('search').fill('');
  });

  it('the drawer shows inventory and history', async () => {
    await clickNode(0);
    const drawer = page.getByTestId('drawer');
    await drawer.getByTestId('inventory').waitFor();
    const inv = await drawer.getByTestId('inventory').innerText();
    expect(inv).toMatch(/CPU: \d+ ×/);
    expect(inv).toMatch(/RAM: \d+ GiB/);
    expect(inv).toContain(sim.manifest.bmcs[0]!.macs[0]!);
    expect(await drawer.getByTestId('history').innerText()).toMatch(/clean/i);
    expect(await drawer.getByTestId('drawer-provision').innerText()).toBe('available');
  });

  it('a deploy started in the browser shows a moving progress bar and lands', async () => {
    const drawer = page.getByTestId('drawer');
    await drawer.locator('button[data-action=deploy]').click();
    const dialog = page.getByTestId('confirm');
    await dialog.locator('input[name=image_source]').fill(imageUrl);
    await dialog.locator('input[name=image_checksum]').fill(checksum);
    await dialog.getByTestId('confirm-go').click();
    await dialog.getByTestId('outcomes').filter({ hasText: 'accepted' }).waitFor();
    await dialog.getByRole('button', { name: 'Close' }).click();
    const seen = new Set<number>();
    await waitFor(async () => {
      const v = await page.locator('[data-testid=progress] progress').getAttribute('data-percent', { timeout: 500 }).catch(() => null);
      if (v !== null && Number(v) > 0 && Number(v) < 100) seen.add(Math.round(Number(v)));
      if (seen.size === 2) await shot('console-drawer-deploy.png');
      return seen.size >= 3 || undefined;
    }, 60_000, 'progress bar moving');
    await waitState(0, 'active', 90_000);
    await page.getByTestId('drawer-provision').filter({ hasText: /^active$/ }).waitFor({ timeout: 10_000 });
  }, 120_000);

  it('actions change the nodes: power off from the drawer, maintenance on a selection (per-node outcome)', async () => {
    await page.getByRole('button', { name: 'Close' }).click();
    await clickNode(3);
    await page.getByTestId('drawer').locator('button[data-action=power_off]').click();
    await page.getByTestId('confirm').getByTestId('confirm-go').click();
    await page.getByTestId('outcomes').filter({ hasText: 'accepted' }).waitFor();
    await page.getByTestId('confirm').getByRole('button', { name: 'Close' }).click();
    await waitFor(async () => (await node(3)).power_state === 'power off' || undefined, 30_000, 'node 3 off');
    await page.getByTestId('drawer-power').filter({ hasText: 'power off' }).waitFor({ timeout: 5_000 });
    await page.getByTestId('drawer').getByRole('button', { name: 'Close' }).click();

    await clickNode(1, ['Shift']);
    await clickNode(2, ['Shift']);
    await page.getByTestId('selected').filter({ hasText: '2 selected' }).waitFor();
    await page.getByTestId('bulk-action').selectOption('maintenance_set');
    await page.getByTestId('bulk-go').click();
    await page.getByTestId('confirm').locator('input[name=reason]').fill('rack 7 recabling');
    await page.getByTestId('confirm-go').click();
    await waitFor(async () => (await page.getByTestId('outcomes').locator('li.ok').count()) === 2 || undefined, 10_000, 'two outcomes');
    for (const i of [1, 2]) {
      const n = await call<N & { maintenance_reason: string }>('GET', `/v1/nodes/${nodes[i]!.uuid}`);
      expect(n.maintenance).toBe(true);
      expect(n.maintenance_reason).toBe('rack 7 recabling');
    }
    await page.getByTestId('confirm').getByRole('button', { name: 'Close' }).click();
    await page.getByTestId('dimension').selectOption('maintenance');
    await waitFor(async () => (await legendCount('in maintenance')) === 2 || undefined, 5_000, 'legend shows 2 in maintenance');
  });

  it('without credentials: 401, and no fleet data', async () => {
    const anon = await browser.newContext();
    const p = await anon.newPage();
    // (A navigation would show the browser's own sign-in prompt; the request is what it answers.)
    const shell = await p.request.get(`${conductor.apiUrl}/console/`);
    expect(shell.status()).toBe(401);
    expect(shell.headers()['www-authenticate']).toMatch(/^Basic/);
    const api = await p.request.get(`${conductor.apiUrl}/console/api/fleet`);
    expect(api.status()).toBe(401);
    expect(await api.text()).not.toContain(nodes[0]!.uuid);
    const events = await p.request.get(`${conductor.apiUrl}/console/api/events`);
    expect(events.status()).toBe(401);
    await anon.close();
  });

  it('the BMC password never reaches the page: not in the DOM, not in any response, not on the live stream', async () => {
    // The live stream, read as the browser reads it, while something changes.
    const ctrl = new AbortController();
    const res = await fetch(`${conductor.apiUrl}/console/api/events?last_event_id=0-0`, { headers: { authorization: `Basic ${Buffer.from(`${USER}:${PASS}`).toString('base64')}` }, signal: ctrl.signal });
    expect(res.status).toBe(200);
    // An id from another epoch: the stream says reset and ends.
    expect(await res.text()).toContain('event: reset');
    const fleet = await call<{ id: string }>('GET', '/console/api/fleet');
    const live = await fetch(`${conductor.apiUrl}/console/api/events`, { headers: { authorization: `Basic ${Buffer.from(`${USER}:${PASS}`).toString('base64')}`, 'last-event-id': fleet.id }, signal: ctrl.signal });
    const reader = live.body!.getReader();
    let stream = '';
    const flip = (await node(3)).power_state === 'power on' ? 'off' : 'on';
    await admin(sim, 'POST', '/bmcs/3/faults', { power: flip });
    // Generous: the sweep that sees the flip runs every second, but CI shares two cores.
    const until = Date.now() + 8_000;
    // One read in flight at a time: a read abandoned to a timeout still takes the next chunk, and
    // racing a fresh read() each turn dropped whatever those abandoned reads got (the nodes event
    // among them, now and then).
    const decoder = new TextDecoder();
    let pending = reader.read();
    while (Date.now() < until && !/event: nodes/.test(stream)) {
      const r = await Promise.race([pending, new Promise<null>((res) => setTimeout(() => res(null), 500))]);
      if (r === null) continue;
      if (r.done) break;
      stream += decoder.decode(r.value, { stream: true });
      pending = reader.read();
    }
    pending.catch(() => undefined); // the abort below ends the read still in flight
    ctrl.abort();
    expect(stream).toContain('event: nodes');
    await clickNode(1);
    await page.getByTestId('driver-info').waitFor();
    expect(await page.getByTestId('driver-info').innerText()).toContain('******');
    const dom = await page.content();
    expect(bodies.length).toBeGreaterThan(10);
    for (const { password } of sim.manifest.bmcs) {
      expect(password.length).toBeGreaterThan(4);
      for (const text of [dom, stream, ...bodies]) expect(text).not.toContain(password);
    }
  });
});
