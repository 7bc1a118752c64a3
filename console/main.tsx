/**
 * The ironfleet console: a fleet map coloured by a chosen dimension with a legend that filters,
 * search by name/uuid/MAC, a node drawer, fleet panels and actions (single or bulk, confirmed).
 * State arrives once as a snapshot, then as deltas on the live stream; Preact renders the chrome,
 * the map paints itself (fleet-map.ts).
 */
import { render } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError, onUnauthorized, setToken } from './api.js';
import { openStream } from './sse.js';
import { DIMENSIONS, FleetModel, colourOf, type Dimension, type Row } from './fleet-model.js';
import { FleetMap } from './fleet-map.js';
import { Drawer } from './drawer.js';
import { Panels, type PanelSample, type SweepPoint } from './panels.js';
import { ACTIONS, runBulk, type Outcome } from './actions.js';

interface Snapshot {
  conductor: string;
  id: string;
  fields: string[];
  rows: Row[];
  panels: { sweeps: SweepPoint[]; samples: PanelSample[] };
}

/** What the browser tests and the benchmark read (window.__console). */
const stats = { ready: 0, snapshotMs: 0, events: 0, rows: 0, lags: [] as number[], applyMs: [] as number[], bytes: () => 0 };
(window as unknown as { __console: typeof stats }).__console = stats;

const model = new FleetModel();

function useModelTick(): number {
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let queued = false;
    return model.listen(() => {
      if (queued) return;
      queued = true;
      requestAnimationFrame(() => {
        queued = false;
        setTick((t) => t + 1);
      });
    });
  }, []);
  return tick;
}

function Legend() {
  useModelTick();
  const entries = [...model.counts].sort((a, b) => b[1] - a[1]);
  return (
    <ul class="legend" data-testid="legend">
      {entries.map(([v, n]) => (
        <li key={v} class={model.filter.size && !model.filter.has(v) ? 'off' : ''} data-value={v} data-count={n} onClick={() => model.toggleFilter(v)}>
          <i style={{ background: colourOf(v) }} />
          {v} <b>{n.toLocaleString()}</b>
        </li>
      ))}
    </ul>
  );
}

function MapView({ onOpen }: { onOpen(id: number): void }) {
  const wrap = useRef<HTMLDivElement>(null);
  const canvas = useRef<HTMLCanvasElement>(null);
  const tip = useRef<HTMLDivElement>(null);
  useEffect(() => {
    // The content width (padding excluded): the canvas must never widen its own container.
    const width = () => {
      const cs = getComputedStyle(wrap.current!);
      return wrap.current!.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
    };
    const map = new FleetMap(canvas.current!, model, width);
    map.layout();
    if (!stats.ready) stats.ready = performance.now();
    (window as unknown as { __map: FleetMap }).__map = map;
    let laidOut = width();
    const ro = new ResizeObserver(() => {
      if (Math.abs(width() - laidOut) < 1) return;
      laidOut = width();
      map.layout();
    });
    ro.observe(wrap.current!);
    const at = (e: MouseEvent) => {
      const r = canvas.current!.getBoundingClientRect();
      return map.hit(e.clientX - r.left, e.clientY - r.top);
    };
    canvas.current!.onclick = (e) => {
      const id = at(e);
      if (id === undefined) return;
      if (e.shiftKey || e.ctrlKey || e.metaKey) model.toggleSelected(id);
      else onOpen(id);
    };
    canvas.current!.onmousemove = (e) => {
      const id = at(e);
      const t = tip.current!;
      if (id === undefined) {
        t.hidden = true;
        return;
      }
      t.hidden = false;
      t.style.left = `${e.offsetX + 14}px`;
      t.style.top = `${e.offsetY + 14}px`;
      t.textContent = `${model.get(id, 'name') ?? model.get(id, 'uuid')} · ${model.get(id, 'provision')} · ${model.get(id, 'power') ?? 'power unknown'}`;
    };
    canvas.current!.onmouseleave = () => (tip.current!.hidden = true);
    return () => {
      ro.disconnect();
      map.destroy();
    };
  }, []);
  return (
    <div class="map" ref={wrap}>
      <canvas ref={canvas} data-testid="map" />
      <div class="tip" ref={tip} hidden />
    </div>
  );
}

