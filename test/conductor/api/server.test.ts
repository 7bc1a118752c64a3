/** The REST API in-process (Fastify inject) over a real SQLite database. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { compileConfig, type ConductorConfigInput } from '../../../conductor/config.js';
import { Conductor } from '../../../conductor/manager.js';
import { buildApi } from '../../../conductor/api/server.js';
import { createLogger } from '../../../shared/logger.js';
import { tmpDir, waitFor } from '../../helpers.js';

async function makeApi(extra: ConductorConfigInput = {}): Promise<{ app: FastifyInstance; conductor: Conductor }> {
  const cfg = compileConfig({ host: 'api-test', database: { url: `sqlite://${path.join(tmpDir(), 'api.db')}` }, conductor: { node_locked_retry_attempts: 0 }, ...extra });
  const conductor = await Conductor.open(cfg, createLogger({ level: 'silent' }));
  const app = await buildApi(conductor, createLogger({ level: 'silent' }));
  return { app, conductor };
}

function errText(body: string): string {
  return JSON.parse(JSON.parse(body).error_message).faultstring;
}

describe('API', () => {
  let app: FastifyInstance;
  let conductor: Conductor;
  beforeAll(async () => ({ app, conductor } = await makeApi()));
  afterAll(async () => {
    await app.close();
    await conductor.stop();
  });

  const json = (method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', url: string, payload?: unknown, headers: Record<string, string> = {}) =>
    app.inject({ method, url, payload: payload === undefined ? undefined : JSON.stringify(payload), headers: { 'content-type': 'application/json', ...headers } });

  const create = async (body: Record<string, unknown>) => {
    const r = await json('POST', '/v1/nodes', body);
    expect(r.statusCode, r.body).toBe(201);
    return r.json();
  };

  it('serves version discovery with microversion headers and rejects unsupported versions with 406', async () => {
    const r = await app.inject({ url: '/' });
    expect(r.statusCode).toBe(200);
    expect(r.json().default_version.min_version).toBe('1.1');
    expect(r.headers['x-openstack-ironic-api-maximum-version']).toBeDefined();
    const v = await app.inject({ url: '/v1/nodes', headers: { 'x-openstack-ironic-api-version': '1.999' } });
    expect(v.statusCode).toBe(406);
    expect(errText(v.body)).toMatch(/supported version range/);
    const latest = await app.inject({ url: '/v1/nodes', headers: { 'x-openstack-ironic-api-version': 'latest' } });
    expect(latest.headers['x-openstack-ironic-api-version']).toBe(r.headers['x-openstack-ironic-api-maximum-version']);
    expect((await app.inject({ url: '/v1/nodes', headers: { 'x-openstack-ironic-api-version': 'one' } })).statusCode).toBe(400);
  });

  it('creates nodes in enroll and masks driver_info secrets in every view', async () => {
    const n = await create({ driver: 'fake-hardware', name: 'api-n1', driver_info: { redfish_password: 'hunter2', redfish_address: 'https://bmc' } });
    expect(n.provision_state).toBe('enroll');
    expect(n.driver_info).toEqual({ redfish_password: '******', redfish_address: 'https://bmc' });
    const shown = await json('GET', '/v1/nodes/api-n1');
    expect(shown.body).not.toContain('hunter2');
    const detail = await json('GET', '/v1/nodes/detail');
    expect(detail.body).not.toContain('hunter2');
    expect(await conductor.store.findNode('api-n1').then((x) => x!.driver_info.redfish_password)).toBe('hunter2');
  });

  it('rejects bad bodies with 400 naming the field, and writes nothing', async () => {
    const before = await conductor.store.countNodes();
    const malformed = await app.inject({ method: 'POST', url: '/v1/nodes', payload: '{"driver": "fake-hardware",', headers: { 'content-type': 'application/json' } });
    expect(malformed.statusCode).toBe(400);
    expect(errText(malformed.body)).toMatch(/Malformed JSON/);
    const unknown = await json('POST', '/v1/nodes', { driver: 'fake-hardware', colour: 'red' });
    expect(unknown.statusCode).toBe(400);
    expect(errText(unknown.body)).toMatch(/Unknown attribute.*colour/);
    const missing = await json('POST', '/v1/nodes', { name: 'x' });
    expect(missing.statusCode).toBe(400);
    expect(errText(missing.body)).toMatch(/driver/);
    const badDriver = await json('POST', '/v1/nodes', { driver: 'no-such-driver' });
    expect(badDriver.statusCode).toBe(400);
    expect(errText(badDriver.body)).toMatch(/no-such-driver.*not enabled/);
    const badName = await json('POST', '/v1/nodes', { driver: 'fake-hardware', name: 'has space' });
    expect(errText(badName.body)).toMatch(/name/);
    expect(await conductor.store.countNodes()).toBe(before);
    const dup = await json('POST', '/v1/nodes', { driver: 'fake-hardware', name: 'api-n1' });
    expect(dup.statusCode).toBe(409);
  });

  it('lists with default fields, ?fields, detail and pagination links', async () => {
    for (let i = 0; i < 3; i++) await create({ driver: 'fake-hardware', name: `page-${i}` });
    const list = (await json('GET', '/v1/nodes')).json();
    expect(Object.keys(list.nodes[0]).sort()).toEqual(['instance_uuid', 'links', 'maintenance', 'name', 'power_state', 'provision_state', 'uuid']);
    const f = (await json('GET', '/v1/nodes?fields=uuid,provision_state')).json();
    expect(Object.keys(f.nodes[0]).sort()).toEqual(['provision_state', 'uuid']);
    expect((await json('GET', '/v1/nodes?fields=nonsense')).statusCode).toBe(400);
    const p1 = (await json('GET', '/v1/nodes?limit=2')).json();
    expect(p1.nodes).toHaveLength(2);
    expect(p1.next).toMatch(/marker=/);
    const next = new URL(p1.next);
    const p2 = (await json('GET', `${next.pathname}${next.search}`)).json();
    expect(p2.nodes[0].uuid).not.toBe(p1.nodes[1].uuid);
    expect((await json('GET', '/v1/nodes?provision_state=bogus')).statusCode).toBe(400);
  });

  it('JSON-patches nested and top-level fields; refuses read-only paths without writing', async () => {
    const n = await create({ driver: 'fake-hardware', name: 'patchme', extra: { a: 1 } });
    const ok = await json('PATCH', `/v1/nodes/${n.uuid}`, [
      { op: 'add', path: '/driver_info/redfish_address', value: 'https://10.1.1.1' },
      { op: 'replace', path: '/name', value: 'patched' },
      { op: 'remove', path: '/extra/a' },
      { op: 'add', path: '/properties/cpu_arch', value: 'x86_64' },
    ]);
    expect(ok.statusCode, ok.body).toBe(200);
    expect(ok.json()).toMatchObject({ name: 'patched', driver_info: { redfish_address: 'https://10.1.1.1' }, extra: {}, properties: { cpu_arch: 'x86_64' } });
    const ro = await json('PATCH', `/v1/nodes/${n.uuid}`, [
      { op: 'replace', path: '/name', value: 'should-not-stick' },
      { op: 'replace', path: '/provision_state', value: 'active' },
    ]);
    expect(ro.statusCode).toBe(400);
    expect(errText(ro.body)).toMatch(/provision_state/);
    const missing = await json('PATCH', `/v1/nodes/${n.uuid}`, [{ op: 'remove', path: '/extra/nope' }]);
    expect(missing.statusCode).toBe(400);
    const badOp = await json('PATCH', `/v1/nodes/${n.uuid}`, [{ op: 'explode', path: '/name' }]);
    expect(badOp.statusCode).toBe(400);
    const after = (await json('GET', `/v1/nodes/${n.uuid}`)).json();
    expect(after.name).toBe('patched');
    expect(after.provision_state).toBe('enroll');
  });

  it('power: 202 then the fake driver settles; bad targets are 400; a locked node is 409', async () => {
    const n = await create({ driver: 'fake-hardware', name: 'pw' });
    expect((await json('PUT', '/v1/nodes/pw/states/power', { target: 'power on' })).statusCode).toBe(202);
    await waitFor(async () => (await json('GET', '/v1/nodes/pw')).json().power_state === 'power on');
    const bad = await json('PUT', '/v1/nodes/pw/states/power', { target: 'power sideways' });
    expect(bad.statusCode).toBe(400);
    expect(errText(bad.body)).toMatch(/target/);
    const node = (await conductor.store.findNode(n.uuid))!;
    expect(await conductor.store.reserveNode(node.id, 'other-conductor')).toBeTruthy();
    const locked = await json('PUT', '/v1/nodes/pw/states/power', { target: 'power off' });
    expect(locked.statusCode).toBe(409);
    expect(errText(locked.body)).toMatch(/locked by host other-conductor/);
    await conductor.store.releaseNode(node.id, 'other-conductor');
    const h = (await json('GET', '/v1/nodes/pw/history?detail=True')).json().history;
    expect(h.some((e: { event: string }) => /power on/.test(e.event))).toBe(true);
  });

  it('provision: manage/provide/deploy/undeploy walk the machine; illegal moves are 400 and change nothing', async () => {
    await create({ driver: 'fake-hardware', name: 'prov' });
    const illegal = await json('PUT', '/v1/nodes/prov/states/provision', { target: 'active' });
    expect(illegal.statusCode).toBe(400);
    expect(errText(illegal.body)).toMatch(/enroll/);
    expect((await json('PUT', '/v1/nodes/prov/states/provision', { target: 'levitate' })).statusCode).toBe(400);
    const state = async () => (await json('GET', '/v1/nodes/prov')).json();
    expect((await state()).provision_state).toBe('enroll');
    for (const [verb, want] of [
      ['manage', 'manageable'],
      ['provide', 'available'],
      ['active', 'active'],
      ['deleted', 'available'],
    ] as const) {
      const r = await json('PUT', '/v1/nodes/prov/states/provision', { target: verb });
      expect(r.statusCode, r.body).toBe(202);
      await waitFor(async () => {
        const s = await state();
        return s.provision_state === want && !s.target_provision_state && !s.reservation;
      }, 10_000, `prov ${verb}`);
    }
    expect((await state()).power_state).toBe('power off');
    const clean = await json('PUT', '/v1/nodes/prov/states/provision', { target: 'clean' });
    expect(clean.statusCode).toBe(400);
  });

  it('delete is refused outside delete-allowed states and allowed in enroll', async () => {
    await create({ driver: 'fake-hardware', name: 'del' });
    await json('PUT', '/v1/nodes/del/states/provision', { target: 'manage' });
    await waitFor(async () => (await json('GET', '/v1/nodes/del')).json().provision_state === 'manageable');
    await json('PUT', '/v1/nodes/del/states/provision', { target: 'provide' });
    await waitFor(async () => (await json('GET', '/v1/nodes/del')).json().provision_state === 'available');
    const refused = await json('DELETE', '/v1/nodes/del');
    expect(refused.statusCode).toBe(400);
    expect(errText(refused.body)).toMatch(/available/);
    await create({ driver: 'fake-hardware', name: 'del2' });
    expect((await json('DELETE', '/v1/nodes/del2')).statusCode).toBe(204);
    expect((await json('GET', '/v1/nodes/del2')).statusCode).toBe(404);
  });

  it('ports: CRUD, MAC validation, duplicates, per-node listing', async () => {
    const n = await create({ driver: 'fake-hardware', name: 'ported' });
    const bad = await json('POST', '/v1/ports', { address: 'not-a-mac', node_uuid: n.uuid });
    expect(bad.statusCode).toBe(400);
    expect(errText(bad.body)).toMatch(/address/);
    const p = await json('POST', '/v1/ports', { address: '52:54:00:AB:CD:EF', node_uuid: n.uuid });
    expect(p.statusCode, p.body).toBe(201);
    expect(p.json().address).toBe('52:54:00:ab:cd:ef');
    expect((await json('POST', '/v1/ports', { address: '52:54:00:ab:cd:ef', node_uuid: n.uuid })).statusCode).toBe(409);
    expect((await json('GET', '/v1/nodes/ported/ports')).json().ports).toHaveLength(1);
    const patched = await json('PATCH', `/v1/ports/${p.json().uuid}`, [{ op: 'replace', path: '/pxe_enabled', value: false }]);
    expect(patched.json().pxe_enabled).toBe(false);
    expect((await json('GET', `/v1/ports?address=52:54:00:ab:cd:ef`)).json().ports).toHaveLength(1);
    expect((await json('DELETE', `/v1/ports/${p.json().uuid}`)).statusCode).toBe(204);
  });

  it('inventory is 404 until an agent sent one; unknown routes are Ironic-shaped 404s; OpenAPI is served', async () => {
    await create({ driver: 'fake-hardware', name: 'noinv' });
    const r = await json('GET', '/v1/nodes/noinv/inventory');
    expect(r.statusCode).toBe(404);
    expect(errText(r.body)).toMatch(/Inventory/);
    expect((await json('GET', '/v1/nothing')).statusCode).toBe(404);
    const spec = (await json('GET', '/v1/openapi.json')).json();
    expect(spec.openapi).toBe('3.1.0');
    expect(spec.paths['/v1/nodes'].post.requestBody.content['application/json'].schema.required).toContain('driver');
    const metrics = await app.inject({ url: '/metrics' });
    expect(metrics.body).toMatch(/ironfleet_api_requests_total/);
  });
});

describe('API auth', () => {
  it('token strategy: 401 without or with a wrong token, 200 with it; discovery stays open', async () => {
    const token = 'tok-0123456789abcdef';
    const { app, conductor } = await makeApi({ api: { auth: { strategy: 'token', tokens: [token] } } });
    expect((await app.inject({ url: '/' })).statusCode).toBe(200);
    expect((await app.inject({ url: '/v1/nodes' })).statusCode).toBe(401);
    expect((await app.inject({ url: '/v1/nodes', headers: { 'x-auth-token': 'wrong-0123456789ab' } })).statusCode).toBe(401);
    expect((await app.inject({ url: '/v1/nodes', headers: { 'x-auth-token': token } })).statusCode).toBe(200);
    // The console's page shell (no data) loads without a token and asks for one; its data does not.
    const shell = await app.inject({ url: '/console/' });
    expect(shell.statusCode).toBe(200);
    expect(shell.headers['content-security-policy']).toMatch(/default-src 'self'/);
    expect((await app.inject({ url: '/console/app.js' })).statusCode).toBe(200);
    expect((await app.inject({ url: '/console/api/fleet' })).statusCode).toBe(401);
    expect((await app.inject({ url: '/console/api/events' })).statusCode).toBe(401);
    const fleet = await app.inject({ url: '/console/api/fleet', headers: { 'x-auth-token': token } });
    expect(fleet.statusCode).toBe(200);
    expect(fleet.json().fields).toContain('provision');
    expect((await app.inject({ url: '/console/api/events?last_event_id=..', headers: { 'x-auth-token': token } })).statusCode).toBe(400);
    await app.close();
    await conductor.stop();
  });

  it('api.console: false serves no console', async () => {
    const { app, conductor } = await makeApi({ api: { console: false } });
    expect((await app.inject({ url: '/console/' })).statusCode).toBe(404);
    expect((await app.inject({ url: '/console/api/fleet' })).statusCode).toBe(404);
    await app.close();
    await conductor.stop();
  });

  it('http_basic strategy', async () => {
    const { app, conductor } = await makeApi({ api: { auth: { strategy: 'http_basic', users: { admin: 's3cret-pass' } } } });
    const hdr = (u: string, p: string) => ({ authorization: `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}` });
    const r = await app.inject({ url: '/v1/nodes' });
    expect(r.statusCode).toBe(401);
    expect(r.headers['www-authenticate']).toMatch(/Basic/);
    expect((await app.inject({ url: '/v1/nodes', headers: hdr('admin', 'nope-nope') })).statusCode).toBe(401);
    expect((await app.inject({ url: '/v1/nodes', headers: hdr('admin', 's3cret-pass') })).statusCode).toBe(200);
    await app.close();
    await conductor.stop();
  });

  it('max_concurrent_deploy / max_concurrent_clean: one more is refused with 503 naming the limit, and nothing changes', async () => {
    const { app, conductor } = await makeApi({ conductor: { node_locked_retry_attempts: 0, max_concurrent_deploy: 1, max_concurrent_clean: 1 } });
    const req = (method: 'GET' | 'POST' | 'PUT', url: string, payload?: unknown) => app.inject({ method, url, payload: payload === undefined ? undefined : JSON.stringify(payload), headers: { 'content-type': 'application/json' } });
    const walk = async (name: string, verb: string, want: string) => {
      expect((await req('PUT', `/v1/nodes/${name}/states/provision`, { target: verb })).statusCode).toBe(202);
      await waitFor(async () => (await req('GET', `/v1/nodes/${name}`)).json().provision_state === want, 10_000, `${name} ${want}`);
    };
    for (const name of ['lim-a', 'lim-b']) {
      expect((await req('POST', '/v1/nodes', { driver: 'fake-hardware', name })).statusCode).toBe(201);
      await walk(name, 'manage', 'manageable');
    }
    await walk('lim-a', 'provide', 'available');
    // lim-b is waiting on its agent mid-deploy (as a real deploy would): the one deploy slot is taken.
    const b = (await conductor.store.findNode('lim-b'))!;
    await conductor.store.updateNode(b.id, { provision_state: 'wait call-back' });
    const refused = await req('PUT', '/v1/nodes/lim-a/states/provision', { target: 'active' });
    expect(refused.statusCode).toBe(503);
    expect(errText(refused.body)).toMatch(/concurrent action limit for deploy has been reached: 1 nodes .* \(conductor\.max_concurrent_deploy\) is 1/);
    expect((await req('GET', '/v1/nodes/lim-a')).json().provision_state).toBe('available');
    // Manual cleaning counts against max_concurrent_clean.
    await conductor.store.updateNode(b.id, { provision_state: 'clean wait' });
    await walk('lim-a', 'manage', 'manageable');
    const clean = await req('PUT', '/v1/nodes/lim-a/states/provision', { target: 'clean', clean_steps: [{ interface: 'deploy', step: 'wait', args: { seconds: 0 } }] });
    expect(clean.statusCode).toBe(503);
    expect(errText(clean.body)).toMatch(/limit for clean/);
    // The slot frees up: the same request is accepted.
    await conductor.store.updateNode(b.id, { provision_state: 'manageable' });
    await walk('lim-a', 'provide', 'available');
    await walk('lim-a', 'active', 'active');
    await app.close();
    await conductor.stop();
  });
});
