/**
 * Root device selection with IPA's root-device hints: the same hint names, operators and matching
 * semantics, so operators' existing `properties.root_device` / `instance_info.root_device` work.
 *
 * - a device must satisfy every hint; the first matching device (inventory order) wins;
 * - strings compare lower-cased and URL-quoted; `size` is whole GiB (bytes / 2^30);
 * - numeric operators ==, !=, >=, >, <=, <, = (legacy alias of >=), <range-in> ( lo hi ) / [ lo hi ];
 *   string operators s==, s!=, s>=, s>, s<=, s<, <in>, <or> a <or> b, <all-in>;
 * - list-valued attributes (several WWNs/serials) match when any one value matches;
 * - no hints: the smallest disk of at least 4 GiB, sorted by (size, name).
 */
import type { InventoryDisk } from '../shared/inventory.js';

export const VALID_ROOT_DEVICE_HINTS = ['size', 'model', 'wwn', 'serial', 'vendor', 'wwn_with_extension', 'wwn_vendor_extension', 'name', 'rotational', 'hctl', 'by_path', 'tran'] as const;
export type RootDeviceHint = (typeof VALID_ROOT_DEVICE_HINTS)[number];

const STRING_HINTS = new Set<string>(['model', 'wwn', 'serial', 'vendor', 'wwn_with_extension', 'wwn_vendor_extension', 'name', 'hctl', 'by_path', 'tran']);
const GIB = 2 ** 30;
const MIN_ROOT_BYTES = 4 * GIB;

export class RootDeviceHintError extends Error {
  constructor(
    readonly hint: string,
    message: string,
  ) {
    super(`root_device.${hint}: ${message}`);
    this.name = 'RootDeviceHintError';
  }
}

/** Lower-case and URL-quote like IPA (so `/dev/sda` and `Model X` compare the way IPA compares them). */
function normalise(v: string): string {
  return encodeURIComponent(v.trim().toLowerCase()).replace(/%2F/gi, '/').replace(/%3A/gi, ':');
}

type Matcher = (value: unknown) => boolean;

const NUM_OPS: Record<string, (a: number, b: number) => boolean> = {
  '==': (a, b) => a === b,
  '!=': (a, b) => a !== b,
  '>=': (a, b) => a >= b,
  '>': (a, b) => a > b,
  '<=': (a, b) => a <= b,
  '<': (a, b) => a < b,
  '=': (a, b) => a >= b,
};

const STR_OPS: Record<string, (a: string, b: string) => boolean> = {
  's==': (a, b) => a === b,
  's!=': (a, b) => a !== b,
  's>=': (a, b) => a >= b,
  's>': (a, b) => a > b,
  's<=': (a, b) => a <= b,
  's<': (a, b) => a < b,
};

function parseNumber(hint: string, s: string): number {
  const n = Number(s);
  if (!Number.isFinite(n)) throw new RootDeviceHintError(hint, `"${s}" is not a number`);
  return n;
}

