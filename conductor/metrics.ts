/**
 * The conductor's Prometheus registry: API, agents, power sync, BMC pool and per-node sensors.
 * Everything is exposed at GET /metrics. Power sync and sensors are observed through their
 * diagnostics channels (events.ts); agents and the BMC pool are read through the narrow
 * `MetricsSources` at scrape time. Nothing here holds the conductor.
 */
import type diagnostics_channel from 'node:diagnostics_channel';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { channels, type SensorReadingMessage, type SweepReport } from './events.js';
import { processFaults } from '../shared/process-guard.js';

/** What the registry reads at scrape time. */
export interface MetricsSources {
  agents: { readonly received: ReadonlyMap<string, number>; readonly dropped: ReadonlyMap<string, number>; connectedCount(): number };
  /** The BMC pool once started. */
  bmc(): { stats(): Promise<Record<string, number>>; utilization(): number; readonly poolSize: number } | undefined;
}

export class ConductorMetrics {
  readonly registry = new Registry();
  readonly apiRequests: Counter<'method' | 'route' | 'status'>;
  readonly apiLatency: Histogram<'method' | 'route'>;
  readonly sweepDuration: Histogram;
  readonly sweepNodes: Gauge<'outcome'>;
  readonly syncErrors: Counter<'code'>;
  readonly temperature: Gauge<'node_uuid' | 'node_name' | 'sensor'>;
  readonly fanRpm: Gauge<'node_uuid' | 'node_name' | 'sensor'>;
  readonly powerWatts: Gauge<'node_uuid' | 'node_name'>;
  readonly sensorReads: Counter<'outcome'>;
  readonly sensorCycle: Histogram;

  /** Sensor series per node uuid, so a node that leaves the collection drops its gauges. */
  private readonly series = new Map<string, { name: string; temps: string[]; fans: string[] }>();
  private readonly subscriptions: Array<[diagnostics_channel.Channel, (msg: unknown) => void]> = [];

