/**
 * The web console: its static files (built by `npm run build` into dist/console, served from this
 * process — no CDN, nothing fetched at run time), the fleet snapshot, the live event stream
 * (Server-Sent Events from the FleetFeed) and a node's live extras (agent progress, sensor
 * series). Everything else the console shows it reads from the ordinary /v1 API with the user's
 * own credentials, so the console can do nothing the API would not let that user do.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { InvalidInputError, IronfleetError } from '../../shared/errors.js';
import { FEED_DEFAULTS, FleetFeed } from '../console/fleet-feed.js';
import { SensorHistory } from '../console/sensor-history.js';
import { findNodeOr404, type ApiContext } from './context.js';

/** Paths of the console's shell: open under token auth (the page asks for the token), never data. */
export const CONSOLE_SHELL: ReadonlySet<string> = new Set(['/console', '/console/', '/console/app.js', '/console/app.css']);

const TYPES: Record<string, string> = { 'index.html': 'text/html; charset=utf-8', 'app.js': 'text/javascript; charset=utf-8', 'app.css': 'text/css; charset=utf-8' };

/** dist/console beside the compiled conductor, or the repo's dist/console when run from sources. */
function assetsDir(): string | undefined {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const candidates = [path.resolve(here, '../../console'), path.resolve(here, '../../dist/console')];
  return candidates.find((d) => existsSync(path.join(d, 'app.js')));
}

export function registerConsoleRoutes(app: FastifyInstance, ctx: ApiContext): FleetFeed {
  const { conductor } = ctx;
  const feed = new FleetFeed(
    {
      listNodes: () => conductor.store.listNodes(),
      agents: conductor.hub,
      bmc: () => conductor.bmc.pool,
      ownerOf: (n) => conductor.membership.ownerOf(n) ?? '(no conductor)',
      onRingChange: (fn) => conductor.membership.on('changed', fn),
    },
    { ...FEED_DEFAULTS, bytesPerSecond: conductor.cfg.api.console_stream_bytes_per_s },
  );
  const sensors = new SensorHistory();
  sensors.start();
  void feed.start().catch((err) => app.log.warn({ err }, 'console feed could not read the fleet; it retries on the first request'));
  app.addHook('preClose', async () => {
    feed.close();
    sensors.stop();
  });

  const dir = assetsDir();
  const files = new Map<string, Buffer>();
  const asset = (name: string): Buffer => {
    if (!dir) throw new IronfleetError('IRF_CONSOLE_NOT_BUILT', 'The console is not built: run `npm run build`', { httpStatus: 503 });
    let b = files.get(name);
    if (!b) files.set(name, (b = readFileSync(path.join(dir, name))));
    return b;
  };
  const serve = (name: string) => async (_req: unknown, reply: import('fastify').FastifyReply) =>
    reply
      .header('content-type', TYPES[name]!)
      .header('cache-control', 'no-cache')
      .header('x-content-type-options', 'nosniff')
      .header('content-security-policy', "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'")
      .send(asset(name));

  // ignoreTrailingSlash: /console is this route too (the shell's links are absolute).
  app.get('/console/', serve('index.html'));
  app.get('/console/app.js', serve('app.js'));
  app.get('/console/app.css', serve('app.css'));

  app.get('/console/api/fleet', async () => ({ conductor: conductor.cfg.host, ...(await feed.snapshot()) }));

  app.get<{ Querystring: { last_event_id?: string } }>('/console/api/events', async (req, reply) => {
    const header = req.headers['last-event-id'];
    const last = (typeof header === 'string' ? header : undefined) ?? req.query.last_event_id ?? null;
    if (last !== null && !/^[0-9a-z]{1,16}-\d{1,15}$/.test(last)) {
      throw new InvalidInputError('last_event_id: expected an event id such as "m3k2x1-42" as sent by this stream', 'last_event_id');
    }
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    res.socket?.setNoDelay(true);
    await feed.attach(
      {
        write: (chunk) => void res.write(chunk),
        buffered: () => res.writableLength,
        onClose: (fn) => res.once('close', fn),
        end: () => res.end(),
      },
      last,
    );
  });

  app.get<{ Params: { ident: string } }>('/console/api/nodes/:ident/live', async (req) => {
    const node = await findNodeOr404(conductor.store, req.params.ident);
    const p = feed.progressOf(node.id);
    return {
      uuid: node.uuid,
      agent_connected: conductor.hub.isConnected(node.id),
      progress: p ? { command: p.commandId, ...p.progress } : null,
      sensors: sensors.of(node.uuid),
    };
  });
  return feed;
}
