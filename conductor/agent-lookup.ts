/**
 * Agent lookup (Ironic's /v1/lookup, on the stream's Hello): validate the Hello, find the node by
 * MAC, apply the lookup rules of its provision state (states.ts: issue / reconnect-only / refuse),
 * refuse a boot a power action retired, then check the token this boot holds — or issue the
 * boot's first one. Refusals end the stream with a precise gRPC status; nothing is registered.
 */
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { Hello } from '../shared/gen/ironfleet/agent/v1/agent.js';
import { AGENT_TOKEN_METADATA } from '../shared/commands.js';
import { normaliseMac } from '../shared/inventory.js';
import { errorMessage } from '../shared/errors.js';
import type { Node, Store } from './db/store.js';
import type { ConductorConfig } from './config.js';
import { agentTokenMatches, hashAgentToken, newAgentToken } from './agent-token.js';
import { agentLookupVerdict } from './states.js';
import { internalInfo } from './internal-info.js';
import { grpcError, validateHello, type ServerStream } from './agent-session.js';

export interface LookupDeps {
  store: Store;
  cfg: ConductorConfig;
  log: Logger;
  /** Several conductors: the agent endpoint of the node's owner when that is not this conductor. */
  redirect?(node: Node): string | undefined;
}

/** The node this Hello belongs to and the token issued now ('' when the agent presented its own), or undefined (refused). */
export async function lookupAgent(d: LookupDeps, call: ServerStream, hello: Hello, peer: string): Promise<{ node: Node; issued: string; redirect?: string } | undefined> {
  const bad = validateHello(hello);
  if (bad) {
    d.log.warn({ peer, reason: bad }, 'agent hello rejected');
    call.emit('error', grpcError(grpc.status.INVALID_ARGUMENT, bad));
    return undefined;
  }
  const macs = hello.macs.map(normaliseMac);
  let node: Node | undefined;
  try {
    node = await d.store.findNodeByMacs(macs);
  } catch (err) {
    call.emit('error', grpcError(grpc.status.FAILED_PRECONDITION, errorMessage(err)));
    return undefined;
  }
  if (!node || (hello.nodeUuid && hello.nodeUuid !== node.uuid)) {
    d.log.info({ peer, macs }, 'agent lookup found no node');
    call.emit('error', grpcError(grpc.status.NOT_FOUND, `no node has a port with any of the MAC addresses ${macs.join(', ')}`));
    return undefined;
  }
  const verdict = agentLookupVerdict(node.provision_state, d.cfg.conductor.fast_track);
  if (verdict === 'refuse' || (verdict === 'reconnect-only' && !node.agent_token_hash)) {
    const why =
      verdict === 'refuse'
        ? `node ${node.uuid} is in provision state "${node.provision_state}", which does not accept agent lookups${d.cfg.conductor.fast_track ? '' : ' (fast-track is off)'}`
        : `node ${node.uuid} is in provision state "${node.provision_state}": only an agent already holding this boot's token may reconnect; no token is issued there`;
    d.log.warn({ peer, node: node.uuid, state: node.provision_state }, 'agent lookup refused');
    call.emit('error', grpcError(grpc.status.FAILED_PRECONDITION, why));
    return undefined;
  }
  if (internalInfo(node).retired_agent_boot_id === hello.bootId) {
    // A power action ended this boot; the agent reconnected in the moment before it landed.
    call.emit('error', grpcError(grpc.status.FAILED_PRECONDITION, `boot ${hello.bootId} of node ${node.uuid} was ended by a power action; only a new boot is accepted`));
    return undefined;
  }
  // Another conductor owns this node: send the agent there before any token or session exists here.
  const owner = d.redirect?.(node);
  if (owner) return { node, issued: '', redirect: owner };
  d.log.debug({ peer, metadata: call.metadata.getMap(), hello }, 'agent hello');
  const presented = call.metadata.get(AGENT_TOKEN_METADATA)[0];
  const presentedToken = typeof presented === 'string' ? presented : presented?.toString('utf8');
  let issued = '';
  if (node.agent_token_hash) {
    if (!agentTokenMatches(presentedToken, node.agent_token_hash)) {
      d.log.warn({ node: node.uuid, peer, presented: Boolean(presentedToken) }, 'agent token rejected');
      call.emit('error', grpcError(grpc.status.UNAUTHENTICATED, presentedToken ? 'invalid agent token' : 'agent token required: this node already issued one for the current boot'));
      return undefined;
    }
  } else {
    issued = newAgentToken();
    if (!(await d.store.setAgentToken(node.id, hashAgentToken(issued), hello.bootId))) {
      call.emit('error', grpcError(grpc.status.ABORTED, 'concurrent lookup issued the token first; reconnect with it'));
      return undefined;
    }
    node = (await d.store.getNodeById(node.id))!;
  }
  return { node, issued };
}
