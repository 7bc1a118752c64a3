/** /v1/nodes and its sub-resources. */
import { internalInfo } from '../internal-info.js';
import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { findNodeOr404, parseInput, type ApiContext } from './context.js';
import {
  NODE_PATCHABLE,
  agentCommandBodySchema,
  firmwareUpdateBodySchema,
  listQuerySchema,
  maintenanceBodySchema,
  raidConfigBodySchema,
  nodeCreateSchema,
  nodePatchableSchema,
  powerBodySchema,
  provisionBodySchema,
} from './schemas.js';
import { applyPatch, patchSchema } from './json-patch.js';
import { NODE_LIST_DEFAULT_FIELDS, historyView, nodeView, selectFields, portView } from './views.js';
import type { Node } from '../db/store.js';
import { InvalidInputError, NotFoundError } from '../../shared/errors.js';
import { isProvisionState } from '../states.js';

type IdParams = { Params: { ident: string } };

export function registerNodeRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const { conductor } = ctx;
  const store = conductor.store;

  const getNode = (ident: string) => findNodeOr404(store, ident);

  function view(n: Node, req: FastifyRequest): Record<string, unknown> {
    const hw = conductor.drivers.has(n.driver) ? conductor.drivers.get(n.driver) : undefined;
    return nodeView(n, ctx.baseUrl(req), hw, conductor.membership.ownerOf(n) ?? null, { connected: conductor.hub.isConnected(n.id) });
  }

  function parseFields(raw: string | undefined): string[] | undefined {
    if (!raw) return undefined;
    const fields = raw.split(',').map((f) => f.trim()).filter(Boolean);
    return fields;
  }

  async function listNodes(req: FastifyRequest, detail: boolean) {
    const q = parseInput(listQuerySchema, req.query ?? {}, 'query');
    const fields = parseFields(q.fields);
    if (fields && (detail || q.detail)) throw new InvalidInputError('Can not specify ?detail=True and fields in the same request.', 'fields');
    if (fields) {
      const sample = view({ ...(await emptyNodeProbe()) }, req);
      const bad = fields.filter((f) => !Object.hasOwn(sample, f));
      if (bad.length) throw new InvalidInputError(`Field(s) "${bad.join(', ')}" are not valid`, 'fields');
    }
    if (q.provision_state !== undefined && !isProvisionState(q.provision_state)) {
      throw new InvalidInputError(`Invalid input for field/attribute provision_state: "${q.provision_state}" is not a provision state`, 'provision_state');
    }
    let markerId: number | undefined;
    if (q.marker) {
      const m = await store.getNodeByUuid(q.marker);
      if (!m) throw new InvalidInputError(`marker: node ${q.marker} could not be found`, 'marker');
      markerId = m.id;
    }
    const limit = q.limit ?? 1000;
    const nodes = await store.listNodes({
      limit,
      markerId,
      sortKey: q.sort_key,
      sortDir: q.sort_dir,
      provisionState: q.provision_state,
      maintenance: q.maintenance,
      associated: q.associated,
      driver: q.driver,
      conductorGroup: q.conductor_group,
    });
    const wanted = detail || q.detail ? undefined : (fields ?? NODE_LIST_DEFAULT_FIELDS);
    const body: Record<string, unknown> = { nodes: nodes.map((n) => selectFields(view(n, req), wanted)) };
    if (nodes.length === limit) {
      const params = new URLSearchParams();
      for (const [k, v] of Object.entries(req.query as Record<string, string>)) if (k !== 'marker') params.set(k, String(v));
      params.set('limit', String(limit));
      params.set('marker', nodes[nodes.length - 1]!.uuid);
      body.next = `${ctx.baseUrl(req)}/v1/nodes${detail ? '/detail' : ''}?${params}`;
    }
    return body;
  }

  // A node-shaped object only to know the set of valid field names.
  async function emptyNodeProbe(): Promise<Node> {
    return {
      id: 0, uuid: '', name: null, driver: '', driver_info: {}, properties: {}, instance_info: {}, driver_internal_info: {}, extra: {},
      instance_uuid: null, resource_class: null, provision_state: 'enroll', target_provision_state: null, power_state: null,
      target_power_state: null, maintenance: false, maintenance_reason: null, fault: null, last_error: null, reservation: null,
      conductor_group: '', health: null, agent_token_hash: null, agent_boot_id: null, agent_last_seen: null, provision_updated_at: null,
      created_at: '', updated_at: null,
    };
  }

  app.get('/v1/nodes', (req) => listNodes(req, false));
  app.get('/v1/nodes/detail', (req) => listNodes(req, true));

  app.post('/v1/nodes', async (req, reply) => {
    const body = parseInput(nodeCreateSchema, req.body, 'node');
    req.log.debug({ node: body }, 'node create request');
    const node = await conductor.createNode(
      {
        uuid: body.uuid ?? randomUUID(),
        name: body.name ?? null,
        driver: body.driver,
        driver_info: body.driver_info ?? {},
        properties: body.properties ?? {},
        extra: body.extra ?? {},
        instance_info: body.instance_info ?? {},
        resource_class: body.resource_class ?? null,
        conductor_group: body.conductor_group ?? conductor.cfg.conductor_group,
        provision_state: 'enroll',
      },
      req.user,
    );
    reply.status(201).header('Location', `${ctx.baseUrl(req)}/v1/nodes/${node.uuid}`);
    return view(node, req);
  });

  app.get<IdParams & { Querystring: { fields?: string } }>('/v1/nodes/:ident', async (req) => {
    const node = await getNode(req.params.ident);
    const v = view(node, req);
    const fields = parseFields(req.query.fields);
    const bad = fields?.filter((f) => !Object.hasOwn(v, f)) ?? [];
    if (bad.length) throw new InvalidInputError(`Field(s) "${bad.join(', ')}" are not valid`, 'fields');
    return selectFields(v, fields);
  });

  app.patch<IdParams>('/v1/nodes/:ident', async (req) => {
    const ops = parseInput(patchSchema, req.body, 'patch');
    const node = await getNode(req.params.ident);
    const current = {
      name: node.name,
      driver: node.driver,
      driver_info: node.driver_info,
      properties: node.properties,
      extra: node.extra,
      instance_info: node.instance_info,
      instance_uuid: node.instance_uuid,
      resource_class: node.resource_class,
      conductor_group: node.conductor_group,
    };
    const patched = parseInput(nodePatchableSchema, applyPatch(current, ops, NODE_PATCHABLE), 'node');
    const updated = await conductor.updateNode(node, patched, ops.map((o) => o.path).join(', '), req.user);
    return view(updated, req);
  });

  app.delete<IdParams>('/v1/nodes/:ident', async (req, reply) => {
    const node = await getNode(req.params.ident);
    await conductor.deleteNode(node);
    return reply.status(204).send();
  });

  // ---------------------------------------------------------------- states

  app.get<IdParams>('/v1/nodes/:ident/states', async (req) => {
    const n = await getNode(req.params.ident);
    return {
      power_state: n.power_state,
      target_power_state: n.target_power_state,
      provision_state: n.provision_state,
      target_provision_state: n.target_provision_state,
      provision_updated_at: n.provision_updated_at,
      last_error: n.last_error,
      console_enabled: false,
      raid_config: n.driver_internal_info.raid_config ?? {},
      target_raid_config: n.driver_internal_info.target_raid_config ?? {},
      links: [],
    };
  });

  // Ironic: PUT /v1/nodes/{node}/states/raid sets target_raid_config (software RAID here).
  app.put<IdParams>('/v1/nodes/:ident/states/raid', async (req, reply) => {
    const node = await getNode(req.params.ident);
    const body = parseInput(raidConfigBodySchema, req.body === undefined ? {} : req.body, 'target_raid_config');
    await conductor.setTargetRaidConfig(node, body);
    return reply.status(204).send();
  });

  // Extension: the steps a node would run (GET /v1/nodes/{node}/steps?kind=deploy|clean).
  app.get<IdParams & { Querystring: { kind?: string } }>('/v1/nodes/:ident/steps', async (req) => {
    const node = await getNode(req.params.ident);
    const kind = req.query.kind ?? 'deploy';
    if (kind !== 'deploy' && kind !== 'clean') throw new InvalidInputError(`kind: must be "deploy" or "clean", got "${kind}"`, 'kind');
    const p = conductor.previewSteps(node, kind);
    const flow = internalInfo(node).flow;
    return {
      kind,
      steps: p.steps.map(({ runner: _r, ...s }) => s),
      complete: p.complete,
      ...(p.complete ? {} : { note: `the agent's own ${kind} steps are known after its first get_${kind}_steps` }),
      running: flow ? { kind: flow.kind, index: flow.index, steps: flow.steps } : null,
    };
  });

  app.put<IdParams>('/v1/nodes/:ident/states/power', async (req, reply) => {
    const body = parseInput(powerBodySchema, req.body, 'power');
    const node = await getNode(req.params.ident);
    await conductor.setPowerState(node, body.target, body.timeout);
    reply.status(202).header('Location', `${ctx.baseUrl(req)}/v1/nodes/${node.uuid}/states`);
    return reply.send();
  });

  app.put<IdParams>('/v1/nodes/:ident/states/provision', async (req, reply) => {
    const body = parseInput(provisionBodySchema, req.body, 'provision');
    // Accepted by Ironic's API but not carried out here yet: refused, never silently ignored — an
    // operator must not believe a config drive was written when it was not.
    for (const f of ['configdrive', 'rescue_password', 'disable_ramdisk'] as const) {
      if (body[f] !== undefined) throw new InvalidInputError(`${f}: not supported by this conductor yet; the request was refused rather than run without it`, f);
    }
    if (body.target === 'rescue' || body.target === 'unrescue') {
      throw new InvalidInputError(`target: "${body.target}" is not supported by this conductor yet (no rescue interface)`, 'target');
    }
    const stepsFor: Record<'clean_steps' | 'deploy_steps' | 'service_steps', string[]> = { clean_steps: ['clean'], deploy_steps: ['active', 'deploy', 'rebuild'], service_steps: ['service'] };
    for (const [f, targets] of Object.entries(stepsFor) as Array<[keyof typeof stepsFor, string[]]>) {
      if (body[f] !== undefined && !targets.includes(body.target)) throw new InvalidInputError(`${f}: only valid with target ${targets.map((t) => `"${t}"`).join(' or ')}, not "${body.target}"`, f);
    }
    const node = await getNode(req.params.ident);
    if (body.target === 'clean' && body.clean_steps === undefined) {
      throw new InvalidInputError('clean_steps: required when target is "clean"', 'clean_steps');
    }
    await conductor.doProvisionAction(node, body.target, { clean_steps: body.clean_steps, deploy_steps: body.deploy_steps, service_steps: body.service_steps });
    reply.status(202).header('Location', `${ctx.baseUrl(req)}/v1/nodes/${node.uuid}/states`);
    return reply.send();
  });

  app.put<IdParams>('/v1/nodes/:ident/maintenance', async (req, reply) => {
    const body = parseInput(maintenanceBodySchema, req.body === undefined ? {} : req.body, 'maintenance');
    const node = await getNode(req.params.ident);
    await conductor.setMaintenance(node, body.reason ?? null, req.user);
    return reply.status(202).send();
  });

  app.delete<IdParams>('/v1/nodes/:ident/maintenance', async (req, reply) => {
    const node = await getNode(req.params.ident);
    await conductor.setMaintenance(node, false, req.user);
    return reply.status(202).send();
  });

  // ---------------------------------------------------------------- inventory / history / ports

  app.get<IdParams>('/v1/nodes/:ident/inventory', async (req) => {
    const node = await getNode(req.params.ident);
    const inv = await store.getInventory(node.id);
    if (!inv) throw new NotFoundError('Inventory for node', node.uuid);
    return inv;
  });

  app.get<IdParams & { Querystring: { detail?: string; limit?: string; marker?: string } }>('/v1/nodes/:ident/history', async (req) => {
    const q = parseInput(listQuerySchema, req.query ?? {}, 'query');
    const node = await getNode(req.params.ident);
    let markerId: number | undefined;
    if (q.marker) {
      const m = await store.getHistoryEvent(node.id, q.marker);
      if (!m) throw new InvalidInputError(`marker: event ${q.marker} could not be found`, 'marker');
      markerId = m.id;
    }
    const events = await store.listHistory(node.id, { limit: q.limit, markerId });
    return { history: events.map((e) => historyView(e, node.uuid, ctx.baseUrl(req), Boolean(q.detail))) };
  });

  app.get<{ Params: { ident: string; event: string } }>('/v1/nodes/:ident/history/:event', async (req) => {
    const node = await getNode(req.params.ident);
    const e = await store.getHistoryEvent(node.id, req.params.event);
    if (!e) throw new NotFoundError('Node history event', req.params.event);
    return historyView(e, node.uuid, ctx.baseUrl(req), true);
  });

  app.get<IdParams>('/v1/nodes/:ident/ports', async (req) => {
    const q = parseInput(listQuerySchema, req.query ?? {}, 'query');
    const node = await getNode(req.params.ident);
    const ports = await store.listPorts({ nodeId: node.id });
    const detail = Boolean(q.detail);
    return { ports: ports.map((p) => selectFields(portView(p, node.uuid, ctx.baseUrl(req)), detail ? undefined : ['uuid', 'address', 'links'])) };
  });

  app.get<IdParams>('/v1/nodes/:ident/validate', async (req) => {
    const node = await getNode(req.params.ident);
    const hw = conductor.drivers.get(node.driver);
    const out: Record<string, { result: boolean; reason: string | null }> = {};
    for (const iface of ['power', 'management', 'deploy', 'boot', 'raid', 'inspect'] as const) {
      try {
        hw[iface].validate(node);
        out[iface] = { result: true, reason: null };
      } catch (err) {
        out[iface] = { result: false, reason: (err as Error).message };
      }
    }
    return out;
  });
}
