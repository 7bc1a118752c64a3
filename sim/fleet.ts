/**
 * The simulator's controller: validates options, generates TLS material, forks worker processes
 * (one per core, more when the fleet needs the file descriptors), writes the fleet manifest, and
 * serves the loopback-only admin API (counters, fault injection).
 */
import { fork, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { simulatedMac } from '../agent/hardware.js';
import { resolveProfile, type Profile } from './profiles.js';
import { generateSimTls, SIM_TLS_SERVER_NAME } from './tls.js';
import { SIM_USERNAME, bmcHost, bmcPassword, systemId } from './layout.js';
import { faultRequestSchema, type ParentMessage, type WorkerMessage } from './protocol.js';
import { emptyCounters } from './service.js';

const WORKER = fileURLToPath(new URL('./worker.js', import.meta.url));
/** Keep each worker well under the 20,000 file-descriptor limit: listener + a client socket per BMC. */
const MAX_BMCS_PER_WORKER = 4000;

export const simOptionsSchema = z.strictObject({
  bmcs: z.number().int().min(1).max(20_000),
  profile: z.string().default('realistic'),
  profile_overrides: z.record(z.string(), z.unknown()).default({}),
  seed: z.string().min(1).default('ironfleet'),
  port: z.number().int().min(1).max(65535).default(8443),
  /** host:port: serve every system behind one address (sushy-tools style), one process. */
  single_address: z
    .string()
    .regex(/^127\.\d+\.\d+\.\d+:\d+$|^localhost:\d+$/, 'must be a loopback host:port such as 127.0.0.1:8000')
    .optional(),
  tls: z.boolean().default(true),
  workers: z.number().int().min(1).max(64).optional(),
  manifest: z.string().min(1),
  admin_port: z.number().int().min(0).max(65535).default(9400),
  initial_power: z.enum(['on', 'off', 'mixed']).default('off'),
  /** Boot a simulated ramdisk agent on every power-on, connecting to this conductor endpoint. */
  agents: z
    .strictObject({
      /** host:port, or a comma-separated list (several conductors: the agents try them in turn). */
      conductor: z.string().regex(/^[^\s:,]+:\d{1,5}(,[^\s:,]+:\d{1,5})*$/, 'must be host:port (or a comma-separated list)'),
      boot_delay_ms: z.number().int().min(0).max(600_000).default(3000),
      disk_dir: z.string().min(1),
      disk_bytes: z.number().int().min(1 << 20).default(8 * 2 ** 30),
      deploy_step_priorities: z.record(z.string(), z.number().int().min(0).max(1000)).default({}),
    })
    .optional(),
  /** With `agents`: machines boot the built deploy ramdisk in a qemu VM (TCG) instead. */
  qemu: z
    .strictObject({
      kernel: z.string().min(1),
      initramfs: z.string().min(1),
      disk_dir: z.string().min(1),
      disks: z.number().int().min(1).max(8).default(3),
      disk_bytes: z.number().int().min(64 << 20).default(1 << 30),
      memory_mib: z.number().int().min(256).max(16_384).default(1536),
      forward_ports: z.array(z.number().int().min(1).max(65535)).default([]),
      append: z.string().optional(),
    })
    .optional(),
});
export type SimOptions = z.input<typeof simOptionsSchema>;

export interface ManifestBmc {
  index: number;
  name: string;
  address: string;
  username: string;
  password: string;
  system_id: string;
  macs: string[];
}

export interface Manifest {
  seed: string;
  profile: string;
  ca_file: string | null;
  tls_server_name: string | null;
  admin_url: string;
  bmcs: ManifestBmc[];
}

interface Worker {
  child: ChildProcess;
  pending: Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>;
  indexes: number[];
}

export interface RunningFleet {
  manifest: Manifest;
  manifestPath: string;
  adminUrl: string;
  profile: Profile;
  workers: number;
  startupMs: number;
  stats(): Promise<Record<string, unknown>>;
  bmc(index: number): Promise<Record<string, unknown>>;
  fault(f: z.input<typeof faultRequestSchema>): Promise<Record<string, unknown>>;
  resetCounters(): Promise<void>;
  /** One counter for every BMC, indexed by BMC (GET /counters/<field>). */
  counter(field: string): Promise<number[]>;
  stop(): Promise<void>;
}

export function parseSimOptions(raw: unknown): z.output<typeof simOptionsSchema> {
  const r = simOptionsSchema.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw new Error(`${i.path.join('.') || 'options'}: ${i.message}`);
  }
  return r.data;
}

