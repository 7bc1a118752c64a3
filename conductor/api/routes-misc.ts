/** Version discovery, drivers, conductors, OpenAPI, Prometheus metrics. */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { ApiContext } from './context.js';
import { MAX_VERSION, MIN_VERSION, fmt } from './versions.js';
import { links } from './views.js';
import type { ConductorRecord } from '../db/cluster-store.js';
import { NotFoundError } from '../../shared/errors.js';
import {
  agentCommandBodySchema,
  firmwareUpdateBodySchema,
  maintenanceBodySchema,
  raidConfigBodySchema,
  nodeCreateSchema,
  portCreateSchema,
  powerBodySchema,
  provisionBodySchema,
} from './schemas.js';
import { patchSchema } from './json-patch.js';

function versionDoc(base: string) {
  return {
    id: 'v1',
    links: [{ href: `${base}/v1/`, rel: 'self' }],
    status: 'CURRENT',
    min_version: fmt(MIN_VERSION),
    version: fmt(MAX_VERSION),
  };
}

export function buildOpenApi(base: string): Record<string, unknown> {
  const body = (schema: z.ZodType) => ({ required: true, content: { 'application/json': { schema: z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) } } });
  const ok = (d: string) => ({ description: d });
  const errors = { '400': ok('Invalid input (error_message names the field)'), '404': ok('Not found'), '409': ok('Conflict / node locked') };
  const node = { name: 'ident', in: 'path', required: true, description: 'Node UUID or name', schema: { type: 'string' } };
  return {
    openapi: '3.1.0',
    info: { title: 'ironfleet bare metal API (Ironic v1 compatible)', version: fmt(MAX_VERSION) },
    servers: [{ url: base }],
    paths: {
      '/': { get: { summary: 'Version discovery', responses: { '200': ok('Versions') } } },
      '/v1': { get: { summary: 'v1 resources', responses: { '200': ok('Resource links') } } },
      '/v1/nodes': {
        get: { summary: 'List nodes', responses: { '200': ok('Nodes') } },
        post: { summary: 'Create a node', requestBody: body(nodeCreateSchema), responses: { '201': ok('Created'), ...errors } },
      },
      '/v1/nodes/detail': { get: { summary: 'List nodes with all fields', responses: { '200': ok('Nodes') } } },
      '/v1/nodes/{ident}': {
        parameters: [node],
        get: { summary: 'Show a node', responses: { '200': ok('Node'), ...errors } },
        patch: { summary: 'Update a node (JSON patch)', requestBody: body(patchSchema), responses: { '200': ok('Node'), ...errors } },
        delete: { summary: 'Delete a node', responses: { '204': ok('Deleted'), ...errors } },
      },
      '/v1/nodes/{ident}/states': { parameters: [node], get: { summary: 'Node states', responses: { '200': ok('States') } } },
      '/v1/nodes/{ident}/states/power': {
        parameters: [node],
        put: { summary: 'Change power state', requestBody: body(powerBodySchema), responses: { '202': ok('Accepted'), ...errors } },
      },
      '/v1/nodes/{ident}/states/provision': {
        parameters: [node],
        put: { summary: 'Provision state transition', requestBody: body(provisionBodySchema), responses: { '202': ok('Accepted'), ...errors } },
      },
      '/v1/nodes/{ident}/maintenance': {
        parameters: [node],
        put: { summary: 'Set maintenance', requestBody: body(maintenanceBodySchema), responses: { '202': ok('Accepted') } },
        delete: { summary: 'Clear maintenance', responses: { '202': ok('Accepted') } },
      },
      '/v1/nodes/{ident}/states/raid': {
        parameters: [node],
        put: { summary: 'Set target_raid_config (software RAID)', requestBody: body(raidConfigBodySchema), responses: { '204': ok('Set'), ...errors } },
      },
      '/v1/nodes/{ident}/steps': { parameters: [node], get: { summary: 'Steps a deploy/clean would run (ironfleet extension)', responses: { '200': ok('Steps'), ...errors } } },
      '/v1/nodes/{ident}/history/{event}': {
        parameters: [node, { name: 'event', in: 'path', required: true, schema: { type: 'string' } }],
        get: { summary: 'One node history event', responses: { '200': ok('Event'), ...errors } },
      },
      '/v1/nodes/{ident}/agent/commands/{cid}': {
        parameters: [node, { name: 'cid', in: 'path', required: true, schema: { type: 'string' } }],
        get: { summary: 'One agent command (ironfleet extension)', responses: { '200': ok('Command'), ...errors } },
        delete: { summary: 'Cancel a running agent command (ironfleet extension)', responses: { '202': ok('Accepted'), ...errors } },
      },
      '/v1/nodes/{ident}/inventory': { parameters: [node], get: { summary: 'Hardware inventory (IPA schema)', responses: { '200': ok('Inventory'), ...errors } } },
      '/v1/nodes/{ident}/history': { parameters: [node], get: { summary: 'Node history events', responses: { '200': ok('History') } } },
      '/v1/nodes/{ident}/ports': { parameters: [node], get: { summary: 'Ports of a node', responses: { '200': ok('Ports') } } },
      '/v1/nodes/{ident}/validate': { parameters: [node], get: { summary: 'Validate driver interfaces', responses: { '200': ok('Per-interface result') } } },
      '/v1/nodes/{ident}/firmware': { parameters: [node], get: { summary: 'Firmware components and versions', responses: { '200': ok('Firmware') } } },
      '/v1/nodes/{ident}/firmware/update': {
        parameters: [node],
        post: { summary: 'Out-of-band firmware update via Redfish SimpleUpdate (ironfleet extension)', requestBody: body(firmwareUpdateBodySchema), responses: { '202': ok('Accepted'), ...errors } },
      },
      '/v1/nodes/{ident}/agent': { parameters: [node], get: { summary: 'Agent connection (ironfleet extension)', responses: { '200': ok('Agent') } } },
      '/v1/nodes/{ident}/agent/commands': {
        parameters: [node],
        get: { summary: 'Agent commands of a node (ironfleet extension)', responses: { '200': ok('Commands') } },
        post: { summary: 'Run an agent command (ironfleet extension)', requestBody: body(agentCommandBodySchema), responses: { '202': ok('Accepted'), ...errors } },
      },
      '/v1/ports': {
        get: { summary: 'List ports', responses: { '200': ok('Ports') } },
        post: { summary: 'Create a port', requestBody: body(portCreateSchema), responses: { '201': ok('Created'), ...errors } },
      },
      '/v1/ports/{uuid}': {
        get: { summary: 'Show a port', responses: { '200': ok('Port') } },
        patch: { summary: 'Update a port', requestBody: body(patchSchema), responses: { '200': ok('Port') } },
        delete: { summary: 'Delete a port', responses: { '204': ok('Deleted') } },
      },
      '/v1/ports/detail': { get: { summary: 'List ports with all fields', responses: { '200': ok('Ports') } } },
      '/v1/drivers': { get: { summary: 'Enabled drivers', responses: { '200': ok('Drivers') } } },
      '/v1/drivers/{name}': { parameters: [{ name: 'name', in: 'path', required: true, schema: { type: 'string' } }], get: { summary: 'One driver', responses: { '200': ok('Driver'), ...errors } } },
      '/v1/drivers/{name}/properties': { parameters: [{ name: 'name', in: 'path', required: true, schema: { type: 'string' } }], get: { summary: 'Driver properties', responses: { '200': ok('Properties'), ...errors } } },
      '/v1/openapi.json': { get: { summary: 'This document', responses: { '200': ok('OpenAPI 3.1') } } },
      '/v1/conductors': { get: { summary: 'Every conductor sharing the database, alive or not', responses: { '200': ok('Conductors') } } },
      '/v1/conductors/{hostname}': { parameters: [{ name: 'hostname', in: 'path', required: true, schema: { type: 'string' } }], get: { summary: 'One conductor', responses: { '200': ok('Conductor'), ...errors } } },
      '/metrics': { get: { summary: 'Prometheus metrics', responses: { '200': ok('text/plain exposition') } } },
      '/console/': { get: { summary: 'The web console (its page)', responses: { '200': ok('text/html') } } },
      '/console/api/fleet': { get: { summary: 'Console: every node as a row tuple, panel history, and the event id to stream from', responses: { '200': ok('Fleet snapshot') } } },
      '/console/api/events': {
        get: {
          summary: 'Console: live changes (Server-Sent Events), resumed from Last-Event-ID or last_event_id',
          parameters: [{ name: 'last_event_id', in: 'query', required: false, schema: { type: 'string' } }],
          responses: { '200': ok('text/event-stream'), ...errors },
        },
      },
      '/console/api/nodes/{ident}/live': { parameters: [{ name: 'ident', in: 'path', required: true, schema: { type: 'string' } }], get: { summary: "Console: a node's agent progress and sensor series", responses: { '200': ok('Live extras'), ...errors } } },
    },
  };
}

