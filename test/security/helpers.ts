/** Helpers for the abuse suite: raw HTTP against a conductor process, process RSS, node setup. */
import { readFileSync } from 'node:fs';
import { request } from 'undici';
import * as grpc from '@grpc/grpc-js';
import { AgentServiceClient, type AgentMessage, type ConductorMessage } from '../../shared/gen/ironfleet/agent/v1/agent.js';
import { AGENT_TOKEN_METADATA } from '../../shared/commands.js';
import { waitFor } from '../helpers.js';

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: unknown;
  /** Ironic envelope, decoded: { faultcode, faultstring, code } when the body is an error. */
  fault?: { faultcode: string; faultstring: string; code?: string };
}

/** One HTTP request with a raw body (string, Buffer) or a JSON value; never throws on status. */
export async function raw(base: string, method: string, path: string, o: { body?: unknown; rawBody?: string | Buffer; headers?: Record<string, string> } = {}): Promise<RawResponse> {
  const headers: Record<string, string> = { ...o.headers };
  let body: string | Buffer | undefined = o.rawBody;
  if (o.body !== undefined) {
    body = JSON.stringify(o.body);
    headers['content-type'] ??= 'application/json';
  } else if (body !== undefined) headers['content-type'] ??= 'application/json';
  let res;
  try {
    res = await request(`${base}${path}`, { method: method as 'GET', headers, body, headersTimeout: 20_000, bodyTimeout: 20_000 });
  } catch (err) {
    // The server closed the connection before the whole body was sent (e.g. past its body limit).
    const code = (err as { code?: string }).code ?? '';
    if (['EPIPE', 'ECONNRESET', 'UND_ERR_SOCKET'].includes(code)) return { status: 0, headers: {}, text: `connection closed: ${code}`, json: undefined };
    throw err;
  }
  const text = await res.body.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  const out: RawResponse = { status: res.statusCode, headers: res.headers, text, json };
  const em = (json as { error_message?: string } | undefined)?.error_message;
  if (typeof em === 'string') out.fault = JSON.parse(em);
  return out;
}

/** Resident set of a process in KiB (all threads), from /proc. */
export function rssKiB(pid: number): number {
  const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmRSS:\s+(\d+)\s+kB/m);
  return m ? Number(m[1]) : 0;
}

/** Creates a fake-hardware node with one port, optionally walked to `available` or `active`. */
export async function fakeNode(api: string, name: string, mac: string, to: 'enroll' | 'manageable' | 'available' | 'active' = 'enroll'): Promise<string> {
  const n = await raw(api, 'POST', '/v1/nodes', { body: { driver: 'fake-hardware', name } });
  if (n.status !== 201) throw new Error(`node create: ${n.status} ${n.text}`);
  const uuid = (n.json as { uuid: string }).uuid;
  const p = await raw(api, 'POST', '/v1/ports', { body: { address: mac, node_uuid: uuid } });
  if (p.status !== 201) throw new Error(`port create: ${p.status} ${p.text}`);
  const steps: Array<[string, string]> = [];
  if (to !== 'enroll') steps.push(['manage', 'manageable']);
  if (to === 'available' || to === 'active') steps.push(['provide', 'available']);
  if (to === 'active') steps.push(['active', 'active']);
  for (const [verb, state] of steps) {
    const r = await raw(api, 'PUT', `/v1/nodes/${uuid}/states/provision`, { body: { target: verb } });
    if (r.status !== 202) throw new Error(`${verb}: ${r.status} ${r.text}`);
    await waitFor(async () => ((await raw(api, 'GET', `/v1/nodes/${uuid}`)).json as { provision_state: string }).provision_state === state, 20_000, `${name} ${state}`);
  }
  return uuid;
}

export function hello(macs: string[], bootId = 'boot-1'): AgentMessage {
  return { seq: 0, body: { $case: 'hello', value: { macs, bootId, agentVersion: 'rogue-1', nodeUuid: '', commands: [], capabilities: [] } } };
}

/** A raw agent stream (a possibly hostile agent): connect, say hello, then whatever the test sends. */
export function rawAgent(addr: string, token?: string) {
  const client = new AgentServiceClient(addr, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  if (token) md.set(AGENT_TOKEN_METADATA, token);
  const call = client.connect(md);
  const got: ConductorMessage[] = [];
  const ended = new Promise<{ code: number; details: string }>((resolve) => {
    call.on('data', (m: ConductorMessage) => got.push(m));
    call.on('error', (err: grpc.ServiceError) => resolve({ code: err.code, details: err.details }));
    call.on('end', () => resolve({ code: 0, details: '' }));
  });
  return {
    call,
    got,
    ended,
    welcome: () => waitFor(() => got.find((m) => m.body?.$case === 'welcome'), 10_000, 'welcome'),
    close() {
      call.cancel();
      client.close();
    },
  };
}
