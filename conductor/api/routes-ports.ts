/** /v1/ports */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { parseInput, type ApiContext } from './context.js';
import { PORT_PATCHABLE, listQuerySchema, macAddress, portCreateSchema, portPatchableSchema } from './schemas.js';
import { applyPatch, patchSchema } from './json-patch.js';
import { portView, selectFields } from './views.js';
import { InvalidInputError, NotFoundError } from '../../shared/errors.js';
import type { Port } from '../db/store.js';

const PORT_LIST_DEFAULT_FIELDS = ['uuid', 'address', 'links'];

export function registerPortRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const store = ctx.conductor.store;
  const nodeUuidCache = new Map<number, string>();

  async function nodeUuid(id: number): Promise<string> {
    let u = nodeUuidCache.get(id);
    if (!u) {
      u = (await store.getNodeById(id))?.uuid ?? '';
      nodeUuidCache.set(id, u);
    }
    return u;
  }

  async function view(p: Port, req: FastifyRequest) {
    return portView(p, await nodeUuid(p.node_id), ctx.baseUrl(req));
  }

  async function getPort(uuid: string): Promise<Port> {
    const p = await store.getPort(uuid);
    if (!p) throw new NotFoundError('Port', uuid);
    return p;
  }

  async function list(req: FastifyRequest, detail: boolean) {
    const q = parseInput(listQuerySchema, req.query ?? {}, 'query');
    let nodeId: number | undefined;
    const nodeIdent = q.node ?? q.node_uuid;
    if (nodeIdent) {
      const n = await store.findNode(nodeIdent);
      if (!n) throw new NotFoundError('Node', nodeIdent);
      nodeId = n.id;
    }
    let address: string | undefined;
    if (q.address) address = parseInput(macAddress, q.address, 'address');
    let markerId: number | undefined;
    if (q.marker) {
      const m = await store.getPort(q.marker);
      if (!m) throw new InvalidInputError(`marker: port ${q.marker} could not be found`, 'marker');
      markerId = m.id;
    }
    const limit = q.limit ?? 1000;
    const ports = await store.listPorts({ nodeId, address, limit, markerId });
    const fields = q.fields ? q.fields.split(',').map((s) => s.trim()).filter(Boolean) : undefined;
    if (fields && (detail || q.detail)) throw new InvalidInputError('Can not specify ?detail=True and fields in the same request.', 'fields');
    if (fields) {
      const known = new Set(Object.keys(portView({ uuid: '', address: '', node_id: 0, extra: {}, pxe_enabled: true, local_link_connection: {}, physical_network: null, created_at: '', updated_at: null } as unknown as Port, '', '')));
      const bad = fields.filter((f) => !known.has(f));
      if (bad.length) throw new InvalidInputError(`Field(s) "${bad.slice(0, 10).join(', ')}" are not valid`, 'fields');
    }
    const wanted = detail || q.detail ? undefined : (fields ?? PORT_LIST_DEFAULT_FIELDS);
    const out = [];
    for (const p of ports) out.push(selectFields(await view(p, req), wanted));
    const body: Record<string, unknown> = { ports: out };
    if (ports.length === limit) body.next = `${ctx.baseUrl(req)}/v1/ports${detail ? '/detail' : ''}?limit=${limit}&marker=${ports[ports.length - 1]!.uuid}`;
    return body;
  }

  app.get('/v1/ports', (req) => list(req, false));
  app.get('/v1/ports/detail', (req) => list(req, true));

  app.post('/v1/ports', async (req, reply) => {
    const body = parseInput(portCreateSchema, req.body, 'port');
    const node = await store.findNode(body.node_uuid);
    if (!node) throw new InvalidInputError(`node_uuid: node ${body.node_uuid} could not be found`, 'node_uuid');
    const port = await store.createPort({ ...body, node_id: node.id });
    await ctx.conductor.history(node, `Port ${port.address} created`, 'update', 'INFO', req.user);
    reply.status(201).header('Location', `${ctx.baseUrl(req)}/v1/ports/${port.uuid}`);
    return view(port, req);
  });

  app.get<{ Params: { uuid: string } }>('/v1/ports/:uuid', async (req) => view(await getPort(req.params.uuid), req));

  app.patch<{ Params: { uuid: string } }>('/v1/ports/:uuid', async (req) => {
    const ops = parseInput(patchSchema, req.body, 'patch');
    const port = await getPort(req.params.uuid);
    const current = {
      address: port.address,
      node_uuid: await nodeUuid(port.node_id),
      extra: port.extra,
      pxe_enabled: port.pxe_enabled,
      local_link_connection: port.local_link_connection,
      physical_network: port.physical_network,
    };
    const patched = parseInput(portPatchableSchema, applyPatch(current, ops, PORT_PATCHABLE), 'port');
    const node = await store.findNode(patched.node_uuid);
    if (!node) throw new InvalidInputError(`node_uuid: node ${patched.node_uuid} could not be found`, 'node_uuid');
    await store.updatePort(port.id, { ...patched, node_id: node.id });
    return view((await store.getPort(port.uuid))!, req);
  });

  app.delete<{ Params: { uuid: string } }>('/v1/ports/:uuid', async (req, reply) => {
    const port = await getPort(req.params.uuid);
    await store.deletePort(port.id);
    return reply.status(204).send();
  });
}
