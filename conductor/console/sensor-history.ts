/**
 * Recent sensor readings per node for the console's sparklines: the hottest temperature, the mean
 * fan speed and the power draw of each of the last 60 readings, from the sensor collector's
 * channel. A node's series is dropped when it leaves the collection. 10,000 nodes × 60 readings
 * cost ≈ 10 MB; nothing is kept until the console is first opened.
 */
import { channels, type SensorReadingMessage } from '../events.js';

export interface SensorPoint {
  t: number;
  max_celsius: number | null;
  mean_fan_rpm: number | null;
  watts: number | null;
}

const KEEP = 60;

export class SensorHistory {
  private readonly series = new Map<string, SensorPoint[]>();
  private readonly onReading = (m: unknown) => {
    const r = m as SensorReadingMessage;
    const temps = r.temperatures.map((x) => x.celsius);
    const fans = r.fans.map((x) => x.rpm);
    let s = this.series.get(r.node);
    if (!s) this.series.set(r.node, (s = []));
    s.push({
      t: Date.now(),
      max_celsius: temps.length ? Math.max(...temps) : null,
      mean_fan_rpm: fans.length ? Math.round(fans.reduce((a, b) => a + b, 0) / fans.length) : null,
      watts: r.power_watts,
    });
    if (s.length > KEEP) s.shift();
  };
  private readonly onForget = (m: unknown) => this.series.delete((m as { node: string }).node);

  start(): void {
    channels.sensorReading.subscribe(this.onReading);
    channels.sensorForget.subscribe(this.onForget);
  }

  stop(): void {
    channels.sensorReading.unsubscribe(this.onReading);
    channels.sensorForget.unsubscribe(this.onForget);
  }

  of(uuid: string): SensorPoint[] {
    return this.series.get(uuid) ?? [];
  }
}