/** Compiles one hint expression ("<= 100", "<in> intel", "s== abc", plain values) into a matcher. */
export function compileHint(hint: string, raw: unknown): Matcher {
  if (!(VALID_ROOT_DEVICE_HINTS as readonly string[]).includes(hint)) {
    throw new RootDeviceHintError(hint, `unknown hint; valid hints are ${VALID_ROOT_DEVICE_HINTS.join(', ')}`);
  }
  if (hint === 'rotational') {
    const b = typeof raw === 'boolean' ? raw : typeof raw === 'string' && /^(true|false|1|0|yes|no|on|off)$/i.test(raw.trim()) ? /^(true|1|yes|on)$/i.test(raw.trim()) : undefined;
    if (b === undefined) throw new RootDeviceHintError(hint, `"${String(raw)}" is not a boolean`);
    return (v) => v === b;
  }
  if (hint === 'size') {
    if (typeof raw === 'number') {
      if (!Number.isInteger(raw) || raw <= 0) throw new RootDeviceHintError(hint, 'must be a positive integer (GiB)');
      return (v) => v === raw;
    }
    const expr = String(raw).trim();
    const range = expr.match(/^<range-in>\s*([[(])\s*(\S+)\s+(\S+)\s*([\])])$/);
    if (range) {
      const lo = parseNumber(hint, range[2]!);
      const hi = parseNumber(hint, range[3]!);
      const loOk = range[1] === '[' ? (x: number) => x >= lo : (x: number) => x > lo;
      const hiOk = range[4] === ']' ? (x: number) => x <= hi : (x: number) => x < hi;
      return (v) => typeof v === 'number' && loOk(v) && hiOk(v);
    }
    const m = expr.match(/^(==|!=|>=|<=|>|<|=)?\s*(\S+)$/);
    if (!m) throw new RootDeviceHintError(hint, `cannot parse "${expr}"`);
    const n = parseNumber(hint, m[2]!);
    if (!m[1] && (!Number.isInteger(n) || n <= 0)) throw new RootDeviceHintError(hint, 'must be a positive integer (GiB)');
    const op = NUM_OPS[m[1] ?? '==']!;
    return (v) => typeof v === 'number' && op(v, n);
  }
  if (!STRING_HINTS.has(hint)) throw new RootDeviceHintError(hint, 'unsupported hint');
  if (typeof raw !== 'string') throw new RootDeviceHintError(hint, 'must be a string');
  const expr = raw.trim();
  const strMatch = (pred: (value: string) => boolean): Matcher => (v) => {
    const values = Array.isArray(v) ? v : [v];
    return values.some((x) => typeof x === 'string' && pred(normalise(x)));
  };
  if (expr.startsWith('<in>')) {
    const needle = normalise(expr.slice(4));
    return strMatch((x) => x.includes(needle));
  }
  if (expr.includes('<or>')) {
    const parts = expr.replace(/^<or>/, '').split('<or>').map((p) => normalise(p.replace(/^s==/, '')));
    return strMatch((x) => parts.includes(x));
  }
  if (expr.startsWith('<all-in>')) {
    const needles = expr.slice(8).trim().split(/\s+/).map(normalise);
    return strMatch((x) => needles.every((n) => x.includes(n)));
  }
  const m = expr.match(/^(s==|s!=|s>=|s<=|s>|s<)\s*(.*)$/);
  const op = STR_OPS[m ? m[1]! : 's==']!;
  const want = normalise(m ? m[2]! : expr);
  return strMatch((x) => op(x, want));
}

function attribute(disk: InventoryDisk, hint: RootDeviceHint): unknown {
  if (hint === 'size') return Math.floor(disk.size / GIB);
  return (disk as Record<string, unknown>)[hint] ?? null;
}

/** Validates a hints object up front (naming the bad hint); returns the compiled matchers. */
export function compileHints(hints: Record<string, unknown>): Array<[RootDeviceHint, Matcher]> {
  return Object.entries(hints).map(([k, v]) => [k as RootDeviceHint, compileHint(k, v)]);
}

/** Does this disk satisfy every compiled hint? */
export function matchesHints(disk: InventoryDisk, compiled: Array<[RootDeviceHint, Matcher]>): boolean {
  return compiled.every(([hint, match]) => match(attribute(disk, hint)));
}

/** IPA's choice: with hints, the first disk matching all of them; without, the smallest >= 4 GiB. */
export function selectRootDevice(disks: InventoryDisk[], hints: Record<string, unknown> | null | undefined): InventoryDisk | undefined {
  if (!hints || Object.keys(hints).length === 0) {
    return [...disks].filter((d) => d.size >= MIN_ROOT_BYTES).sort((a, b) => a.size - b.size || a.name.localeCompare(b.name))[0];
  }
  const compiled = compileHints(hints);
  return disks.find((d) => matchesHints(d, compiled));
}