export async function startFleet(raw: SimOptions): Promise<RunningFleet> {
  const t0 = Date.now();
  const o = parseSimOptions(raw);
  const profile = resolveProfile(o.profile, o.profile_overrides);
  const tls = o.tls ? await generateSimTls() : undefined;
  const dir = path.dirname(path.resolve(o.manifest));
  mkdirSync(dir, { recursive: true });
  let caFile: string | null = null;
  if (tls) {
    caFile = path.join(dir, 'sim-ca.pem');
    writeFileSync(caFile, tls.caPem);
  }
  const single = o.single_address ? { host: o.single_address.split(':')[0]!, port: Number(o.single_address.split(':')[1]) } : undefined;
  const nWorkers = single ? 1 : Math.min(o.bmcs, o.workers ?? Math.max(os.availableParallelism(), Math.ceil(o.bmcs / MAX_BMCS_PER_WORKER)));
  if (!single && Math.ceil(o.bmcs / nWorkers) > MAX_BMCS_PER_WORKER) {
    throw new Error(`workers: ${nWorkers} workers cannot serve ${o.bmcs} BMCs (max ${MAX_BMCS_PER_WORKER} each)`);
  }

  let nextId = 1;
  const workers: Worker[] = [];
  type Msg = ParentMessage extends infer M ? (M extends { id: number } ? Omit<M, 'id'> : never) : never;
  const call = (w: Worker, msg: Msg): Promise<unknown> =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      w.pending.set(id, { resolve, reject });
      w.child.send({ ...msg, id } as ParentMessage);
    });
  for (let k = 0; k < nWorkers; k++) {
    const child = fork(WORKER, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced' });
    const w: Worker = { child, pending: new Map(), indexes: [] };
    child.on('message', (m: WorkerMessage) => {
      const p = w.pending.get(m.id);
      if (!p) return;
      w.pending.delete(m.id);
      if (m.ok) p.resolve(m.result);
      else p.reject(new Error(m.error));
    });
    child.on('exit', (code) => {
      for (const p of w.pending.values()) p.reject(new Error(`simulator worker exited with ${code}`));
      w.pending.clear();
    });
    workers.push(w);
  }
  for (let i = 0; i < o.bmcs; i++) workers[single ? 0 : i % nWorkers]!.indexes.push(i);
  const scheme = tls ? 'https' : 'http';
  try {
    await Promise.all(
      workers.map((w) =>
        call(w, {
          type: 'init',
          seed: o.seed,
          profile,
          indexes: w.indexes,
          port: o.port,
          single,
          tls: tls ? { cert: tls.certPem, key: tls.keyPem } : undefined,
          initialPower: o.initial_power,
          agents: o.agents ? { conductor: o.agents.conductor, bootDelayMs: o.agents.boot_delay_ms, diskDir: o.agents.disk_dir, diskBytes: o.agents.disk_bytes, deployStepPriorities: o.agents.deploy_step_priorities } : undefined,
          qemu: o.qemu ? { kernel: o.qemu.kernel, initramfs: o.qemu.initramfs, diskDir: o.qemu.disk_dir, disks: o.qemu.disks, diskBytes: o.qemu.disk_bytes, memoryMiB: o.qemu.memory_mib, forwardPorts: o.qemu.forward_ports, append: o.qemu.append } : undefined,
        }),
      ),
    );
  } catch (err) {
    for (const w of workers) w.child.kill('SIGKILL');
    throw err;
  }
  const workerOf = (index: number) => {
    if (!Number.isInteger(index) || index < 0 || index >= o.bmcs) throw new Error(`index: BMC ${index} does not exist (fleet has ${o.bmcs})`);
    return workers[single ? 0 : index % nWorkers]!;
  };

  const fleet = {
    async stats() {
      const per = (await Promise.all(workers.map((w) => call(w, { type: 'stats' })))) as Array<Record<string, number>>;
      const total: Record<string, number> = { ...emptyCounters(), bmcs: 0, peak_inflight_max: 0, bmcs_with_sessions: 0, sessions_repeat: 0 };
      for (const p of per) for (const [k, v] of Object.entries(p)) total[k] = k === 'peak_inflight_max' ? Math.max(total[k] ?? 0, v) : (total[k] ?? 0) + v;
      return { profile: profile.name, seed: o.seed, workers: nWorkers, fleet: total, per_worker: per };
    },
    async bmc(index: number) {
      return (await call(workerOf(index), { type: 'bmc', index })) as Record<string, unknown>;
    },
    async fault(f: z.input<typeof faultRequestSchema>) {
      const parsed = faultRequestSchema.safeParse(f);
      if (!parsed.success) {
        const i = parsed.error.issues[0]!;
        throw new Error(`${i.path.join('.') || 'fault'}: ${i.message}`);
      }
      return (await call(workerOf(parsed.data.index), { type: 'fault', fault: parsed.data })) as Record<string, unknown>;
    },
    async counter(field: string) {
      if (!(field in emptyCounters())) throw new Error(`field: no BMC counter named ${field.slice(0, 64)}`);
      const out = new Array<number>(o.bmcs).fill(0);
      for (const part of (await Promise.all(workers.map((w) => call(w, { type: 'counter', field })))) as Array<Array<[number, number]>>) for (const [i, v] of part) out[i] = v;
      return out;
    },
    async resetCounters() {
      await Promise.all(workers.map((w) => call(w, { type: 'reset-counters' })));
    },
  };

  const admin = http.createServer((req, res) => void handleAdmin(req, res));
  async function handleAdmin(req: http.IncomingMessage, res: http.ServerResponse) {
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    const remote = req.socket.remoteAddress ?? '';
    if (!/^(127\.|::1$|::ffff:127\.)/.test(remote)) return send(403, { error: 'the admin API is reachable from loopback only' });
    try {
      const url = new URL(req.url ?? '/', 'http://admin');
      const m = url.pathname.match(/^\/bmcs\/(\d+)(\/faults)?$/);
      if (req.method === 'GET' && url.pathname === '/stats') return send(200, await fleet.stats());
      if (req.method === 'GET' && url.pathname === '/manifest') return send(200, manifest);
      const cm = url.pathname.match(/^\/counters\/([a-z_]{1,40})$/);
      if (req.method === 'GET' && cm) return send(200, { field: cm[1], values: await fleet.counter(cm[1]!) });
      if (req.method === 'POST' && url.pathname === '/reset-counters') {
        await fleet.resetCounters();
        return send(200, { ok: true });
      }
      if (m && req.method === 'GET' && !m[2]) return send(200, await fleet.bmc(Number(m[1])));
      if (m && req.method === 'POST' && m[2]) {
        let body: unknown;
        try {
          const chunks: Buffer[] = [];
          for await (const c of req) chunks.push(c as Buffer);
          body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
        } catch {
          return send(400, { error: 'body: malformed JSON' });
        }
        if (typeof body !== 'object' || body === null || Array.isArray(body)) return send(400, { error: 'body: must be a JSON object' });
        if ('index' in body) return send(400, { error: 'index: give the BMC in the URL, not the body' });
        return send(200, await fleet.fault({ ...(body as object), index: Number(m[1]) }));
      }
      return send(404, { error: `no route ${req.method} ${url.pathname}` });
    } catch (err) {
      send(400, { error: (err as Error).message });
    }
  }
  await new Promise<void>((resolve, reject) => {
    admin.once('error', (e: NodeJS.ErrnoException) => reject(new Error(`admin_port: cannot listen on 127.0.0.1:${o.admin_port}: ${e.code}`)));
    admin.listen(o.admin_port, '127.0.0.1', () => resolve());
  });
  const adminUrl = `http://127.0.0.1:${(admin.address() as import('node:net').AddressInfo).port}`;

  const manifest: Manifest = {
    seed: o.seed,
    profile: profile.name,
    ca_file: caFile,
    tls_server_name: tls ? SIM_TLS_SERVER_NAME : null,
    admin_url: adminUrl,
    bmcs: Array.from({ length: o.bmcs }, (_, i) => ({
      index: i,
      name: `sim-${String(i).padStart(5, '0')}`,
      address: single ? `${scheme}://${single.host}:${single.port}` : `${scheme}://${bmcHost(i)}:${o.port}`,
      username: SIM_USERNAME,
      password: single ? bmcPassword(o.seed, 0) : bmcPassword(o.seed, i),
      system_id: systemId(o.seed, i),
      macs: [0, 1].map((nic) => simulatedMac(o.seed, i, nic)),
    })),
  };
  const manifestPath = path.resolve(o.manifest);
  writeFileSync(manifestPath, JSON.stringify(manifest, null, 1), { mode: 0o600 });

  let stopped: Promise<void> | undefined;
  return {
    ...fleet,
    manifest,
    manifestPath,
    adminUrl,
    profile,
    workers: nWorkers,
    startupMs: Date.now() - t0,
    stop() {
      stopped ??= (async () => {
        admin.close();
        await Promise.allSettled(workers.map((w) => Promise.race([call(w, { type: 'stop' }), new Promise((r) => setTimeout(r, 3000))])));
        // Give each worker a moment to exit on its own (its exit hook stops its VMs), then kill.
        await Promise.allSettled(workers.map((w) => (w.child.exitCode !== null ? undefined : Promise.race([new Promise((r) => w.child.once('exit', r)), new Promise((r) => setTimeout(r, 1000))]))));
        for (const w of workers) if (w.child.exitCode === null) w.child.kill('SIGKILL');
      })();
      return stopped;
    },
  };
}
