/**
 * Every simulator fault provoked for real over HTTPS against a separate simulator process, each
 * checked against the simulator's own counters.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { connect as tlsConnect } from 'node:tls';
import { admin, login, rf, startSim, type SimProc } from './helpers.js';
import { BIN } from '../helpers.js';

const run = promisify(execFile);

// Small, fast, deterministic BMCs: every fault below is injected explicitly.
const BASE = {
  latency_ms: { get: [0, 0], login: [0, 0], action: [0, 0] },
  max_sessions: [2, 2],
  session_timeout_s: [2, 2],
  max_concurrent: [1, 1],
  overload: 'queue',
  queue_limit: 8,
  power_delay_ms: [200, 200],
  firmware_update_ms: [800, 800],
  black_hole_fraction: 0,
  slow_fraction: 0,
  flapping_fraction: 0,
  storm_fraction: 0,
  health_changes_per_hour: 0,
};

describe('simulated BMC faults', () => {
  let sim: SimProc;
  const bmc = (i: number) => sim.manifest.bmcs[i]!;
  const counters = async (i: number) => (await admin(sim, 'GET', `/bmcs/${i}`)).json.counters as Record<string, number>;

  beforeAll(async () => {
    sim = await startSim(['--bmcs', '12', '--profile', 'ideal', '--profile-override', JSON.stringify(BASE)]);
  });
  afterAll(async () => sim?.stop());

  it('session cap: logins beyond the cap get 503 with the iDRAC-style message', async () => {
    const b = bmc(0);
    const a = await login(b.address, b.username, b.password);
    const c = await login(b.address, b.username, b.password);
    const refused = await login(b.address, b.username, b.password);
    expect([a.status, c.status]).toEqual([201, 201]);
    expect(refused.status).toBe(503);
    expect(JSON.stringify(refused.json)).toMatch(/maximum number of user sessions/);
    expect(JSON.stringify(refused.json)).toMatch(/SessionLimitExceeded/);
    // Logging out frees a slot.
    const loc = a.headers.location as string;
    expect((await rf(b.address, 'DELETE', loc, { token: a.token })).status).toBe(204);
    expect((await login(b.address, b.username, b.password)).status).toBe(201);
    const k = await counters(0);
    expect(k).toMatchObject({ sessions_created: 3, sessions_refused_cap: 1, sessions_deleted: 1, sessions_live: 2 });
  });

  it('session expiry: an idle session gets 401 afterwards; admin expiry is immediate', async () => {
    const b = bmc(1);
    const s = await login(b.address, b.username, b.password);
    expect((await rf(b.address, 'GET', '/redfish/v1/Systems', { token: s.token })).status).toBe(200);
    await new Promise((r) => setTimeout(r, 2300));
    const expired = await rf(b.address, 'GET', '/redfish/v1/Systems', { token: s.token });
    expect(expired.status).toBe(401);
    expect(JSON.stringify(expired.json)).toMatch(/NoValidSession/);
    const s2 = await login(b.address, b.username, b.password);
    expect((await admin(sim, 'POST', '/bmcs/1/faults', { expire_sessions: true })).json.sessions_expired).toBe(1);
    expect((await rf(b.address, 'GET', '/redfish/v1/Systems', { token: s2.token })).status).toBe(401);
    const k = await counters(1);
    expect(k.sessions_expired).toBe(2);
    expect(k.served_401).toBe(2);
  });

  it('auth: no credentials or a wrong password → 401; Basic auth works; the service root is public', async () => {
    const b = bmc(2);
    expect((await rf(b.address, 'GET', '/redfish/v1')).status).toBe(200);
    expect((await rf(b.address, 'GET', '/redfish/v1/Systems')).status).toBe(401);
    expect((await login(b.address, b.username, 'wrong')).status).toBe(401);
    expect((await rf(b.address, 'GET', '/redfish/v1/Systems', { basic: [b.username, 'wrong'] })).status).toBe(401);
    expect((await rf(b.address, 'GET', '/redfish/v1/Systems', { basic: [b.username, b.password] })).status).toBe(200);
  });

  it('black hole: the request is accepted and never answered; counted', async () => {
    const b = bmc(3);
    expect((await admin(sim, 'POST', '/bmcs/3/faults', { black_hole: true })).status).toBe(200);
    const t0 = Date.now();
    await expect(rf(b.address, 'GET', '/redfish/v1', { timeoutMs: 800 })).rejects.toThrow(/timeout/i);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(700);
    expect((await counters(3)).black_holed).toBe(1);
    await admin(sim, 'POST', '/bmcs/3/faults', { black_hole: false });
    expect((await rf(b.address, 'GET', '/redfish/v1')).status).toBe(200);
  });

  it('down: connections are reset', async () => {
    const b = bmc(4);
    await admin(sim, 'POST', '/bmcs/4/faults', { down: true });
    await expect(rf(b.address, 'GET', '/redfish/v1', { timeoutMs: 3000 })).rejects.toThrow(/socket|closed|reset|other side/i);
    expect((await counters(4)).refused_down).toBeGreaterThanOrEqual(1);
    await admin(sim, 'POST', '/bmcs/4/faults', { down: false });
    expect((await rf(b.address, 'GET', '/redfish/v1')).status).toBe(200);
  });

  it('5xx storm: every request fails while the storm lasts', async () => {
    const b = bmc(5);
    await admin(sim, 'POST', '/bmcs/5/faults', { storm: { error_rate: 1, duration_s: 30 } });
    const codes = [];
    for (let i = 0; i < 5; i++) codes.push((await rf(b.address, 'GET', '/redfish/v1/Systems', { basic: [b.username, b.password] })).status);
    expect(codes.every((c) => c === 500 || c === 503)).toBe(true);
    expect((await counters(5)).served_5xx_storm).toBe(5);
    await admin(sim, 'POST', '/bmcs/5/faults', { storm: { error_rate: 0, duration_s: 0 } });
    expect((await rf(b.address, 'GET', '/redfish/v1/Systems', { basic: [b.username, b.password] })).status).toBe(200);
  });

  it('concurrency limit: requests beyond max_concurrent queue (peak in flight stays 1)', async () => {
    const b = bmc(6);
    await admin(sim, 'POST', '/bmcs/6/faults', { slow_factor: 1 });
    const t = (await login(b.address, b.username, b.password)).token;
    await admin(sim, 'POST', '/reset-counters');
    await Promise.all(Array.from({ length: 4 }, () => rf(b.address, 'GET', '/redfish/v1/Systems', { token: t })));
    const k = await counters(6);
    expect(k.peak_inflight).toBe(1);
    expect(k.served_2xx).toBe(4);
  });

  it('ETag / If-None-Match → 304; $select trims the document', async () => {
    const b = bmc(7);
    const auth = { basic: [b.username, b.password] as [string, string] };
    const first = await rf(b.address, 'GET', `/redfish/v1/Systems/${b.system_id}`, auth);
    const etag = first.headers.etag as string;
    expect(etag).toMatch(/^W\/"/);
    const again = await rf(b.address, 'GET', `/redfish/v1/Systems/${b.system_id}`, { ...auth, headers: { 'if-none-match': etag } });
    expect(again.status).toBe(304);
    const sel = await rf(b.address, 'GET', `/redfish/v1/Systems/${b.system_id}?$select=PowerState,Status`, auth);
    expect(Object.keys(sel.json!).filter((k) => !k.startsWith('@odata')).sort()).toEqual(['PowerState', 'Status']);
    expect((await counters(7)).served_304).toBe(1);
  });

  it('power actions land after the configured delay, refuse no-ops with 409, and stream SSE events with Last-Event-ID resume', async () => {
    const b = bmc(8);
    const auth = { basic: [b.username, b.password] as [string, string] };
    const reset = (t: string) => rf(b.address, 'POST', `/redfish/v1/Systems/${b.system_id}/Actions/ComputerSystem.Reset`, { ...auth, body: { ResetType: t } });
    const events: Array<{ id: number; data: any }> = [];
    const url = new URL(b.address);
    const sock = tlsConnect({ host: url.hostname, port: Number(url.port), rejectUnauthorized: false });
    await new Promise((r) => sock.once('secureConnect', r));
    sock.write(`GET /redfish/v1/EventService/SSE HTTP/1.1\r\nHost: x\r\nAuthorization: Basic ${Buffer.from(`${b.username}:${b.password}`).toString('base64')}\r\n\r\n`);
    let buf = '';
    sock.on('data', (d) => {
      buf += d.toString();
      for (const m of buf.matchAll(/id: (\d+)\ndata: (.*)\n\n/g)) if (!events.some((e) => e.id === Number(m[1]))) events.push({ id: Number(m[1]), data: JSON.parse(m[2]!) });
    });
    expect((await reset('On')).status).toBe(204);
    const mid = await rf(b.address, 'GET', `/redfish/v1/Systems/${b.system_id}`, auth);
    expect(mid.json!.PowerState).toBe('PoweringOn');
    await new Promise((r) => setTimeout(r, 400));
    expect((await rf(b.address, 'GET', `/redfish/v1/Systems/${b.system_id}`, auth)).json!.PowerState).toBe('On');
    expect((await reset('On')).status).toBe(409);
    expect((await reset('Explode')).status).toBe(400);
    await admin(sim, 'POST', '/bmcs/8/faults', { health: 'Critical' });
    await new Promise((r) => setTimeout(r, 200));
    sock.destroy();
    const kinds = events.map((e) => e.data.Events[0].Oem.Ironfleet);
    expect(kinds).toEqual([{ PowerState: 'PoweringOn' }, { PowerState: 'On' }, { Health: 'Critical' }]);
    // Resume after the first event: the rest is replayed.
    const sock2 = tlsConnect({ host: url.hostname, port: Number(url.port), rejectUnauthorized: false });
    await new Promise((r) => sock2.once('secureConnect', r));
    sock2.write(`GET /redfish/v1/EventService/SSE HTTP/1.1\r\nHost: x\r\nLast-Event-ID: ${events[0]!.id}\r\nAuthorization: Basic ${Buffer.from(`${b.username}:${b.password}`).toString('base64')}\r\n\r\n`);
    let buf2 = '';
    await new Promise<void>((resolve) => {
      sock2.on('data', (d) => {
        buf2 += d.toString();
        if ([...buf2.matchAll(/id: (\d+)/g)].length >= 2) resolve();
      });
    });
    sock2.destroy();
    expect([...buf2.matchAll(/id: (\d+)/g)].map((m) => Number(m[1]))).toEqual([events[1]!.id, events[2]!.id]);
  });

  it('SimpleUpdate creates a task that progresses, completes and changes the firmware version', async () => {
    const b = bmc(9);
    const auth = { basic: [b.username, b.password] as [string, string] };
    const r = await rf(b.address, 'POST', '/redfish/v1/UpdateService/Actions/UpdateService.SimpleUpdate', { ...auth, body: { ImageURI: 'http://images.example/bios-2.4.1.bin' } });
    expect(r.status).toBe(202);
    const loc = r.headers.location as string;
    expect(loc).toMatch(/TaskService\/Tasks\//);
    const states = new Set<string>();
    for (let i = 0; i < 40; i++) {
      const t = await rf(b.address, 'GET', loc, auth);
      states.add(t.json!.TaskState as string);
      if (t.json!.TaskState === 'Completed') break;
      await new Promise((res) => setTimeout(res, 50));
    }
    expect(states.has('Completed')).toBe(true);
    expect(states.has('Running') || states.has('New')).toBe(true);
    expect((await rf(b.address, 'GET', `/redfish/v1/Systems/${b.system_id}`, auth)).json!.BiosVersion).toBe('2.4.1');
    expect((await rf(b.address, 'POST', '/redfish/v1/UpdateService/Actions/UpdateService.SimpleUpdate', { ...auth, body: { ImageURI: 'ftp://x' } })).status).toBe(400);
  });

  it('fleet stats aggregate every worker', async () => {
    const s = (await admin(sim, 'GET', '/stats')).json;
    expect(s.fleet.bmcs).toBe(12);
    expect(s.workers).toBeGreaterThanOrEqual(2);
    expect(s.per_worker).toHaveLength(s.workers);
    // Counters were reset before the ETag test; its single 304 shows up in the fleet total.
    expect(s.fleet.served_304).toBe(1);
    expect(s.fleet.served_5xx_storm).toBe(0);
    expect(s.fleet.tasks_created).toBe(1);
  });

  it('bad admin input and bad CLI flags get a clear error naming the field', async () => {
    const bad = await admin(sim, 'POST', '/bmcs/0/faults', { health: 'Purple' });
    expect(bad.status).toBe(400);
    expect(bad.json.error).toMatch(/health/);
    expect((await admin(sim, 'POST', '/bmcs/0/faults', { colour: 'red' })).json.error).toMatch(/colour/);
    expect((await admin(sim, 'POST', '/bmcs/0/faults', '{nope')).json.error).toMatch(/malformed JSON/);
    const missing = await admin(sim, 'GET', '/bmcs/99');
    expect(missing.status).toBe(400);
    expect(missing.json.error).toMatch(/index: BMC 99 does not exist/);
    const cli = await run(process.execPath, [BIN, 'sim', '--bmcs', '0']).catch((e: { stderr: string; code: number }) => e);
    expect((cli as { stderr: string }).stderr).toMatch(/bmcs must be an integer in \[1, 20000\]/);
    const prof = await run(process.execPath, [BIN, 'sim', '--bmcs', '1', '--profile', 'chaotic', '--admin-port', '0']).catch((e: { stderr: string }) => e);
    expect((prof as { stderr: string }).stderr).toMatch(/unknown profile "chaotic"/);
    const ov = await run(process.execPath, [BIN, 'sim', '--bmcs', '1', '--profile-override', '{"max_sessions":[5,1]}', '--admin-port', '0']).catch((e: { stderr: string }) => e);
    expect((ov as { stderr: string }).stderr).toMatch(/max_sessions/);
  });
});

describe('hostile profile, concurrency over the limit', () => {
  let sim: SimProc;
  beforeAll(async () => {
    sim = await startSim(['--bmcs', '2', '--profile', 'hostile', '--profile-override', JSON.stringify({ black_hole_fraction: 0, flapping_fraction: 0, storm_fraction: 0, slow_fraction: 0, latency_ms: { get: [300, 300], login: [10, 10], action: [10, 10] }, max_concurrent: [1, 1], basic_auth: true })]);
  });
  afterAll(async () => sim?.stop());

  it('answers 503 (not a queue) beyond max_concurrent and counts it', async () => {
    const b = sim.manifest.bmcs[0]!;
    const codes = await Promise.all(Array.from({ length: 3 }, () => rf(b.address, 'GET', '/redfish/v1/Systems', { basic: [b.username, b.password] }).then((r) => r.status)));
    expect(codes.sort()).toEqual([200, 503, 503]);
    const k = (await admin(sim, 'GET', '/bmcs/0')).json.counters;
    expect(k.served_503).toBe(2);
    expect(k.peak_inflight).toBe(1);
  });
});

describe('standing faults drawn from the profile: slow, flapping, random health', () => {
  let sim: SimProc;
  beforeAll(async () => {
    sim = await startSim([
      '--bmcs', '2', '--profile', 'ideal', '--profile-override',
      JSON.stringify({ latency_ms: { get: [100, 100], login: [0, 0], action: [0, 0] }, slow_fraction: 1, slow_factor: 4, flapping_fraction: 1, flap: { period_s: 1, down_s: 0.5 }, health_changes_per_hour: 36_000 }),
    ]);
  });
  afterAll(async () => sim?.stop());

  it('slow BMCs multiply latency; flapping BMCs refuse connections part of the time; health changes by itself', async () => {
    const b = sim.manifest.bmcs[0]!;
    const detail = (await admin(sim, 'GET', '/bmcs/0')).json;
    expect(detail.traits).toMatchObject({ slowFactor: 4, flapping: true });
    let ok = 0;
    let refused = 0;
    let slowest = 0;
    const t0 = Date.now();
    while (Date.now() - t0 < 4000) {
      const s = Date.now();
      try {
        const r = await rf(b.address, 'GET', '/redfish/v1', { timeoutMs: 3000 });
        if (r.status === 200) {
          ok++;
          slowest = Math.max(slowest, Date.now() - s);
        }
      } catch {
        refused++;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    expect(ok).toBeGreaterThan(0);
    expect(refused).toBeGreaterThan(0);
    expect(slowest).toBeGreaterThanOrEqual(390);
    const k = (await admin(sim, 'GET', '/bmcs/0')).json.counters;
    expect(k.refused_down).toBeGreaterThan(0);
    // ~10 health changes per second were scheduled: within a second the machine left OK at least once.
    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) {
      seen.add((await admin(sim, 'GET', '/bmcs/1')).json.machine.health);
      await new Promise((r) => setTimeout(r, 50));
    }
    expect([...seen].some((h) => h !== 'OK')).toBe(true);
  });
});
