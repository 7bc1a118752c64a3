/**
 * Fleet panels: power-sync sweep duration over time, BMC errors by code in the last sweep, BMC
 * sessions and open breakers, deploys in flight and completed per minute, image-write throughput,
 * agents connected — the numbers /metrics has, pushed every 2 s on the live stream.
 */
import { useEffect, useRef } from 'preact/hooks';
import { drawLine } from './charts.js';
import type { PanelSample, SweepPoint } from '../shared/console-feed.js';

export type { PanelSample, SweepPoint };

function Chart({ points, unit, colour }: { points: Array<[number, number | null]>; unit?: string; colour?: string }) {
  const ref = useRef<HTMLCanvasElement>(null);
  useEffect(() => {
    if (ref.current) drawLine(ref.current, points, { unit, colour, min: 0 });
  });
  return <canvas class="chart" ref={ref} />;
}

const mib = (b: number) => `${(b / 1048576).toFixed(1)} MiB/s`;

export function Panels({ sweeps, samples }: { sweeps: SweepPoint[]; samples: PanelSample[] }) {
  const now = samples.at(-1);
  const lastSweep = sweeps.at(-1);
  const errors = Object.entries(lastSweep?.errors ?? {}).sort((a, b) => b[1] - a[1]);
  return (
    <section class="panels" data-testid="panels">
      <div class="panel">
        <h3>Power sync sweep</h3>
        <Chart points={sweeps.map((s) => [s.t, s.ms])} unit=" ms" />
        <p class="sub">{lastSweep ? `${lastSweep.nodes.toLocaleString()} nodes, ${lastSweep.failed} failed` : 'no sweep yet'}</p>
      </div>
      <div class="panel">
        <h3>BMC errors (last sweep)</h3>
        {errors.length === 0 ? <p class="sub">none</p> : (
          <ul class="bars">
            {errors.slice(0, 6).map(([code, n]) => <li key={code}><span class="code">{code}</span><span class="n">{n}</span></li>)}
          </ul>
        )}
        <p class="sub">retries total {now?.bmc_retries ?? 0}, requests {now?.bmc_requests.toLocaleString() ?? 0}</p>
      </div>
      <div class="panel">
        <h3>BMC sessions</h3>
        <p class="big" data-testid="sessions">{now?.sessions.toLocaleString() ?? '–'}</p>
        <p class="sub">{now ? `${now.breakers_open} breakers open, ${now.logins} logins` : ''}</p>
      </div>
      <div class="panel">
        <h3>Deploys in flight</h3>
        <Chart points={samples.map((s) => [s.t, s.deploys_in_flight])} colour="#d9822b" />
        <p class="sub">{now ? `${now.deploys_per_min}/min completed · writing ${mib(now.write_bytes_per_s)}` : ''}</p>
      </div>
      <div class="panel">
        <h3>Agents connected</h3>
        <Chart points={samples.map((s) => [s.t, s.agents])} colour="#2e9d57" />
      </div>
    </section>
  );
}
