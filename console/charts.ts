/**
 * Small canvas charts for the panels and the drawer: a line over time with its last value. The
 * series are short (≤ 300 points), so a few dozen lines of canvas do what a charting library
 * would, with nothing to load.
 */
export function drawLine(canvas: HTMLCanvasElement, points: Array<[number, number | null]>, opts: { colour?: string; unit?: string; min?: number } = {}): void {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 240;
  const h = canvas.clientHeight || 48;
  canvas.width = w * dpr;
  canvas.height = h * dpr;
  const c = canvas.getContext('2d')!;
  c.setTransform(dpr, 0, 0, dpr, 0, 0);
  c.clearRect(0, 0, w, h);
  const pts = points.filter((p): p is [number, number] => p[1] !== null && Number.isFinite(p[1]));
  if (pts.length === 0) {
    c.fillStyle = '#94a3b8';
    c.font = '11px system-ui, sans-serif';
    c.fillText('no data yet', 4, h / 2);
    return;
  }
  const t0 = pts[0]![0];
  const t1 = Math.max(pts.at(-1)![0], t0 + 1);
  const vals = pts.map((p) => p[1]);
  const lo = Math.min(opts.min ?? Infinity, ...vals);
  const hi = Math.max(...vals, lo + 1e-9);
  const x = (t: number) => ((t - t0) / (t1 - t0)) * (w - 2) + 1;
  const y = (v: number) => h - 14 - ((v - lo) / (hi - lo || 1)) * (h - 20);
  c.strokeStyle = opts.colour ?? '#3b7dd8';
  c.lineWidth = 1.5;
  c.beginPath();
  pts.forEach(([t, v], i) => (i ? c.lineTo(x(t), y(v)) : c.moveTo(x(t), y(v))));
  if (pts.length === 1) c.lineTo(w - 1, y(pts[0]![1]));
  c.stroke();
  c.fillStyle = '#334155';
  c.font = '11px system-ui, sans-serif';
  const last = pts.at(-1)![1];
  c.fillText(`${Number.isInteger(last) ? last : last.toFixed(1)}${opts.unit ?? ''}  (max ${Number.isInteger(hi) ? hi : hi.toFixed(1)})`, 2, h - 2);
}
