/**
 * A Redfish GET load generator (run as its own process by the benchmarks): one keep-alive HTTPS
 * connection per BMC, `inflight` requests in flight per BMC, authenticated with one session per
 * BMC (or Basic). Prints one JSON line with throughput and latency.
 *
 * `--hold 1`: the memory floor instead — one bare TLS socket (node:tls, one shared context) per
 * BMC, one GET of the service root on each, then all held idle: the RSS this process grew by per
 * socket is what a kept-alive TLS connection costs in Node with nothing around it.
 */
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { Client } from 'undici';

interface Target {
  address: string;
  username: string;
  password: string;
  system_id: string;
}

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i]!.replace(/^--/, ''), process.argv[i + 1]!);
const manifest = JSON.parse(readFileSync(args.get('manifest')!, 'utf8')) as { bmcs: Target[] };
const count = Number(args.get('bmcs') ?? manifest.bmcs.length);
const warmupS = Number(args.get('warmup') ?? 5);
const durationS = Number(args.get('duration') ?? 15);
const inflight = Number(args.get('inflight') ?? 1);
const auth = args.get('auth') ?? 'session';
const pathKind = args.get('path') ?? 'system';
const shard = Number(args.get('shard') ?? 0);
const shards = Number(args.get('shards') ?? 1);

const targets = manifest.bmcs.slice(0, count).filter((_, i) => i % shards === shard);

const rssKiB = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0);

async function hold(): Promise<void> {
  const ctx = tls.createSecureContext({});
  const sockets: tls.TLSSocket[] = [];
  const rss0 = rssKiB();
  let failed = 0;
  // 200 handshakes at a time: the simulator and this process share the machine's cores.
  for (let i = 0; i < targets.length; i += 200) {
    await Promise.all(
      targets.slice(i, i + 200).map(
        (t) =>
          new Promise<void>((resolve) => {
            const u = new URL(t.address);
            const s = tls.connect({ host: u.hostname, port: Number(u.port || 443), secureContext: ctx, rejectUnauthorized: false });
            const give = () => (failed++, resolve());
            s.once('error', give);
            s.once('secureConnect', () => s.write(`GET /redfish/v1/ HTTP/1.1\r\nHost: ${u.host}\r\n\r\n`));
            s.once('data', () => (s.removeListener('error', give), s.on('error', () => {}), sockets.push(s), resolve()));
          }),
      ),
    );
  }
  await new Promise((r) => setTimeout(r, 1000));
  const held = sockets.length;
  process.stdout.write(`${JSON.stringify({ sockets: held, failed, kib_per_socket: held ? Math.round(((rssKiB() - rss0) / held) * 10) / 10 : null })}\n`);
  for (const s of sockets) s.destroy();
  process.exit(0);
}

async function main() {
  if (args.get('hold') === '1') return hold();
  const clients = targets.map((t) => new Client(t.address, { connect: { rejectUnauthorized: false }, keepAliveTimeout: 120_000, pipelining: inflight, connections: 1 } as ConstructorParameters<typeof Client>[1]));
  const headers: Array<Record<string, string>> = [];
  let loginFailures = 0;
  await Promise.all(
    targets.map(async (t, i) => {
      if (auth === 'basic') {
        headers[i] = { authorization: `Basic ${Buffer.from(`${t.username}:${t.password}`).toString('base64')}` };
        return;
      }
      for (let attempt = 0; attempt < 5; attempt++) {
        try {
          const r = await clients[i]!.request({ method: 'POST', path: '/redfish/v1/SessionService/Sessions', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ UserName: t.username, Password: t.password }), headersTimeout: 20_000 });
          await r.body.dump();
          const tok = r.headers['x-auth-token'];
          if (r.statusCode === 201 && typeof tok === 'string') {
            headers[i] = { 'x-auth-token': tok };
            return;
          }
        } catch {
          /* flapping / storming BMC: try again */
        }
        await new Promise((res) => setTimeout(res, 500));
      }
      loginFailures++;
      headers[i] = {};
    }),
  );
  const paths = targets.map((t) => (pathKind === 'root' ? '/redfish/v1/' : `/redfish/v1/Systems/${t.system_id}`));
  let measuring = false;
  let stop = false;
  let ok = 0;
  let errors = 0;
  const lat: number[] = [];
  const loop = async (i: number) => {
    const c = clients[i]!;
    while (!stop) {
      const t0 = performance.now();
      try {
        const r = await c.request({ method: 'GET', path: paths[i]!, headers: headers[i]! });
        await r.body.dump();
        if (measuring) {
          if (r.statusCode === 200) {
            ok++;
            if (lat.length < 200_000) lat.push(performance.now() - t0);
          } else errors++;
        }
      } catch {
        if (measuring) errors++;
        await new Promise((res) => setTimeout(res, 100));
      }
    }
  };
  const loops = targets.flatMap((_, i) => Array.from({ length: inflight }, () => loop(i)));
  await new Promise((r) => setTimeout(r, warmupS * 1000));
  measuring = true;
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  await new Promise((r) => setTimeout(r, durationS * 1000));
  measuring = false;
  const cpu = process.cpuUsage(cpu0);
  const secs = (performance.now() - t0) / 1000;
  stop = true;
  await Promise.race([Promise.all(loops), new Promise((r) => setTimeout(r, 5000))]);
  lat.sort((a, b) => a - b);
  const q = (p: number) => (lat.length ? Math.round(lat[Math.min(lat.length - 1, Math.floor(p * lat.length))]! * 100) / 100 : 0);
  process.stdout.write(`${JSON.stringify({ bmcs: targets.length, ok, errors, login_failures: loginFailures, seconds: secs, rps: ok / secs, p50_ms: q(0.5), p99_ms: q(0.99), cpu_ms_per_request: ok ? (cpu.user + cpu.system) / 1000 / ok : null })}\n`);
  await Promise.all(clients.map((c) => c.destroy()));
  process.exit(0);
}
main().catch((err) => {
  console.error(err);
  process.exit(1);
});
