/**
 * The fleet map: every node one cell on a canvas, grouped into a block per conductor group and
 * ordered by name. Drawn imperatively, not through the virtual DOM: 10,000 cells are 10,000
 * fillRects (a few ms), and a live update repaints only the cells it names — the page around it
 * never re-renders.
 */
import { colourOf, type FleetModel } from './fleet-model.js';

interface Place {
  x: number;
  y: number;
}

const LABEL_H = 18;
const BLOCK_GAP = 10;

export class FleetMap {
  private readonly ctx: CanvasRenderingContext2D;
  private places = new Map<number, Place>();
  /** Grid index → node id, for hit testing. */
  private grid: Array<{ y0: number; y1: number; cols: number; ids: number[] }> = [];
  private cell = 10;
  private gap = 1;
  private dpr = 1;
  private unlisten: () => void;
  /** Milliseconds spent painting, per update (read by the benchmark). */
  readonly paintTimes: number[] = [];

  constructor(
    readonly canvas: HTMLCanvasElement,
    private readonly model: FleetModel,
    private readonly width: () => number,
  ) {
    this.ctx = canvas.getContext('2d', { alpha: false })!;
    this.unlisten = model.listen((c) => (c === 'all' ? this.layout() : this.paint(c)));
  }

  destroy(): void {
    this.unlisten();
  }

  /** Places every node (groups, then names) and paints everything. */
  layout(): void {
    const t0 = performance.now();
    const m = this.model;
    const groups = new Map<string, Array<[number, string]>>();
    for (const [id] of m.rows) {
      const g = String(m.get(id, 'group') ?? '');
      let list = groups.get(g);
      if (!list) groups.set(g, (list = []));
      list.push([id, String(m.get(id, 'name') ?? m.get(id, 'uuid'))]);
    }
    const w = Math.max(200, this.width());
    const n = Math.max(1, m.rows.size);
    // Cells as large as fit ~600 px of height, between 5 and 28 px.
    this.cell = Math.max(5, Math.min(28, Math.floor(Math.sqrt((w * 600) / n)) - 1));
    this.gap = this.cell >= 8 ? 2 : 1;
    const step = this.cell + this.gap;
    const cols = Math.max(1, Math.floor(w / step));
    this.places = new Map();
    this.grid = [];
    let y = 0;
    const labels: Array<[string, number, number]> = [];
    for (const g of [...groups.keys()].sort()) {
      const list = groups.get(g)!.sort((a, b) => (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
      labels.push([g || '(no conductor group)', list.length, y]);
      y += LABEL_H;
      const ids = list.map(([id]) => id);
      ids.forEach((id, i) => this.places.set(id, { x: (i % cols) * step, y: y + Math.floor(i / cols) * step }));
      const rows = Math.ceil(ids.length / cols);
      this.grid.push({ y0: y, y1: y + rows * step, cols, ids });
      y += rows * step + BLOCK_GAP;
    }
    this.dpr = window.devicePixelRatio || 1;
    this.canvas.width = Math.ceil(w * this.dpr);
    this.canvas.height = Math.ceil(Math.max(y, 40) * this.dpr);
    this.canvas.style.width = `${w}px`;
    this.canvas.style.height = `${Math.max(y, 40)}px`;
    const c = this.ctx;
    c.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    c.fillStyle = '#ffffff';
    c.fillRect(0, 0, w, y);
    c.font = '12px system-ui, sans-serif';
    c.textBaseline = 'middle';
    for (const [name, count, ly] of labels) {
      c.fillStyle = '#334155';
      c.fillText(`${name} — ${count.toLocaleString()} nodes`, 0, ly + LABEL_H / 2);
    }
    for (const id of this.places.keys()) this.drawCell(id);
    this.paintTimes.push(performance.now() - t0);
  }

  paint(ids: number[]): void {
    const t0 = performance.now();
    for (const id of ids) this.drawCell(id);
    this.paintTimes.push(performance.now() - t0);
    if (this.paintTimes.length > 1000) this.paintTimes.splice(0, 500);
  }

  /** The node under a point of the canvas (CSS pixels), if any. */
  hit(x: number, y: number): number | undefined {
    const step = this.cell + this.gap;
    for (const b of this.grid) {
      if (y < b.y0 || y >= b.y1) continue;
      const col = Math.floor(x / step);
      if (col >= b.cols) return undefined;
      return b.ids[Math.floor((y - b.y0) / step) * b.cols + col];
    }
    return undefined;
  }

  /** The centre of a node's cell (CSS pixels of the canvas), for tests and keyboard use. */
  centreOf(id: number): { x: number; y: number } | undefined {
    const p = this.places.get(id);
    return p && { x: p.x + this.cell / 2, y: p.y + this.cell / 2 };
  }

  get cellCount(): number {
    return this.places.size;
  }

  private drawCell(id: number): void {
    const p = this.places.get(id);
    const row = this.model.rows.get(id);
    if (!p || !row) return;
    const c = this.ctx;
    const s = this.cell;
    c.globalAlpha = 1;
    c.fillStyle = '#ffffff';
    c.fillRect(p.x, p.y, s, s);
    c.globalAlpha = this.model.visible(id) ? 1 : 0.12;
    c.fillStyle = colourOf(this.model.valueOf(row));
    c.fillRect(p.x, p.y, s, s);
    c.globalAlpha = 1;
    if (this.model.selected.has(id)) {
      c.strokeStyle = '#111827';
      c.lineWidth = Math.max(1, s / 6);
      c.strokeRect(p.x + c.lineWidth / 2, p.y + c.lineWidth / 2, s - c.lineWidth, s - c.lineWidth);
    }
  }
}
