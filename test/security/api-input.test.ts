/**
 * The operator API as an attacker (or a careless script) would hit it: a real conductor process.
 * Prototype keys, unvalidated step arguments, accepted-but-ignored fields, UUID-shaped names,
 * destructive agent commands on a tenant's node and /metrics without credentials are all refused
 * with a 4xx naming the field — and a valid request succeeds right after each.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { startConductorProcess, tmpDir, type ConductorProc } from '../helpers.js';
import { fakeNode, raw } from './helpers.js';

describe('API input abuse (noauth conductor on loopback)', () => {
  const dir = tmpDir('ironfleet-sec-api-');
  let c: ConductorProc;
  let node = '';

  beforeAll(async () => {
    c = await startConductorProcess({ dir });
    node = await fakeNode(c.apiUrl, 'victim', '52:54:00:aa:00:01');
  });
  afterAll(async () => {
    await c?.kill('SIGTERM');
  });

  const healthy = async () => {
    // Creating a node and a power request both work: nothing leaked into Object.prototype.
    const n = await raw(c.apiUrl, 'POST', '/v1/nodes', { body: { driver: 'fake-hardware' } });
    expect(n.status, n.text).toBe(201);
    const p = await raw(c.apiUrl, 'PUT', `/v1/nodes/${(n.json as { uuid: string }).uuid}/states/power`, { body: { target: 'power on' } });
    expect(p.status, p.text).toBe(202);
  };

  it('JSON patch through __proto__ / constructor / prototype is refused and pollutes nothing', async () => {
    for (const p of ['/extra/__proto__/polluted', '/extra/constructor/prototype/polluted', '/driver_info/a/__proto__', '/__proto__']) {
      const r = await raw(c.apiUrl, 'PATCH', `/v1/nodes/${node}`, { body: [{ op: 'add', path: p, value: 1 }] });
      expect(r.status, p).toBe(400);
      expect(r.fault?.faultstring).toMatch(/patch\.0\.path|not allowed|cannot be changed/);
    }
    await healthy();
    const n = (await raw(c.apiUrl, 'GET', `/v1/nodes/${node}`)).json as { extra: Record<string, unknown> };
    expect(n.extra).toEqual({});
  });

  it('bodies carrying prototype keys are refused at parse time', async () => {
    const bodies = ['{"driver":"fake-hardware","extra":{"__proto__":{"polluted":1}}}', '{"driver":"fake-hardware","__proto__":{"x":1}}', '{"driver":"fake-hardware","extra":{"constructor":{"prototype":{"x":1}}}}'];
    for (const b of bodies) {
      const r = await raw(c.apiUrl, 'POST', '/v1/nodes', { rawBody: b });
      expect(r.status, b).toBe(400);
      expect(r.fault?.faultstring).toMatch(/is not allowed/);
    }
    await healthy();
  });

  it('step arguments are checked against the command catalogue before anything is saved', async () => {
    await raw(c.apiUrl, 'PUT', `/v1/nodes/${node}/states/provision`, { body: { target: 'manage' } });
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ interface: 'deploy', step: 'erase_devices', args: { devices: 5 } }, /clean_steps\.0\.args\.devices/],
      [{ interface: 'deploy', step: 'erase_devices', args: { devices: 'ab' } }, /clean_steps\.0\.args\.devices/],
      [{ interface: 'deploy', step: 'erase_devices', args: { devices: ['/dev/sda'], extra: 1 } }, /clean_steps\.0\.args\.extra/],
      [{ interface: 'deploy', step: 'burnin_cpu', args: {} }, /clean_steps\.0\.args\.duration_s/],
      [{ interface: 'deploy', step: 'write_image', args: { url: 'x' } }, /clean_steps\.0\.args\.url: step deploy\.write_image takes no arguments/],
      [{ interface: 'deploy', step: 'wait', args: { seconds: 1, x: 2 } }, /clean_steps\.0\.args\.x/],
    ];
    for (const [step, re] of cases) {
      const r = await raw(c.apiUrl, 'PUT', `/v1/nodes/${node}/states/provision`, { body: { target: 'clean', clean_steps: [step] } });
      expect(r.status, JSON.stringify(step)).toBe(400);
      expect(r.fault?.faultstring).toMatch(re);
    }
    const cmds = (await raw(c.apiUrl, 'GET', `/v1/nodes/${node}/agent/commands`)).json as { commands: unknown[] };
    expect(cmds.commands).toHaveLength(0);
    expect(((await raw(c.apiUrl, 'GET', `/v1/nodes/${node}`)).json as { provision_state: string }).provision_state).toBe('manageable');
  });

  it('fields that would be accepted and ignored are refused, naming them', async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ target: 'active', configdrive: 'H4sI' }, 'configdrive'],
      [{ target: 'active', configdrive: { meta_data: {} } }, 'configdrive'],
      [{ target: 'rescue', rescue_password: 'pw' }, 'rescue_password'],
      [{ target: 'active', disable_ramdisk: true }, 'disable_ramdisk'],
      [{ target: 'rescue' }, 'target'],
      [{ target: 'unrescue' }, 'target'],
      [{ target: 'provide', deploy_steps: [] }, 'deploy_steps'],
      [{ target: 'toString' }, 'target'],
    ];
    for (const [body, field] of cases) {
      const r = await raw(c.apiUrl, 'PUT', `/v1/nodes/${node}/states/provision`, { body });
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.fault?.faultstring).toContain(field);
    }
    const q = await raw(c.apiUrl, 'GET', '/v1/nodes?provison_state=active');
    expect(q.status).toBe(400);
    expect(q.fault?.faultstring).toMatch(/Unknown query parameter "provison_state"/);
  });

  it('a node cannot be renamed to a UUID-shaped name; a UUID ident is only ever a UUID', async () => {
    const other = await fakeNode(c.apiUrl, 'other', '52:54:00:aa:00:02');
    const r = await raw(c.apiUrl, 'PATCH', `/v1/nodes/${node}`, { body: [{ op: 'replace', path: '/name', value: other }] });
    expect(r.status).toBe(400);
    expect(r.fault?.faultstring).toMatch(/must not look like a UUID/);
    expect(((await raw(c.apiUrl, 'GET', `/v1/nodes/${other}`)).json as { name: string }).name).toBe('other');
  });

  it('destructive agent commands are refused on an active node (its tenant owns the disks)', async () => {
    const tenant = await fakeNode(c.apiUrl, 'tenant', '52:54:00:aa:00:03', 'active');
    for (const [name, params] of [
      ['clean.erase_devices', {}],
      ['clean.erase_devices_metadata', {}],
      ['deploy.write_image', { url: 'http://127.0.0.1:1/x.img', checksum: 'a'.repeat(64) }],
      ['raid.delete_configuration', {}],
    ] as const) {
      const r = await raw(c.apiUrl, 'POST', `/v1/nodes/${tenant}/agent/commands`, { body: { name, params } });
      expect(r.status, name).toBe(400);
      expect(r.fault?.faultstring).toMatch(/refused in provision state "active"/);
    }
  });

  it('the API is served with /metrics open only on a noauth conductor', async () => {
    expect((await raw(c.apiUrl, 'GET', '/metrics')).status).toBe(200);
  });
});

describe('/metrics behind the API credentials', () => {
  const dir = tmpDir('ironfleet-sec-metrics-');
  let c: ConductorProc;
  const auth = { authorization: `Basic ${Buffer.from('ops:correct-horse-battery').toString('base64')}` };

  beforeAll(async () => {
    const cfg = path.join(dir, 'conductor.yaml');
    writeFileSync(cfg, 'api:\n  auth:\n    strategy: http_basic\n    users:\n      ops: correct-horse-battery\n');
    c = await startConductorProcess({ dir, config: cfg });
  });
  afterAll(async () => {
    await c?.kill('SIGTERM');
  });

  it('401 without credentials (and no prefix trick opens anything), 200 with them', async () => {
    for (const p of ['/metrics', '/metrics/../v1/nodes', '/metricsX', '/metrics?x=1', '/v1/nodes']) {
      const r = await raw(c.apiUrl, 'GET', p);
      expect(r.status, p).toBe(401);
    }
    const ok = await raw(c.apiUrl, 'GET', '/metrics', { headers: auth });
    expect(ok.status).toBe(200);
    expect(ok.text).toContain('ironfleet_api_requests_total');
    expect((await raw(c.apiUrl, 'GET', '/')).status).toBe(200); // version discovery stays open, as Ironic's
  });
});