  constructor(src: MetricsSources) {
    const r = this.registry;
    collectDefaultMetrics({ register: r, prefix: 'ironfleet_' });
    this.apiRequests = new Counter({ name: 'ironfleet_api_requests_total', help: 'API requests', labelNames: ['method', 'route', 'status'], registers: [r] });
    this.apiLatency = new Histogram({
      name: 'ironfleet_api_request_duration_seconds',
      help: 'API request latency',
      labelNames: ['method', 'route'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
      registers: [r],
    });
    new Counter({
      name: 'ironfleet_agent_messages_total',
      help: 'Messages received from agents, by kind',
      labelNames: ['kind'],
      registers: [r],
      collect() {
        this.reset();
        for (const [kind, n] of src.agents.received) this.inc({ kind }, n);
      },
    });
    new Counter({
      name: 'ironfleet_agent_messages_dropped_total',
      help: 'Agent messages dropped unprocessed, by reason (unknown_command: an id this stream does not own; log_rate/progress_rate: over the per-stream rate)',
      labelNames: ['reason'],
      registers: [r],
      collect() {
        this.reset();
        for (const [reason, n] of src.agents.dropped) this.inc({ reason }, n);
      },
    });
    new Counter({
      name: 'ironfleet_unhandled_rejections_total',
      help: 'Promise rejections nothing handled (each is a bug; the process logs it and keeps running)',
      registers: [r],
      collect() {
        this.reset();
        this.inc(processFaults.unhandled_rejections);
      },
    });
    new Gauge({
      name: 'ironfleet_agents_connected',
      help: 'Ramdisk agents with a live stream to this conductor',
      registers: [r],
      collect() {
        this.set(src.agents.connectedCount());
      },
    });
    this.sweepDuration = new Histogram({
      name: 'ironfleet_power_sync_duration_seconds',
      help: 'Duration of power sync sweeps',
      buckets: [0.1, 0.5, 1, 2, 5, 10, 20, 60, 120],
      registers: [r],
    });
    this.sweepNodes = new Gauge({ name: 'ironfleet_power_sync_nodes', help: 'Nodes in the last power sync sweep, by outcome', labelNames: ['outcome'], registers: [r] });
    this.syncErrors = new Counter({ name: 'ironfleet_power_sync_errors_total', help: 'Power sync failures by error code', labelNames: ['code'], registers: [r] });
    // One worker round-trip per scrape: the BMC collectors below share one stats read (1 s).
    let statsAt = 0;
    let statsRead: Promise<Record<string, number>> = Promise.resolve({});
    const bmcStats = (): Promise<Record<string, number>> => {
      if (Date.now() - statsAt > 1000) {
        statsAt = Date.now();
        statsRead = Promise.resolve(src.bmc()?.stats() ?? {}).catch(() => ({}));
      }
      return statsRead;
    };
    new Gauge({
      name: 'ironfleet_bmc_sockets',
      help: 'BMC sockets open, and the budget they are held to (redfish.max_bmc_sockets; 0 = none)',
      labelNames: ['kind'],
      registers: [r],
      async collect() {
        const s = await bmcStats();
        this.set({ kind: 'open' }, s.bmc_sockets_open ?? 0);
        this.set({ kind: 'budget' }, s.bmc_socket_budget ?? 0);
      },
    });
    new Counter({
      name: 'ironfleet_bmc_socket_budget_events_total',
      help: 'Descriptor budget events: idle BMC sockets closed to make room (evicted), connects that waited for a descriptor (waited)',
      labelNames: ['event'],
      registers: [r],
      async collect() {
        this.reset();
        const s = await bmcStats();
        this.inc({ event: 'evicted' }, s.bmc_socket_evictions ?? 0);
        this.inc({ event: 'waited' }, s.bmc_socket_waits ?? 0);
      },
    });
    new Gauge({
      name: 'ironfleet_bmc_sessions',
      help: 'Live Redfish sessions held (at most one per BMC and user)',
      registers: [r],
      async collect() {
        this.set((await bmcStats()).sessions ?? 0);
      },
    });
    new Counter({
      name: 'ironfleet_bmc_requests_total',
      help: 'Redfish requests sent, by kind',
      labelNames: ['kind'],
      registers: [r],
      async collect() {
        this.reset();
        const s = await bmcStats();
        for (const k of ['requests', 'errors', 'logins', 'logins_failed', 'relogins', 'not_modified', 'retries', 'breaker_rejections']) this.inc({ kind: k }, s[k] ?? 0);
      },
    });
    new Counter({
      name: 'ironfleet_bmc_operation_retries_total',
      help: 'BMC operations (power actions, boot device, firmware, flow power reads) tried again after a transient answer, by error code',
      labelNames: ['code'],
      registers: [r],
      async collect() {
        this.reset();
        for (const [k, n] of Object.entries(await bmcStats())) if (k.startsWith('op_retry_')) this.inc({ code: k.slice('op_retry_'.length) }, n);
      },
    });
    new Gauge({
      name: 'ironfleet_bmc_worker_heap_bytes',
      help: 'V8 heap of the BMC worker threads together: used, total (reserved) and external (buffers)',
      labelNames: ['kind'],
      registers: [r],
      async collect() {
        const s = await bmcStats();
        this.set({ kind: 'used' }, s.heap_used_bytes ?? 0);
        this.set({ kind: 'total' }, s.heap_total_bytes ?? 0);
        this.set({ kind: 'external' }, s.heap_external_bytes ?? 0);
      },
    });
    new Counter({
      name: 'ironfleet_bmc_worker_gc_seconds_total',
      help: 'Garbage-collection pauses of the BMC worker threads together, by kind (minor = scavenge)',
      labelNames: ['kind'],
      registers: [r],
      async collect() {
        this.reset();
        for (const [k, ms] of Object.entries(await bmcStats())) if (k.startsWith('gc_ms_')) this.inc({ kind: k.slice('gc_ms_'.length) }, ms / 1000);
      },
    });
    new Gauge({
      name: 'ironfleet_bmc_breakers_open',
      help: 'BMCs whose circuit breaker is open (unreachable)',
      registers: [r],
      async collect() {
        this.set((await bmcStats()).breakers_open ?? 0);
      },
    });
    new Gauge({
      name: 'ironfleet_bmc_pool_utilization',
      help: 'Utilisation of the BMC worker threads (0..1)',
      registers: [r],
      collect() {
        this.set(src.bmc()?.utilization() ?? 0);
      },
    });
    new Gauge({
      name: 'ironfleet_bmc_pool_threads',
      help: 'BMC worker threads (shards)',
      registers: [r],
      collect() {
        this.set(src.bmc()?.poolSize ?? 0);
      },
    });
    this.temperature = new Gauge({ name: 'ironfleet_node_temperature_celsius', help: 'Node temperature sensors', labelNames: ['node_uuid', 'node_name', 'sensor'], registers: [r] });
    this.fanRpm = new Gauge({ name: 'ironfleet_node_fan_rpm', help: 'Node fan speeds', labelNames: ['node_uuid', 'node_name', 'sensor'], registers: [r] });
    this.powerWatts = new Gauge({ name: 'ironfleet_node_power_watts', help: 'Node power consumption', labelNames: ['node_uuid', 'node_name'], registers: [r] });
    this.sensorReads = new Counter({ name: 'ironfleet_sensor_reads_total', help: 'Sensor collections by outcome', labelNames: ['outcome'], registers: [r] });
    this.sensorCycle = new Histogram({ name: 'ironfleet_sensor_batch_duration_seconds', help: 'Duration of one staggered sensor batch', buckets: [0.05, 0.1, 0.5, 1, 2, 5, 10, 30], registers: [r] });
    this.on(channels.powerSweep, (rep) => this.recordSweep(rep as SweepReport));
    this.on(channels.sensorReading, (msg) => this.recordSensors(msg as SensorReadingMessage));
    this.on(channels.sensorOutcome, (msg) => this.sensorReads.inc({ outcome: (msg as { outcome: string }).outcome }));
    this.on(channels.sensorBatch, (msg) => this.sensorCycle.observe((msg as { ms: number }).ms / 1000));
    this.on(channels.sensorForget, (msg) => this.dropSeries((msg as { node: string }).node));
  }

  private on(ch: diagnostics_channel.Channel, fn: (msg: unknown) => void): void {
    ch.subscribe(fn);
    this.subscriptions.push([ch, fn]);
  }

  /** Stops observing the channels (a stopped conductor's registry must not keep counting). */
  close(): void {
    for (const [ch, fn] of this.subscriptions.splice(0)) ch.unsubscribe(fn);
  }

  private recordSweep(rep: SweepReport): void {
    this.sweepDuration.observe(rep.duration_ms / 1000);
    this.sweepNodes.set({ outcome: 'ok' }, rep.ok);
    this.sweepNodes.set({ outcome: 'failed' }, rep.failed);
    this.sweepNodes.set({ outcome: 'skipped' }, rep.skipped);
    for (const [code, n] of Object.entries(rep.errors_by_code)) this.syncErrors.inc({ code }, n);
  }

  private recordSensors(r: SensorReadingMessage): void {
    const prev = this.series.get(r.node);
    if (prev && prev.name !== r.name) this.dropSeries(r.node);
    for (const t of r.temperatures) this.temperature.set({ node_uuid: r.node, node_name: r.name, sensor: t.name }, t.celsius);
    for (const f of r.fans) this.fanRpm.set({ node_uuid: r.node, node_name: r.name, sensor: f.name }, f.rpm);
    if (r.power_watts !== null) this.powerWatts.set({ node_uuid: r.node, node_name: r.name }, r.power_watts);
    this.series.set(r.node, { name: r.name, temps: r.temperatures.map((t) => t.name), fans: r.fans.map((f) => f.name) });
  }

  private dropSeries(uuid: string): void {
    const s = this.series.get(uuid);
    if (!s) return;
    for (const t of s.temps) this.temperature.remove({ node_uuid: uuid, node_name: s.name, sensor: t });
    for (const f of s.fans) this.fanRpm.remove({ node_uuid: uuid, node_name: s.name, sensor: f });
    this.powerWatts.remove({ node_uuid: uuid, node_name: s.name });
    this.series.delete(uuid);
  }
}
