/**
 * Node sub-resources served beside the Ironic shapes: firmware (versions, out-of-band updates)
 * and the agent extension (stream status, commands with live progress, cancel). Changes go through
 * the conductor; reads come from the store and the agent hub's live progress.
 */
import type { FastifyInstance } from 'fastify';
import { findNodeOr404, parseInput, type ApiContext } from './context.js';
import { agentCommandBodySchema, firmwareUpdateBodySchema } from './schemas.js';
import type { AgentCommand } from '../db/store.js';
import { internalInfo } from '../internal-info.js';
import { ConflictError, NotFoundError } from '../../shared/errors.js';
import { scrubSecrets } from '../../shared/redact.js';

type IdParams = { Params: { ident: string } };

export function commandView(c: AgentCommand, live?: Record<string, unknown>): Record<string, unknown> {
  return {
    id: c.id,
    command_name: c.name,
    command_params: scrubSecrets(c.params),
    command_status: c.status,
    command_result: scrubSecrets(c.result),
    command_error: scrubSecrets(c.error),
    progress: live ?? c.progress,
    created_at: c.created_at,
    updated_at: c.updated_at,
  };
}

export function registerNodeAgentRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const { conductor } = ctx;
  const store = conductor.store;
  const getNode = (ident: string) => findNodeOr404(store, ident);

  // ---------------------------------------------------------------- firmware

  app.get<IdParams>('/v1/nodes/:ident/firmware', async (req) => {
    const node = await getNode(req.params.ident);
    const { firmware_versions: v, firmware_update: inflight } = internalInfo(node);
    return {
      firmware: (['bios', 'bmc'] as const).map((component) => ({
        component,
        current_version: v?.[component] ?? null,
        last_version_flashed: v?.last_version_flashed?.component === component ? (v[component] ?? null) : null,
        updated_at: v?.updated_at ?? null,
        update_in_progress: inflight?.component === component,
      })),
    };
  });

  app.post<IdParams>('/v1/nodes/:ident/firmware/update', async (req, reply) => {
    const body = parseInput(firmwareUpdateBodySchema, req.body, 'firmware');
    const node = await getNode(req.params.ident);
    await conductor.firmwareUpdate(node, body.image_url, body.component);
    reply.status(202).header('Location', `${ctx.baseUrl(req)}/v1/nodes/${node.uuid}/firmware`);
    return reply.send();
  });

  // ---------------------------------------------------------------- agent (ironfleet extension)

  app.get<IdParams>('/v1/nodes/:ident/agent', async (req) => {
    const node = await getNode(req.params.ident);
    const s = conductor.hub.session(node.id);
    return {
      connected: Boolean(s),
      boot_id: s?.bootId ?? node.agent_boot_id,
      agent_version: s?.agentVersion ?? null,
      busy_command_id: s?.busyCommandId || null,
      last_seen: s ? new Date(s.lastSeen).toISOString() : node.agent_last_seen,
    };
  });

  app.post<IdParams>('/v1/nodes/:ident/agent/commands', async (req, reply) => {
    const body = parseInput(agentCommandBodySchema, req.body, 'command');
    const node = await getNode(req.params.ident);
    const cmd = await conductor.runAgentCommand(node, body.name, body.params ?? {});
    reply.status(202).header('Location', `${ctx.baseUrl(req)}/v1/nodes/${node.uuid}/agent/commands/${cmd.id}`);
    return commandView(cmd);
  });

  app.get<IdParams>('/v1/nodes/:ident/agent/commands', async (req) => {
    const node = await getNode(req.params.ident);
    const cmds = await store.listCommands(node.id);
    return { commands: cmds.map((c) => commandView(c, conductor.hub.progress.get(c.id))) };
  });

  app.get<{ Params: { ident: string; cid: string } }>('/v1/nodes/:ident/agent/commands/:cid', async (req) => {
    const node = await getNode(req.params.ident);
    const c = await store.getCommand(req.params.cid);
    if (!c || c.node_id !== node.id) throw new NotFoundError('Agent command', req.params.cid);
    return commandView(c, conductor.hub.progress.get(c.id));
  });

  app.delete<{ Params: { ident: string; cid: string } }>('/v1/nodes/:ident/agent/commands/:cid', async (req, reply) => {
    const node = await getNode(req.params.ident);
    const c = await store.getCommand(req.params.cid);
    if (!c || c.node_id !== node.id) throw new NotFoundError('Agent command', req.params.cid);
    if (c.status !== 'PENDING' && c.status !== 'RUNNING') throw new ConflictError(`Agent command ${c.id} already finished (${c.status}).`);
    if (!conductor.hub.cancelCommand(node.id, c.id, 'cancelled through the API')) throw new ConflictError(`No agent is connected for node ${node.uuid}.`);
    return reply.status(202).send();
  });
}
