/**
 * Sensor collection (Thermal + Power) on a staggered schedule: each node gets a fixed second in the
 * interval (hash of its uuid), so the fleet is read evenly instead of in one burst. Reads go through
 * the hardware type's management interface (readSensors); readings are published on diagnostics
 * channels (events.ts), where the metrics registry turns them into per-node gauges and drops the
 * series of nodes that left the collection.
 */
import type { Logger } from 'pino';
import type { Node, Store } from './db/store.js';
import type { DriverRegistry } from './drivers/registry.js';
import type { HardwareType } from './drivers/base.js';
import { fnv1a } from '../shared/hash.js';
import { channels, publish, type SensorReadingMessage } from './events.js';

export interface SensorDeps {
  store: Store;
  drivers: DriverRegistry;
  /** Is this node this conductor's (its hash-ring owner)? Every node when absent. */
  owns?(node: Node): boolean;
  cfg: { interval_s: number; include_undeployed: boolean; deadline_ms: number };
  log: Logger;
}

export class SensorCollector {
  private timer: NodeJS.Timeout | undefined;
  private nodes: Node[] = [];
  private refreshedAt = 0;
  private tick = 0;
  /** Nodes whose readings were published (so a node leaving the collection is announced once). */
  private readonly published = new Set<string>();
  private busy = false;
  private readonly log: Logger;

  constructor(private readonly d: SensorDeps) {
    this.log = d.log;
  }

  private get interval(): number {
    return this.d.cfg.interval_s;
  }

  private reader(n: Node): HardwareType | undefined {
    const hw = this.d.drivers.has(n.driver) ? this.d.drivers.get(n.driver) : undefined;
    return hw?.management.readSensors ? hw : undefined;
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
    const drivers = this.d.drivers.names().filter((name) => this.d.drivers.get(name).management.readSensors);
    const all = (await this.d.store.listNodesForSweep()).filter((n) => drivers.includes(n.driver));
    this.nodes = all.filter((n) => !n.maintenance && (this.d.cfg.include_undeployed || n.provision_state === 'active') && (!this.d.owns || this.d.owns(n)));
    const live = new Set(this.nodes.map((n) => n.uuid));
    for (const uuid of this.published) {
      if (live.has(uuid)) continue;
      this.published.delete(uuid);
      publish(channels.sensorForget, { node: uuid });
    }
    this.refreshedAt = Date.now();
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

  /** Reads sensors of these nodes now and publishes the readings; returns per-node outcomes. */
  async collect(nodes: Node[]): Promise<{ ok: number; failed: number; ms: number }> {
    const t0 = Date.now();
    const groups = new Map<HardwareType, Node[]>();
    for (const n of nodes) {
      const hw = this.reader(n);
      if (!hw) continue;
      let g = groups.get(hw);
      if (!g) groups.set(hw, (g = []));
      g.push(n);
    }
    const byUuid = new Map(nodes.map((n) => [n.uuid, n]));
    let ok = 0;
    let failed = 0;
    for (const [hw, group] of groups) {
      const res = await hw.management.readSensors!(group, this.d.cfg.deadline_ms);
      for (const _ of res.invalid) publish(channels.sensorOutcome, { outcome: 'bad_driver_info' });
      for (const r of res.items) {
        const node = byUuid.get(r.uuid)!;
        if (!r.ok || !r.value) {
          failed++;
          publish(channels.sensorOutcome, { outcome: r.error?.code ?? 'error' });
          continue;
        }
        ok++;
        publish(channels.sensorOutcome, { outcome: 'ok' });
        const msg: SensorReadingMessage = {
          node: node.uuid,
          name: node.name ?? '',
          temperatures: r.value.temperatures.flatMap((t) => (t.celsius === null ? [] : [{ name: t.name, celsius: t.celsius }])),
          fans: r.value.fans.flatMap((f) => (f.rpm === null ? [] : [{ name: f.name, rpm: f.rpm }])),
          power_watts: r.value.power_watts,
        };
        this.published.add(node.uuid);
        publish(channels.sensorReading, msg);
      }
    }
    const ms = Date.now() - t0;
    publish(channels.sensorBatch, { ms });
    return { ok, failed, ms };
  }
}
