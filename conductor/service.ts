/** Starts a whole conductor process: database, agent endpoint, API; stops it gracefully. */
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { ConductorConfig } from './config.js';
import { Conductor } from './manager.js';
import { buildApi } from './api/server.js';
import { advertisedAgentAddress, advertisedApiUrl } from './api/forward.js';

export interface RunningConductor {
  conductor: Conductor;
  api: FastifyInstance;
  apiPort: number;
  agentPort: number;
  stop(): Promise<void>;
}

export async function startConductor(cfg: ConductorConfig, log: Logger): Promise<RunningConductor> {
  const conductor = await Conductor.open(cfg, log);
  const agentPort = await conductor.startAgentEndpoint();
  const api = await buildApi(conductor, log);
  await api.listen({ host: cfg.api.host, port: cfg.api.port });
  const addr = api.server.address();
  const apiPort = typeof addr === 'object' && addr ? addr.port : cfg.api.port;
  await conductor.membership.advertise({ api_url: advertisedApiUrl(cfg.api, apiPort), agent_address: advertisedAgentAddress(cfg.agent.host, agentPort) });
  conductor.startBackground();
  log.info({ api: `http://${cfg.api.host}:${apiPort}`, agent_port: agentPort, database: cfg.database.url.split(':')[0], host: cfg.host }, 'conductor started');
  let stopping: Promise<void> | undefined;
  return {
    conductor,
    api,
    apiPort,
    agentPort,
    stop() {
      stopping ??= (async () => {
        await api.close();
        await conductor.stop();
        log.info('conductor stopped');
      })();
      return stopping;
    },
  };
}
