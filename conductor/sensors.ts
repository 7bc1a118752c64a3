/**
 * Sensor collection (Thermal + Power) on a staggered schedule: each node gets a fixed second in the
 * interval (hash of its uuid), so the fleet is read evenly instead of in one burst. Readings become
 * Prometheus gauges labelled per node; series of vanished nodes are removed.
 */
import type { Logger } from 'pino';
import type { Conductor } from './manager.js';
import type { Node } from './db/store.js';
import { nodeRef } from './drivers/redfish.js';
import { fnv1a, type BmcPool, type NodeRef } from './redfish/pool.js';
import type { SensorReadings } from './redfish/ops.js';

export class SensorCollector {
  private timer: NodeJS.Timeout | undefined;
  private nodes: Node[] = [];
  private refreshedAt = 0;
  private tick = 0;
  private readonly series = new Map<string, { name: string; temps: string[]; fans: string[] }>();
  private busy = false;

  constructor(
    private readonly conductor: Conductor,
    private readonly pool: () => BmcPool,
    private readonly log: Logger,
  ) {}

  private get interval(): number {
    return this.conductor.cfg.sensors.interval_s;
  }

  start(): void {
    if (this.interval <= 0) return;
    this.timer = setInterval(() => void this.onTick(), 1000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
  }

  private async refresh(): Promise<void> {
    const all = await this.conductor.store.listNodes({ driver: 'redfish' });
    this.nodes = all.filter((n) => !n.maintenance && (this.conductor.cfg.sensors.include_undeployed || n.provision_state === 'active'));
    const live = new Set(this.nodes.map((n) => n.uuid));
    for (const [uuid, s] of this.series) if (!live.has(uuid)) this.dropSeries(uuid, s);
    this.refreshedAt = Date.now();
  }

  private dropSeries(uuid: string, s: { name: string; temps: string[]; fans: string[] }): void {
    const m = this.conductor.metrics;
    for (const t of s.temps) m.temperature.remove({ node_uuid: uuid, node_name: s.name, sensor: t });
    for (const f of s.fans) m.fanRpm.remove({ node_uuid: uuid, node_name: s.name, sensor: f });
    m.powerWatts.remove({ node_uuid: uuid, node_name: s.name });
    this.series.delete(uuid);
  }

  private async onTick(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      if (Date.now() - this.refreshedAt > this.interval * 1000) await this.refresh();
      const slot = this.tick++ % Math.max(1, Math.round(this.interval));
      const due = this.nodes.filter((n) => fnv1a(n.uuid) % Math.max(1, Math.round(this.interval)) === slot);
      if (due.length) await this.collect(due);
    } catch (err) {
      this.log.warn({ err }, 'sensor collection failed');
    } finally {
      this.busy = false;
    }
  }

  /** Reads sensors of these nodes now and updates the gauges; returns per-node outcomes. */
  async collect(nodes: Node[]): Promise<{ ok: number; failed: number; ms: number }> {
    const t0 = Date.now();
    const refs: NodeRef[] = [];
    const byUuid = new Map<string, Node>();
    for (const n of nodes) {
      try {
        refs.push(nodeRef(n));
        byUuid.set(n.uuid, n);
      } catch {
        this.conductor.metrics.sensorReads.inc({ outcome: 'bad_driver_info' });
      }
    }
    const res = await this.pool().sensors<SensorReadings>(refs, this.conductor.cfg.power_sync.sweep_deadline_ms);
    let ok = 0;
    let failed = 0;
    const m = this.conductor.metrics;
    for (const r of res) {
      const node = byUuid.get(r.uuid)!;
      if (!r.ok || !r.value) {
        failed++;
        m.sensorReads.inc({ outcome: r.error?.code ?? 'error' });
        continue;
      }
      ok++;
      m.sensorReads.inc({ outcome: 'ok' });
      const name = node.name ?? '';
      const prev = this.series.get(node.uuid);
      if (prev && prev.name !== name) this.dropSeries(node.uuid, prev);
      const s = { name, temps: [] as string[], fans: [] as string[] };
      for (const t of r.value.temperatures) {
        if (t.celsius === null) continue;
        m.temperature.set({ node_uuid: node.uuid, node_name: name, sensor: t.name }, t.celsius);
        s.temps.push(t.name);
      }
      for (const f of r.value.fans) {
        if (f.rpm === null) continue;
        m.fanRpm.set({ node_uuid: node.uuid, node_name: name, sensor: f.name }, f.rpm);
        s.fans.push(f.name);
      }
      if (r.value.power_watts !== null) m.powerWatts.set({ node_uuid: node.uuid, node_name: name }, r.value.power_watts);
      this.series.set(node.uuid, s);
    }
    const ms = Date.now() - t0;
    m.sensorCycle.observe(ms / 1000);
    return { ok, failed, ms };
  }
}
