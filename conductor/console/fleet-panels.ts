/**
 * The console's fleet panels: power-sync sweeps over time, BMC errors by code, sessions and
 * breakers, deploys in flight and their throughput, agents connected. The same numbers /metrics
 * exposes, read from the same places (the sweep channel, the BMC pool's counters, the agent hub),
 * sampled every 2 s only while a browser is watching, with ten minutes kept for the charts.
 */
import type { FeedRow, PanelSample, SweepPoint } from '../../shared/console-feed.js';

export type { PanelSample, SweepPoint };
import { channels, type NodeStateMessage, type SweepReport } from '../events.js';
import { FLOW_STATES } from '../states.js';

export interface PanelSources {
  agents: { connectedCount(): number };
  /** The BMC pool once started (its counters are summed over its threads). */
  bmc(): { stats(): Promise<Record<string, number>> } | undefined;
}

const SAMPLE_MS = 2_000;
const KEEP_SAMPLES = 300;
const KEEP_SWEEPS = 240;
const DEPLOYING: ReadonlySet<string> = new Set(Object.values(FLOW_STATES.deploy));

export class FleetPanels {
  private readonly sweeps: SweepPoint[] = [];
  private readonly samples: PanelSample[] = [];
  private readonly completed: number[] = [];
  private nextSample = 0;
  private readonly onSweep = (m: unknown) => {
    const r = m as SweepReport;
    this.sweeps.push({ t: Date.parse(r.started_at) + r.duration_ms, ms: r.duration_ms, nodes: r.nodes, failed: r.failed, errors: r.errors_by_code });
    if (this.sweeps.length > KEEP_SWEEPS) this.sweeps.shift();
  };
  private readonly onState = (m: unknown) => {
    const s = m as NodeStateMessage;
    if (s.to === 'active' && DEPLOYING.has(s.from)) this.completed.push(Date.now());
  };
  /** Sum of recent write rates, from the feed's progress (set by the feed). */
  writeRate: () => number = () => 0;

  constructor(
    private readonly src: PanelSources,
    private readonly rows: () => Iterable<FeedRow>,
  ) {}

  start(): void {
    channels.powerSweep.subscribe(this.onSweep);
    channels.nodeState.subscribe(this.onState);
  }

  stop(): void {
    channels.powerSweep.unsubscribe(this.onSweep);
    channels.nodeState.unsubscribe(this.onState);
  }

  due(now: number): boolean {
    return now >= this.nextSample;
  }

  /** Takes a sample now (and keeps it for the charts). */
  async current(): Promise<PanelSample> {
    const now = Date.now();
    this.nextSample = now + SAMPLE_MS;
    while (this.completed.length && this.completed[0]! < now - 60_000) this.completed.shift();
    let inFlight = 0;
    for (const r of this.rows()) if (DEPLOYING.has(r[4])) inFlight++;
    const bmc = (await this.src.bmc()?.stats().catch(() => undefined)) ?? {};
    const sample: PanelSample = {
      t: now,
      agents: this.src.agents.connectedCount(),
      sessions: bmc.sessions ?? 0,
      breakers_open: bmc.breakers_open ?? 0,
      bmc_requests: bmc.requests ?? 0,
      bmc_errors: bmc.errors ?? 0,
      bmc_retries: bmc.retries ?? 0,
      logins: bmc.logins ?? 0,
      deploys_in_flight: inFlight,
      deploys_per_min: this.completed.length,
      write_bytes_per_s: Math.round(this.writeRate()),
      sweep: this.sweeps.at(-1) ?? null,
    };
    this.samples.push(sample);
    if (this.samples.length > KEEP_SAMPLES) this.samples.shift();
    return sample;
  }

  history(): { sweeps: SweepPoint[]; samples: PanelSample[] } {
    return { sweeps: [...this.sweeps], samples: [...this.samples] };
  }
}
