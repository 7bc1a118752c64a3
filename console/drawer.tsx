/**
 * The node drawer: identity, states, last_error, maintenance reason, driver_info as the API shows
 * it (secrets masked by the API), ports, an inventory summary, the running flow with its steps and
 * the current step's progress (bytes, rate, ETA — pushed live), history and sensor sparklines.
 * It refetches when the node's row changes on the stream, never on a timer (sensors aside).
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import { api } from './api.js';
import { drawLine } from './charts.js';
import type { FleetModel } from './fleet-model.js';
import { ACTIONS } from './actions.js';

type Doc = Record<string, any>;

interface Detail {
  node: Doc;
  ports: Doc[];
  inventory: Doc | null;
  history: Doc[];
  steps: Doc | null;
  live: Doc;
}

async function load(uuid: string): Promise<Detail> {
  const [node, ports, inventory, history, live] = await Promise.all([
    api<Doc>('GET', `/v1/nodes/${uuid}`),
    api<Doc>('GET', `/v1/nodes/${uuid}/ports?detail=true`).then((r) => r.ports as Doc[]),
    api<Doc>('GET', `/v1/nodes/${uuid}/inventory`).then((r) => r.inventory as Doc, () => null),
    api<Doc>('GET', `/v1/nodes/${uuid}/history?detail=true`).then((r) => r.history as Doc[]),
    api<Doc>('GET', `/console/api/nodes/${uuid}/live`),
  ]);
  const kind = /deploy|wait call-back/.test(node.provision_state) ? 'deploy' : /clean/.test(node.provision_state) ? 'clean' : null;
  const steps = kind ? await api<Doc>('GET', `/v1/nodes/${uuid}/steps?kind=${kind}`).catch(() => null) : null;
  return { node, ports, inventory, history, steps, live };
}

/** Bytes in the unit that reads best (MiB below 1 GiB). */
const size = (b: number) => (b >= 1024 ** 3 ? `${(b / 1024 ** 3).toFixed(b >= 1024 ** 3 * 10 ? 0 : 1)} GiB` : `${(b / 1024 ** 2).toFixed(b >= 1024 ** 2 * 10 ? 0 : 1)} MiB`);

function Spark({ label, points, unit }: { label: string; points: Array<[number, number | null]>; unit: string }) {
  const ref = useRef<HTMLCanvasElement>(null);
  useEffect(() => {
    if (ref.current) drawLine(ref.current, points, { unit });
  });
  return (
    <div class="spark">
      <span>{label}</span>
      <canvas ref={ref} />
    </div>
  );
}

function Progress({ p }: { p: Doc | undefined }) {
  if (!p) return null;
  const pct = typeof p.percent === 'number' ? p.percent : 0;
  return (
    <div class="progress" data-testid="progress">
      <progress max={100} value={pct} data-percent={pct} />
      <span>
        {p.stage} {pct.toFixed(0)}% · {size(Number(p.bytes_done ?? 0))} of {size(Number(p.bytes_total ?? 0))} · {((Number(p.rate_bytes_per_s) || 0) / 1048576).toFixed(1)} MiB/s · ETA {Math.round(Number(p.eta_s) || 0)} s
      </span>
    </div>
  );
}

