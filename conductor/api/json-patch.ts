/**
 * RFC 6902 JSON Patch (add / replace / remove), as Ironic applies it to a resource: only the
 * listed top-level fields may be touched; nested dict fields (driver_info/…, extra/…) may be
 * addressed key by key. Returns a new document; the input is never mutated.
 *
 * Safety: the patch is applied to a deep copy built from own enumerable properties only, and a
 * path segment that names a prototype slot (`__proto__`, `constructor`, `prototype`) is refused
 * before anything is written — a patch reaching Object.prototype would change every object in the
 * process (and every later request) until restart.
 */
import { z } from 'zod';
import { InvalidInputError } from '../../shared/errors.js';

export const patchSchema = z
  .array(
    z.strictObject({
      op: z.enum(['add', 'replace', 'remove']),
      path: z.string().max(1024).regex(/^\/[^/]/, 'must be a JSON pointer such as /name'),
      value: z.unknown().optional(),
    }),
  )
  .min(1, 'patch must contain at least one operation')
  .max(256, 'at most 256 operations per patch');

export type PatchOp = z.infer<typeof patchSchema>[number];

/** Keys that address the prototype chain rather than data; never followed or written. */
export const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);

function unescape(seg: string): string {
  return seg.replace(/~1/g, '/').replace(/~0/g, '~');
}

type Dict = Record<string, unknown>;

function isDict(v: unknown): v is Dict {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Deep copy through own enumerable keys only (define, never assign: no setter is triggered). */
function ownCopy(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(ownCopy);
  if (!isDict(v)) return v;
  const out: Dict = {};
  for (const k of Object.keys(v)) Object.defineProperty(out, k, { value: ownCopy(v[k]), enumerable: true, writable: true, configurable: true });
  return out;
}

function setOwn(obj: Dict, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

export function applyPatch<T extends Record<string, unknown>>(doc: T, ops: PatchOp[], allowed: ReadonlySet<string>): T {
  const out = ownCopy(doc) as Dict;
  for (const [i, op] of ops.entries()) {
    const segs = op.path.slice(1).split('/').map(unescape);
    const top = segs[0]!;
    const bad = segs.find((s) => FORBIDDEN_KEYS.has(s));
    if (bad !== undefined) throw new InvalidInputError(`patch.${i}.path: "${op.path}" addresses "${bad}", which is not allowed`, `patch.${i}.path`);
    if (!allowed.has(top)) throw new InvalidInputError(`patch.${i}.path: "${op.path}" cannot be changed (read-only or unknown attribute)`, top);
    if (op.op !== 'remove' && !('value' in op)) throw new InvalidInputError(`patch.${i}.value: required for op "${op.op}"`, top);
    let parent: Dict = out;
    for (const [depth, seg] of segs.slice(0, -1).entries()) {
      const next = Object.hasOwn(parent, seg) ? parent[seg] : undefined;
      if (next === undefined || next === null) {
        if (op.op === 'remove') throw new InvalidInputError(`patch.${i}.path: "${op.path}" does not exist`, top);
        setOwn(parent, seg, {});
      } else if (!isDict(next)) {
        throw new InvalidInputError(`patch.${i}.path: "/${segs.slice(0, depth + 1).join('/')}" is not an object`, top);
      }
      parent = parent[seg] as Dict;
    }
    const leaf = segs[segs.length - 1]!;
    const exists = Object.hasOwn(parent, leaf);
    if (op.op === 'remove') {
      if (!exists) throw new InvalidInputError(`patch.${i}.path: "${op.path}" does not exist`, top);
      if (segs.length === 1) setOwn(parent, leaf, null);
      else delete parent[leaf];
    } else {
      if (op.op === 'replace' && segs.length > 1 && !exists) {
        throw new InvalidInputError(`patch.${i}.path: "${op.path}" does not exist (use op "add")`, top);
      }
      setOwn(parent, leaf, ownCopy(op.value));
    }
  }
  return out as T;
}
