/**
 * The BMC exchange (conductor/redfish/exchange.ts) through a real RedfishClient against a simulator
 * process over verified HTTPS: answers read whole, ETag revalidation, and the malformed answers a
 * broken BMC can send — a body past the size cap, a body cut off mid-way — each a clear error that
 * leaves the client usable for the next request.
 */
import type { TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { admin, startSim, type SimProc } from '../../sim/helpers.js';
import { RedfishClient } from '../../../conductor/redfish/client.js';
import { parseRedfishDriverInfo, type RedfishTarget } from '../../../conductor/redfish/driver-info.js';
import { MAX_BODY_BYTES } from '../../../conductor/redfish/http1-parser.js';
import type { RedfishError } from '../../../conductor/redfish/errors.js';

const FAST = { latency_ms: { get: [1, 2], login: [1, 2], action: [1, 2] }, flapping_fraction: 0, storm_fraction: 0, slow_fraction: 0, health_changes_per_hour: 0 };

describe('BMC exchange', () => {
  let sim: SimProc;
  let target: RedfishTarget;
  let client: RedfishClient;
  beforeAll(async () => {
    sim = await startSim(['--bmcs', '2', '--profile', 'realistic', '--profile-override', JSON.stringify(FAST)]);
    const b = sim.manifest.bmcs[0]!;
    target = parseRedfishDriverInfo({ redfish_address: b.address, redfish_username: b.username, redfish_password: b.password, redfish_system_id: b.system_id, redfish_verify_ca: sim.manifest.ca_file!, ...(sim.manifest.tls_server_name ? { redfish_tls_server_name: sim.manifest.tls_server_name } : {}) });
    client = new RedfishClient(target, { timeoutMs: 3000, getRetries: 0, breakerThreshold: 100 });
  });
  afterAll(async () => {
    await client?.logout();
    await client?.close();
    await sim?.stop();
  });

  const fault = (body: unknown) => admin(sim, 'POST', '/bmcs/0/faults', body);
  const counters = async () => (await admin(sim, 'GET', '/bmcs/0')).json.counters as Record<string, number>;
  const systemPath = () => `/redfish/v1/Systems/${target.systemId}`;

  it('reads a document, then revalidates it with If-None-Match (304: the cached document, no body)', async () => {
    const a = await client.request('GET', systemPath());
    expect(a.status).toBe(200);
    expect(typeof a.doc.PowerState).toBe('string');
    expect(a.headers.etag).toBeTruthy();
    const notModified = client.stats.not_modified;
    const b = await client.request('GET', systemPath());
    expect(b.doc).toEqual(a.doc);
    expect(client.stats.not_modified).toBe(notModified + 1);
  });

  it('an idle socket is closed after keepAliveMs (redfish.keep_alive_s); the next request reconnects resuming the TLS session', async () => {
    const lean = new RedfishClient(target, { timeoutMs: 3000, getRetries: 0, breakerThreshold: 100, keepAliveMs: 300 });
    try {
      expect((await lean.request('GET', systemPath())).status).toBe(200);
      const [first] = [...lean.sockets] as TLSSocket[];
      expect(first).toBeDefined();
      await new Promise((r) => setTimeout(r, 800));
      expect(lean.sockets.size).toBe(0);
      expect(first!.destroyed).toBe(true);
      expect((await lean.request('GET', systemPath())).status).toBe(200);
      const [second] = [...lean.sockets] as TLSSocket[];
      expect(second).not.toBe(first);
      expect(second!.isSessionReused()).toBe(true);
    } finally {
      await lean.logout();
      await lean.close();
    }
  });

  it(`an answer larger than ${MAX_BODY_BYTES >> 20} MiB is refused (RF_PROTOCOL), and the next request works`, async () => {
    await fault({ script: [{ method: 'GET', path: '/Chassis', body_bytes: MAX_BODY_BYTES + 4096 }] });
    const before = await counters();
    const err = (await client.request('GET', '/redfish/v1/Chassis').catch((e: unknown) => e)) as RedfishError;
    expect(err.code).toBe('RF_PROTOCOL');
    expect(err.message).toContain(`larger than ${MAX_BODY_BYTES} bytes`);
    expect((await counters()).scripted_faults).toBe(before.scripted_faults! + 1);
    const again = await client.request('GET', '/redfish/v1/Chassis');
    expect(again.status).toBe(200);
    expect(Array.isArray(again.doc.Members)).toBe(true);
  });

  it('a large answer under the cap is read whole', async () => {
    await fault({ script: [{ method: 'GET', path: '/Managers', body_bytes: 3 << 20 }] });
    const r = await client.request('GET', '/redfish/v1/Managers');
    expect((r.doc.Padding as string).length).toBeGreaterThan((3 << 20) - 100);
  });

  it('a chunked answer with Connection: close is read whole; the next request opens a new socket', async () => {
    await fault({ script: [{ method: 'GET', path: '/Chassis', chunked: true }] });
    const sockets = new Set(client.sockets);
    const r = await client.request('GET', '/redfish/v1/Chassis');
    expect(r.doc.Chunks).toHaveLength(40);
    expect(r.headers['transfer-encoding']).toBe('chunked');
    const next = await client.request('GET', systemPath());
    expect(typeof next.doc.PowerState).toBe('string');
    expect([...client.sockets].some((s) => !sockets.has(s))).toBe(true);
  });

  it('a body cut off mid-way is a transport error, not a document, and the client reconnects', async () => {
    await fault({ script: [{ method: 'GET', path: '/UpdateService', truncate: true, body_bytes: 64 << 10 }] });
    const err = (await client.request('GET', '/redfish/v1/UpdateService').catch((e: unknown) => e)) as RedfishError;
    expect(err.code).toBe('RF_CONNECT');
    expect(err.message).not.toContain(target.password);
    const r = await client.request('GET', systemPath());
    expect(typeof r.doc.PowerState).toBe('string');
  });
});