function Confirm({ action, uuids, onDone }: { action: string; uuids: string[]; onDone(): void }) {
  const def = ACTIONS[action]!;
  const [input, setInput] = useState<Record<string, string>>({});
  const [outcomes, setOutcomes] = useState<Outcome[] | null>(null);
  const [busy, setBusy] = useState(false);
  const nodes = uuids.map((u) => {
    const id = model.idOfUuid(u);
    return { uuid: u, name: String((id !== undefined && model.get(id, 'name')) || u) };
  });
  const missing = (def.inputs ?? []).some((i) => i.required && !input[i.key]?.trim());
  const go = async () => {
    setBusy(true);
    const acc: Outcome[] = [];
    await runBulk(def, nodes, input, (o) => {
      acc.push(o);
      setOutcomes([...acc]);
    });
    setBusy(false);
  };
  return (
    <div class="modal" data-testid="confirm">
      <div class="dialog">
        <h2>{def.label}: {nodes.length === 1 ? nodes[0]!.name : `${nodes.length} nodes`}</h2>
        {(def.inputs ?? []).map((i) => (
          <label key={i.key}>
            {i.label}
            <input name={i.key} placeholder={i.placeholder} value={input[i.key] ?? ''} onInput={(e) => setInput({ ...input, [i.key]: (e.target as HTMLInputElement).value })} />
          </label>
        ))}
        {outcomes && (
          <ul class="outcomes" data-testid="outcomes">
            {outcomes.map((o) => <li key={o.uuid} class={o.ok ? 'ok' : 'error'}>{o.name}: {o.message}</li>)}
          </ul>
        )}
        <div class="buttons">
          {!outcomes && <button class={def.danger ? 'danger' : 'primary'} disabled={busy || missing} data-testid="confirm-go" onClick={go}>Confirm {def.label.toLowerCase()}</button>}
          <button onClick={onDone} disabled={busy}>{outcomes ? 'Close' : 'Cancel'}</button>
        </div>
      </div>
    </div>
  );
}

function TokenForm({ onToken }: { onToken(): void }) {
  const [t, setT] = useState('');
  return (
    <form class="login" onSubmit={(e) => { e.preventDefault(); setToken(t); onToken(); }}>
      <h1>ironfleet console</h1>
      <label>API token <input type="password" value={t} onInput={(e) => setT((e.target as HTMLInputElement).value)} /></label>
      <button class="primary">Sign in</button>
    </form>
  );
}

