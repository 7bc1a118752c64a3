/**
 * Many simulated agents in one process: the real AgentClient (real gRPC streams over real
 * sockets, one connection each) on SimulatedHardware. Used by the lab and benchmarks.
 */
import { createLogger } from '../shared/logger.js';
import { AgentClient } from '../agent/client.js';
import { SimulatedHardware } from '../agent/hardware.js';
import type { LevelWithSilent } from 'pino';

export interface SimAgentsOptions {
  conductor: string;
  count: number;
  seed: string;
  first?: number;
  logLevel?: string;
  /** Connect this many agents per second (0 = all at once). @default 2000 */
  rampPerSecond?: number;
}

export async function startSimAgents(o: SimAgentsOptions): Promise<{ clients: AgentClient[]; stop(): Promise<void> }> {
  const log = createLogger({ name: 'ironfleet-sim-agents', level: (o.logLevel ?? 'warn') as LevelWithSilent, destination: undefined });
  const clients: AgentClient[] = [];
  const ramp = o.rampPerSecond ?? 2000;
  for (let i = 0; i < o.count; i++) {
    const index = (o.first ?? 0) + i;
    const c = new AgentClient({
      conductor: o.conductor,
      hardware: new SimulatedHardware({ seed: o.seed, index }),
      log: log.child({ machine: index }),
      backoff: { initialMs: 500, maxMs: 10_000 },
    });
    clients.push(c);
    await c.start();
    if (ramp > 0 && i % Math.max(1, Math.floor(ramp / 10)) === 0) await new Promise((r) => setTimeout(r, 100));
  }
  return {
    clients,
    async stop() {
      await Promise.all(clients.map((c) => c.stop()));
    },
  };
}

export async function runSimAgents(o: SimAgentsOptions): Promise<void> {
  const sim = await startSimAgents(o);
  const report = setInterval(() => {
    const connected = sim.clients.filter((c) => c.connected).length;
    process.stdout.write(`${JSON.stringify({ agents: sim.clients.length, connected })}\n`);
  }, 2000);
  const stop = async () => {
    clearInterval(report);
    await sim.stop();
    process.exit(0);
  };
  process.once('SIGTERM', () => void stop());
  process.once('SIGINT', () => void stop());
}
