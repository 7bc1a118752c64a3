/**
 * The conductor's Prometheus registry: API, agents, power sync, BMC pool and per-node sensors.
 * Everything is exposed at GET /metrics.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Conductor } from './manager.js';
import type { SweepReport } from './power-sync.js';
import { processFaults } from '../shared/process-guard.js';

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

  constructor(conductor: Conductor) {
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
        for (const [kind, n] of conductor.hub.received) this.inc({ kind }, n);
      },
    });
    new Counter({
      name: 'ironfleet_agent_messages_dropped_total',
      help: 'Agent messages dropped unprocessed, by reason (unknown_command: an id this stream does not own; log_rate/progress_rate: over the per-stream rate)',
      labelNames: ['reason'],
      registers: [r],
      collect() {
        this.reset();
        for (const [reason, n] of conductor.hub.dropped) this.inc({ reason }, n);
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
        this.set(conductor.hub.sessions.size);
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
    const bmcStats = async (): Promise<Record<string, number>> => (conductor.pool ? conductor.pool.stats() : {});
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
        this.set(conductor.pool?.utilization() ?? 0);
      },
    });
    new Gauge({
      name: 'ironfleet_bmc_pool_threads',
      help: 'BMC worker threads (shards)',
      registers: [r],
      collect() {
        this.set(conductor.pool?.poolSize ?? 0);
      },
    });
    this.temperature = new Gauge({ name: 'ironfleet_node_temperature_celsius', help: 'Node temperature sensors', labelNames: ['node_uuid', 'node_name', 'sensor'], registers: [r] });
    this.fanRpm = new Gauge({ name: 'ironfleet_node_fan_rpm', help: 'Node fan speeds', labelNames: ['node_uuid', 'node_name', 'sensor'], registers: [r] });
    this.powerWatts = new Gauge({ name: 'ironfleet_node_power_watts', help: 'Node power consumption', labelNames: ['node_uuid', 'node_name'], registers: [r] });
    this.sensorReads = new Counter({ name: 'ironfleet_sensor_reads_total', help: 'Sensor collections by outcome', labelNames: ['outcome'], registers: [r] });
    this.sensorCycle = new Histogram({ name: 'ironfleet_sensor_batch_duration_seconds', help: 'Duration of one staggered sensor batch', buckets: [0.05, 0.1, 0.5, 1, 2, 5, 10, 30], registers: [r] });
  }

  recordSweep(rep: SweepReport): void {
    this.sweepDuration.observe(rep.duration_ms / 1000);
    this.sweepNodes.set({ outcome: 'ok' }, rep.ok);
    this.sweepNodes.set({ outcome: 'failed' }, rep.failed);
    this.sweepNodes.set({ outcome: 'skipped' }, rep.skipped);
    for (const [code, n] of Object.entries(rep.errors_by_code)) this.syncErrors.inc({ code }, n);
  }
}