function App() {
  const [snap, setSnap] = useState<Snapshot | null>(null);
  const [err, setErr] = useState<string | null>(null);
  const [needToken, setNeedToken] = useState(false);
  const [link, setLink] = useState<'live' | 'reconnecting'>('reconnecting');
  const [dim, setDim] = useState<Dimension>('provision');
  const [open, setOpen] = useState<number | null>(null);
  const [confirm, setConfirm] = useState<{ action: string; uuids: string[] } | null>(null);
  const [panels, setPanels] = useState<{ sweeps: SweepPoint[]; samples: PanelSample[] }>({ sweeps: [], samples: [] });
  const [bulk, setBulk] = useState('power_on');
  const tick = useModelTick();

  const loadSnapshot = async (): Promise<string> => {
    const t0 = performance.now();
    const s = await api<Snapshot>('GET', '/console/api/fleet');
    stats.snapshotMs = performance.now() - t0;
    model.load(s.fields, s.rows);
    setPanels(s.panels);
    setSnap(s);
    return s.id;
  };

  useEffect(() => {
    onUnauthorized.fn = (scheme) => {
      if (/token/i.test(scheme)) setNeedToken(true);
    };
    let stream: { close(): void; bytes(): number } | undefined;
    loadSnapshot().then(
      (id) => {
        stream = openStream(id, {
          state: setLink,
          reset: loadSnapshot,
          event(name, data) {
            if (name === 'nodes') {
              const t0 = performance.now();
              const m = JSON.parse(data) as { t: number; c: number; rows: Array<Row | number> };
              model.apply(m.rows);
              stats.applyMs.push(performance.now() - t0);
              stats.events++;
              stats.rows += m.rows.length;
              // One lag per node delivered, measured from the oldest change in its batch (an upper bound).
              const lag = Date.now() - m.c;
              for (let k = 0; k < m.rows.length; k++) stats.lags.push(lag);
            } else if (name === 'progress') {
              for (const p of JSON.parse(data) as Array<Record<string, unknown> & { node: number }>) {
                model.progress.set(p.node, p);
                window.dispatchEvent(new Event(`progress:${p.node}`));
              }
            } else if (name === 'panel') {
              const p = JSON.parse(data) as PanelSample;
              setPanels((old) => ({
                samples: [...old.samples.slice(-299), p],
                sweeps: p.sweep && p.sweep.t !== old.sweeps.at(-1)?.t ? [...old.sweeps.slice(-239), p.sweep] : old.sweeps,
              }));
            }
          },
        });
        stats.bytes = () => stream!.bytes();
      },
      (e: Error) => setErr(e instanceof ApiError && e.status === 401 ? 'Not authorised: sign in to the API.' : e.message),
    );
    return () => stream?.close();
  }, [needToken]);

  if (needToken) return <TokenForm onToken={() => setNeedToken(false)} />;
  if (err) return <p class="error boot">{err}</p>;
  if (!snap) return <p class="boot">Loading the fleet…</p>;

  const onSearch = async (q: string) => {
    const s = q.trim();
    if (!s) return model.setMatches(null);
    if (/^([0-9a-f]{2}[:-]){5}[0-9a-f]{2}$/i.test(s)) {
      const r = await api<{ ports: Array<{ node_uuid: string }> }>('GET', `/v1/ports?address=${encodeURIComponent(s.toLowerCase().replaceAll('-', ':'))}&fields=node_uuid`);
      return model.setMatches(new Set(r.ports.map((p) => model.idOfUuid(p.node_uuid)).filter((x): x is number => x !== undefined)));
    }
    model.setMatches(model.search(s));
  };
  const selectedUuids = () => [...model.selected].map((id) => String(model.get(id, 'uuid')));
  void tick;
  return (
    <div class="app">
      <header class="top">
        <h1>ironfleet</h1>
        <span class="conductor">conductor {snap.conductor}</span>
        <span class={`link ${link}`} data-testid="link">{link === 'live' ? '● live' : '○ reconnecting'}</span>
        <span class="count" data-testid="node-count">{model.rows.size.toLocaleString()} nodes</span>
        <select value={dim} onChange={(e) => { const d = (e.target as HTMLSelectElement).value as Dimension; setDim(d); model.setDimension(d); }} data-testid="dimension">
          {Object.entries(DIMENSIONS).map(([k, v]) => <option key={k} value={k}>{v}</option>)}
        </select>
        <input
          class="search"
          type="search"
          placeholder="Search name, uuid or MAC (Enter opens a single match)"
          data-testid="search"
          onInput={(e) => void onSearch((e.target as HTMLInputElement).value)}
          onKeyDown={(e) => {
            if (e.key === 'Enter' && model.matches?.size === 1) setOpen([...model.matches][0]!);
          }}
        />
      </header>
      <Legend />
      <div class="selection">
        <button onClick={() => model.selectVisible()}>Select shown</button>
        {model.selected.size > 0 && (
          <>
            <span data-testid="selected">{model.selected.size} selected</span>
            <select value={bulk} onChange={(e) => setBulk((e.target as HTMLSelectElement).value)} data-testid="bulk-action">
              {Object.entries(ACTIONS).map(([k, a]) => <option key={k} value={k}>{a.label}</option>)}
            </select>
            <button class="primary" data-testid="bulk-go" onClick={() => setConfirm({ action: bulk, uuids: selectedUuids() })}>Apply to selection…</button>
            <button onClick={() => model.clearSelection()}>Clear</button>
          </>
        )}
        <span class="hint">click a node for details · shift-click to select</span>
      </div>
      <main>
        <MapView onOpen={setOpen} />
        <Panels sweeps={panels.sweeps} samples={panels.samples} />
      </main>
      {open !== null && model.rows.has(open) && (
        <Drawer key={open} id={open} uuid={String(model.get(open, 'uuid'))} model={model} onClose={() => setOpen(null)} onAction={(action, uuids) => setConfirm({ action, uuids })} />
      )}
      {confirm && <Confirm action={confirm.action} uuids={confirm.uuids} onDone={() => setConfirm(null)} />}
    </div>
  );
}

render(<App />, document.getElementById('app')!);
