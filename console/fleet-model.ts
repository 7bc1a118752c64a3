/**
 * The browser's copy of the fleet: one row per node (the conductor's FeedRow tuples, read through
 * the field positions the snapshot names), the colouring dimension with its per-value counts kept
 * incrementally, the legend filter, the search and the selection. The map and the legend listen;
 * a delta touches only the rows it names.
 */
export type Row = (string | number | null)[];

export const DIMENSIONS = {
  provision: 'Provision state',
  power: 'Power',
  health: 'Health',
  maintenance: 'Maintenance',
  bmc: 'BMC reachability',
  agent: 'Agent',
  owner: 'Conductor',
} as const;
export type Dimension = keyof typeof DIMENSIONS;

const FIXED: Record<string, string> = {
  // provision states
  active: '#2e9d57', available: '#3b7dd8', manageable: '#7d8fa8', enroll: '#a7adb7', verifying: '#c9a227',
  inspecting: '#e0a526', 'inspect wait': '#e8b84a', cleaning: '#d9822b', 'clean wait': '#e89a4f', 'clean hold': '#9b59b6',
  deploying: '#f0c419', 'wait call-back': '#f5d76e', 'deploy hold': '#8e44ad', deleting: '#e67e22', servicing: '#16a085',
  'service wait': '#48c9b0', 'service hold': '#7d3c98', rescue: '#5dade2', adopting: '#85c1e9',
  'deploy failed': '#d63c3c', 'clean failed': '#c0392b', 'inspect failed': '#e74c3c', 'service failed': '#b03a2e', error: '#a93226',
  // power
  'power on': '#2e9d57', 'power off': '#4a5568',
  // health
  OK: '#2e9d57', Warning: '#e0a526', Critical: '#d63c3c',
  // BMC
  ok: '#2e9d57', unreachable: '#d63c3c',
  // maintenance / agent
  'in maintenance': '#d63c3c', 'not in maintenance': '#2e9d57', connected: '#2e9d57', 'not connected': '#4a5568',
  unknown: '#c3c8d0',
};
const PALETTE = ['#3b7dd8', '#e0a526', '#16a085', '#8e44ad', '#d35400', '#2c3e50', '#27ae60', '#c0392b', '#7f8c8d', '#f39c12'];

export function colourOf(value: string): string {
  const c = FIXED[value];
  if (c) return c;
  if (value.startsWith('RF_')) return '#e67e22';
  let h = 0;
  for (let i = 0; i < value.length; i++) h = (h * 31 + value.charCodeAt(i)) | 0;
  return PALETTE[Math.abs(h) % PALETTE.length]!;
}

type Listener = (changed: number[] | 'all') => void;

export class FleetModel {
  /** Node id → row. */
  readonly rows = new Map<number, Row>();
  private f: Record<string, number> = {};
  dimension: Dimension = 'provision';
  /** Legend filter: only these values are shown at full strength (empty: all). */
  readonly filter = new Set<string>();
  /** Search: ids that match (null: no search). */
  matches: Set<number> | null = null;
  readonly selected = new Set<number>();
  counts = new Map<string, number>();
  /** Agent progress per node id (from the stream). */
  readonly progress = new Map<number, Record<string, unknown>>();
  private readonly listeners = new Set<Listener>();

  load(fields: readonly string[], rows: Row[]): void {
    this.f = Object.fromEntries(fields.map((name, i) => [name, i]));
    this.rows.clear();
    for (const r of rows) this.rows.set(r[this.f.id!] as number, r);
    this.recount();
    this.emit('all');
  }

  /** Applies a delta: rows (tuples) replace, numbers are deleted nodes. Returns ids whose place changed. */
  apply(items: Array<Row | number>): void {
    const changed: number[] = [];
    let relayout = false;
    for (const it of items) {
      if (typeof it === 'number') {
        const old = this.rows.get(it);
        if (old) this.bump(this.valueOf(old), -1);
        this.rows.delete(it);
        this.selected.delete(it);
        relayout = true;
        continue;
      }
      const id = it[this.f.id!] as number;
      const old = this.rows.get(id);
      if (old) this.bump(this.valueOf(old), -1);
      else relayout = true;
      if (old && (old[this.f.group!] !== it[this.f.group!] || old[this.f.name!] !== it[this.f.name!])) relayout = true;
      this.rows.set(id, it);
      this.bump(this.valueOf(it), 1);
      changed.push(id);
    }
    this.emit(relayout ? 'all' : changed);
  }

  get(id: number, field: string): string | number | null {
    return this.rows.get(id)?.[this.f[field]!] ?? null;
  }

  /** The value a row has in the current dimension, as the legend names it. */
  valueOf(r: Row, dim: Dimension = this.dimension): string {
    const v = r[this.f[dim]!];
    if (dim === 'maintenance') return v ? 'in maintenance' : 'not in maintenance';
    if (dim === 'agent') return v ? 'connected' : 'not connected';
    return v === null || v === '' ? 'unknown' : String(v);
  }

  visible(id: number): boolean {
    const r = this.rows.get(id);
    if (!r) return false;
    if (this.filter.size && !this.filter.has(this.valueOf(r))) return false;
    return this.matches === null || this.matches.has(id);
  }

  setDimension(d: Dimension): void {
    this.dimension = d;
    this.filter.clear();
    this.recount();
    this.emit('all');
  }

  toggleFilter(value: string): void {
    if (this.filter.has(value)) this.filter.delete(value);
    else this.filter.add(value);
    this.emit('all');
  }

  setMatches(m: Set<number> | null): void {
    this.matches = m;
    this.emit('all');
  }

  toggleSelected(id: number): void {
    if (this.selected.has(id)) this.selected.delete(id);
    else this.selected.add(id);
    this.emit([id]);
  }

  selectVisible(): void {
    for (const id of this.rows.keys()) if (this.visible(id)) this.selected.add(id);
    this.emit('all');
  }

  clearSelection(): void {
    this.selected.clear();
    this.emit('all');
  }

  /** Ids whose name or uuid contains `q` (case-insensitive). */
  search(q: string): Set<number> {
    const s = q.toLowerCase();
    const out = new Set<number>();
    for (const [id, r] of this.rows) {
      if (String(r[this.f.name!] ?? '').toLowerCase().includes(s) || String(r[this.f.uuid!]).includes(s)) out.add(id);
    }
    return out;
  }

  idOfUuid(uuid: string): number | undefined {
    for (const [id, r] of this.rows) if (r[this.f.uuid!] === uuid) return id;
    return undefined;
  }

  listen(fn: Listener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private recount(): void {
    this.counts = new Map();
    for (const r of this.rows.values()) this.bump(this.valueOf(r), 1);
  }

  private bump(v: string, by: number): void {
    const n = (this.counts.get(v) ?? 0) + by;
    if (n <= 0) this.counts.delete(v);
    else this.counts.set(v, n);
  }

  private emit(c: number[] | 'all'): void {
    for (const l of this.listeners) l(c);
  }
}
