/**
 * An abuse run generated from the API's own OpenAPI document, against a conductor process: for
 * every route and method, malformed bodies (wrong types per schema property, huge strings, deep
 * nesting, prototype keys, unicode, non-JSON, wrong media type), bad path values and bad query
 * values. Every answer must be a 4xx in Ironic's error envelope with a stable code — no 5xx, no
 * crash — and the node and port tables must be byte-identical afterwards. Bounded: a fixed set of
 * mutations per route (about a thousand requests), a few seconds.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import path from 'node:path';
import Database from 'better-sqlite3';
import { startConductorProcess, tmpDir, type ConductorProc } from '../helpers.js';
import { fakeNode, raw, type RawResponse } from './helpers.js';

type Schema = { type?: string | string[]; properties?: Record<string, Schema>; items?: Schema; required?: string[]; anyOf?: Schema[] };
type Operation = { requestBody?: { content: { 'application/json': { schema: Schema } } } };

/** A value of a type the schema does not accept (wrong type per property). */
function wrongTypeFor(s: Schema): unknown {
  const t = Array.isArray(s.type) ? s.type[0] : s.type;
  switch (t) {
    case 'string':
      return 12345;
    case 'integer':
    case 'number':
      return 'not-a-number';
    case 'boolean':
      return 'yes';
    case 'array':
      return { not: 'an array' };
    case 'object':
      return ['not', 'an', 'object'];
    default:
      return Symbol.for('skip');
  }
}

/** Malformed bodies for one operation: each one is invalid on its own. */
function badBodies(op: Operation | undefined): Array<{ what: string; raw?: string | Buffer; body?: unknown; contentType?: string }> {
  const out: Array<{ what: string; raw?: string | Buffer; body?: unknown; contentType?: string }> = [
    { what: 'non-JSON', raw: '{"driver": fake-hardware' },
    { what: 'truncated', raw: '[{"op":"add","path":"/extra/a",' },
    { what: 'number', body: 42 },
    { what: 'string', body: 'hello' },
    { what: 'null', raw: 'null' },
    { what: 'true', body: true },
    { what: 'array of junk', body: [1, 'two', null] },
    { what: 'deep nesting', raw: '['.repeat(100_000) + ']'.repeat(100_000) },
    { what: 'deep object nesting', raw: '{"a":'.repeat(2_000) + '1' + '}'.repeat(2_000) },
    { what: 'huge string', body: { driver: 'x'.repeat(600_000), target: 'x'.repeat(600_000), name: 'n'.repeat(300_000), op: 'add', path: '/' + 'x'.repeat(100_000) } },
    { what: 'over the body limit', raw: `{"extra":"${'y'.repeat(3 * 1024 * 1024)}"}` },
    { what: '__proto__ key', raw: '{"__proto__":{"polluted":true},"driver":"fake-hardware","target":"manage"}' },
    { what: 'constructor.prototype key', raw: '{"constructor":{"prototype":{"polluted":true}}}' },
    { what: 'unicode junk', body: { '\u0000': '\ud800', '☃': '\u202e', driver: '\u0000', target: '\ud83d\ude00', name: 'n\u0000' } },
    { what: 'unknown field', body: { no_such_field: 1 } },
    { what: 'wrong media type', raw: 'driver=fake-hardware', contentType: 'application/x-www-form-urlencoded' },
    { what: 'binary', raw: Buffer.from([0xff, 0xfe, 0x00, 0x01, 0x80]), contentType: 'application/octet-stream' },
  ];
  const schema = op?.requestBody?.content['application/json'].schema;
  if (schema?.properties) {
    for (const [k, s] of Object.entries(schema.properties)) {
      const v = wrongTypeFor(s);
      if (v !== Symbol.for('skip')) out.push({ what: `wrong type for ${k}`, body: { ...Object.fromEntries((schema.required ?? []).map((r) => [r, 'x'])), [k]: v } });
    }
  }
  if (schema?.type === 'array' && schema.items?.properties) {
    for (const [k, s] of Object.entries(schema.items.properties)) {
      const v = wrongTypeFor(s);
      if (v !== Symbol.for('skip')) out.push({ what: `wrong type for [0].${k}`, body: [{ op: 'add', path: '/extra/x', value: 1, [k]: v }] });
    }
    out.push({ what: 'empty patch', body: [] }, { what: 'patch to /__proto__', body: [{ op: 'add', path: '/__proto__/x', value: 1 }] });
  }
  return out;
}