export function Drawer({ uuid, id, model, onClose, onAction }: { uuid: string; id: number; model: FleetModel; onClose(): void; onAction(action: string, uuids: string[]): void }) {
  const [d, setD] = useState<Detail | null>(null);
  const [err, setErr] = useState<string | null>(null);
  const [progress, setProgress] = useState<Doc | undefined>(undefined);
  const version = useRef(0);

  useEffect(() => {
    let timer: number | undefined;
    const refresh = () => {
      const v = ++version.current;
      load(uuid).then(
        (x) => {
          if (v !== version.current) return;
          setD(x);
          setErr(null);
          if (x.live.progress) setProgress(x.live.progress);
        },
        (e: Error) => setErr(e.message),
      );
    };
    refresh();
    const unlisten = model.listen((changed) => {
      if (changed !== 'all' && changed.includes(id)) {
        clearTimeout(timer);
        timer = window.setTimeout(refresh, 300);
      }
    });
    const onProgress = () => setProgress(model.progress.get(id));
    window.addEventListener(`progress:${id}`, onProgress);
    const sensors = window.setInterval(refresh, 15_000);
    return () => {
      unlisten();
      clearTimeout(timer);
      clearInterval(sensors);
      window.removeEventListener(`progress:${id}`, onProgress);
    };
  }, [uuid, id]);

  const n = d?.node;
  const inv = d?.inventory;
  const running = d?.steps?.running as Doc | null | undefined;
  return (
    <aside class="drawer" data-testid="drawer">
      <header>
        <h2>{n?.name ?? uuid}</h2>
        <button class="close" onClick={onClose} aria-label="Close">×</button>
      </header>
      {err && <p class="error">{err}</p>}
      {!n ? <p>Loading…</p> : (
        <div class="body">
          <dl class="facts">
            <dt>UUID</dt><dd>{n.uuid}</dd>
            <dt>Provision</dt><dd data-testid="drawer-provision">{n.provision_state}{n.target_provision_state ? ` → ${n.target_provision_state}` : ''}</dd>
            <dt>Power</dt><dd data-testid="drawer-power">{n.power_state ?? 'unknown'}{n.target_power_state ? ` → ${n.target_power_state}` : ''}</dd>
            <dt>Maintenance</dt><dd>{n.maintenance ? `yes: ${n.maintenance_reason ?? ''}` : 'no'}</dd>
            <dt>Driver</dt><dd>{n.driver} · group “{n.conductor_group}”</dd>
            {n.last_error && (<><dt>Last error</dt><dd class="error">{n.last_error}</dd></>)}
          </dl>
          <div class="actions">
            {Object.entries(ACTIONS).map(([k, a]) => (
              <button key={k} class={a.danger ? 'danger' : ''} data-action={k} onClick={() => onAction(k, [uuid])}>{a.label}</button>
            ))}
          </div>
          {running && (
            <section>
              <h3>Running {running.kind}</h3>
              <ol class="steps">
                {(running.steps as Doc[]).map((s, i) => (
                  <li key={i} class={i < running.index ? 'done' : i === running.index ? 'current' : ''}>{s.interface}.{s.step}</li>
                ))}
              </ol>
            </section>
          )}
          <Progress p={progress} />
          <section>
            <h3>Inventory</h3>
            {!inv ? <p class="sub">not inspected</p> : (
              <ul class="inventory" data-testid="inventory">
                <li>CPU: {inv.cpu?.count} × {inv.cpu?.model_name} ({inv.cpu?.architecture})</li>
                <li>RAM: {Math.round((inv.memory?.physical_mb ?? 0) / 1024)} GiB</li>
                <li>Disks: {(inv.disks ?? []).map((x: Doc) => `${x.name} ${size(x.size)}${x.rotational ? ' HDD' : ''}`).join(', ')}</li>
                <li>NICs: {(inv.interfaces ?? []).map((x: Doc) => `${x.name} ${x.mac_address}`).join(', ')}</li>
              </ul>
            )}
          </section>
          <section>
            <h3>Ports</h3>
            <ul>{d!.ports.map((p) => <li key={p.uuid}>{p.address}{p.pxe_enabled ? ' (PXE)' : ''}</li>)}</ul>
          </section>
          <section>
            <h3>Driver info</h3>
            <pre class="json" data-testid="driver-info">{JSON.stringify(n.driver_info, null, 1)}</pre>
          </section>
          <section>
            <h3>Sensors</h3>
            <Spark label="Hottest °C" unit=" °C" points={(d!.live.sensors as Doc[]).map((s) => [s.t, s.max_celsius])} />
            <Spark label="Fans rpm" unit="" points={(d!.live.sensors as Doc[]).map((s) => [s.t, s.mean_fan_rpm])} />
            <Spark label="Power W" unit=" W" points={(d!.live.sensors as Doc[]).map((s) => [s.t, s.watts])} />
          </section>
          <section>
            <h3>History</h3>
            <ol class="history" data-testid="history">
              {[...d!.history].reverse().slice(0, 50).map((h) => (
                <li key={h.uuid} class={h.severity === 'ERROR' ? 'error' : ''}><time>{String(h.created_at).slice(11, 19)}</time> {h.event}</li>
              ))}
            </ol>
          </section>
        </div>
      )}
    </aside>
  );
}