export function registerMiscRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const { conductor } = ctx;
  const base = (req: FastifyRequest) => ctx.baseUrl(req);

  app.get('/', async (req) => ({
    name: 'OpenStack Ironic API',
    description: 'ironfleet: bare metal provisioning for large fleets (Ironic v1 compatible API).',
    default_version: versionDoc(base(req)),
    versions: [versionDoc(base(req))],
  }));

  app.get('/v1', async (req) => {
    const b = base(req);
    const res = (name: string) => [
      { href: `${b}/v1/${name}/`, rel: 'self' },
      { href: `${b}/${name}/`, rel: 'bookmark' },
    ];
    return {
      id: 'v1',
      links: [{ href: `${b}/v1/`, rel: 'self' }],
      'media_types': [{ base: 'application/json', type: 'application/vnd.openstack.ironic.v1+json' }],
      nodes: res('nodes'),
      ports: res('ports'),
      drivers: res('drivers'),
      conductors: res('conductors'),
      version: versionDoc(b),
    };
  });

  app.get('/v1/openapi.json', async (req) => buildOpenApi(base(req)));

  const driverView = (name: string, req: FastifyRequest) => ({
    name,
    hosts: [conductor.cfg.host],
    type: 'dynamic',
    links: links(base(req), 'drivers', name),
    properties: links(base(req), `drivers/${name}`, 'properties'),
  });
  app.get('/v1/drivers', async (req) => ({ drivers: conductor.drivers.names().map((n) => driverView(n, req)) }));
  app.get<{ Params: { name: string } }>('/v1/drivers/:name', async (req) => {
    if (!conductor.drivers.has(req.params.name)) throw new NotFoundError('Driver', req.params.name);
    return driverView(req.params.name, req);
  });
  app.get<{ Params: { name: string } }>('/v1/drivers/:name/properties', async (req) => {
    if (!conductor.drivers.has(req.params.name)) throw new NotFoundError('Driver', req.params.name);
    return conductor.drivers.get(req.params.name).properties;
  });

  // Every conductor sharing the database (Ironic's shape; alive = heartbeat within the timeout, on
  // the database's clock), plus this project's state/addresses/version.
  const conductorView = (r: ConductorRecord, req: FastifyRequest) => ({
    hostname: r.hostname,
    conductor_group: r.conductor_group,
    alive: conductor.membership.isAlive(r),
    state: r.state,
    drivers: conductor.drivers.names(),
    version: r.version,
    api_url: r.api_url,
    agent_address: r.agent_address,
    created_at: r.started_at,
    updated_at: new Date(Date.now() - r.age_ms).toISOString(),
    links: links(base(req), 'conductors', r.hostname),
  });
  app.get('/v1/conductors', async (req) => {
    await conductor.membership.tick();
    return { conductors: conductor.membership.members().map((r) => conductorView(r, req)) };
  });
  app.get<{ Params: { hostname: string } }>('/v1/conductors/:hostname', async (req) => {
    await conductor.membership.tick();
    const r = conductor.membership.record(req.params.hostname);
    if (!r) throw new NotFoundError('Conductor', req.params.hostname);
    return conductorView(r, req);
  });

  app.get('/metrics', async (_req, reply) => {
    reply.header('content-type', ctx.metrics.registry.contentType);
    return ctx.metrics.registry.metrics();
  });
}