const BAD_IDENTS = ['no-such-node', '00000000-0000-4000-8000-000000000000', 'x'.repeat(2000), '%00', '..%2F..%2Fetc', '%E2%98%83', '__proto__', 'constructor', "'; DROP TABLE nodes; --", '%FF%FE'];
const BAD_QUERIES = ['limit=-1', 'limit=abc', 'limit=100000', 'limit=1&limit=2', 'sort_key=drop', 'sort_dir=sideways', 'detail=maybe', 'fields=__proto__', 'fields=' + 'a,'.repeat(5000), 'marker=nope', 'no_such_param=1', '__proto__[x]=1', 'kind=everything', 'provision_state=%00'];

describe('API abuse run generated from /v1/openapi.json', () => {
  const dir = tmpDir('ironfleet-sec-abuse-');
  let c: ConductorProc;
  let node = '';
  let port = '';

  const snapshot = () => {
    const db = new Database(path.join(dir, 'ironfleet.db'), { readonly: true, fileMustExist: true });
    try {
      return JSON.stringify([db.prepare('SELECT * FROM nodes ORDER BY id').all(), db.prepare('SELECT * FROM ports ORDER BY id').all()]);
    } finally {
      db.close();
    }
  };

  beforeAll(async () => {
    c = await startConductorProcess({ dir, env: { IRONFLEET_POWER_SYNC__INTERVAL_S: '0' } });
    node = await fakeNode(c.apiUrl, 'abuse-target', '52:54:00:dd:00:01', 'manageable');
    port = ((await raw(c.apiUrl, 'GET', '/v1/ports')).json as { ports: Array<{ uuid: string }> }).ports[0]!.uuid;
  });
  afterAll(async () => {
    await c?.kill('SIGTERM');
  });

  it('every route and method: malformed input gets a 4xx in the Ironic envelope; nothing changes; the process stays healthy', async () => {
    const doc = (await raw(c.apiUrl, 'GET', '/v1/openapi.json')).json as { paths: Record<string, Record<string, Operation>> };
    const before = snapshot();
    const failures: string[] = [];
    let sent = 0;
    const check = (label: string, r: RawResponse) => {
      sent++;
      // Past the body limit the server answers 413 and closes; the client may see only the close.
      if (r.status === 0 && label.includes('over the body limit')) return;
      if (r.status >= 500) failures.push(`${label}: ${r.status} ${r.text.slice(0, 200)}`);
      else if (r.status < 400) failures.push(`${label}: accepted (${r.status})`);
      else if (!r.fault || r.fault.faultcode !== 'Client' || typeof r.fault.faultstring !== 'string' || !r.fault.code?.startsWith('IRF_')) failures.push(`${label}: ${r.status} without the Ironic envelope: ${r.text.slice(0, 200)}`);
    };
    const t0 = Date.now();
    for (const [template, item] of Object.entries(doc.paths)) {
      const methods = Object.keys(item).filter((m) => ['get', 'post', 'put', 'patch', 'delete'].includes(m));
      const real = template.replace('{ident}', node).replace('{uuid}', port).replace('{name}', 'fake-hardware').replace('{event}', 'no-such-event').replace('{cid}', 'no-such-command');
      const hasParam = template.includes('{');
      for (const method of methods) {
        const M = method.toUpperCase();
        // Malformed bodies on the real resource: each is invalid, so nothing may change.
        for (const b of badBodies(item[method])) {
          const r = await raw(c.apiUrl, M, real, { body: b.body, rawBody: b.raw, headers: { 'content-type': b.contentType ?? 'application/json' } });
          check(`${M} ${template} [${b.what}]`, r);
        }
        // Bad path values.
        if (hasParam) {
          for (const id of BAD_IDENTS) {
            const p = template.replace(/\{[a-z]+\}/g, id);
            const r = await raw(c.apiUrl, M, p, M === 'GET' || M === 'DELETE' ? {} : { body: {} });
            check(`${M} ${p.slice(0, 80)}`, r);
          }
        }
        // Bad query values (on the real resource; each query is invalid for every route).
        for (const q of BAD_QUERIES) {
          const r = await raw(c.apiUrl, M, `${real}?${q}`, M === 'GET' || M === 'DELETE' ? {} : { body: {} });
          check(`${M} ${template}?${q.slice(0, 60)}`, r);
        }
      }
      expect(Date.now() - t0).toBeLessThan(120_000); // bounded
    }
    expect(failures, failures.slice(0, 20).join('\n')).toEqual([]);
    expect(sent).toBeGreaterThan(500);
    expect(c.child.exitCode).toBe(null);
    expect(snapshot()).toBe(before);
    // Healthy: a valid request succeeds next.
    const ok = await raw(c.apiUrl, 'PUT', `/v1/nodes/${node}/states/provision`, { body: { target: 'provide' } });
    expect(ok.status, ok.text).toBe(202);
  }, 180_000);
});
