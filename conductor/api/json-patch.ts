/**
 * RFC 6902 JSON Patch (add / replace / remove), as Ironic applies it to a resource: only the
 * listed top-level fields may be touched; nested dict fields (driver_info/…, extra/…) may be
 * addressed key by key. Returns a new document; the input is never mutated.
 */
import { z } from 'zod';
import { InvalidInputError } from '../../shared/errors.js';

export const patchSchema = z
  .array(
    z.strictObject({
      op: z.enum(['add', 'replace', 'remove']),
      path: z.string().regex(/^\/[^/]/, 'must be a JSON pointer such as /name'),
      value: z.unknown().optional(),
    }),
  )
  .min(1, 'patch must contain at least one operation');

export type PatchOp = z.infer<typeof patchSchema>[number];

function unescape(seg: string): string {
  return seg.replace(/~1/g, '/').replace(/~0/g, '~');
}

export function applyPatch<T extends Record<string, unknown>>(doc: T, ops: PatchOp[], allowed: ReadonlySet<string>): T {
  const out = structuredClone(doc) as Record<string, unknown>;
  for (const [i, op] of ops.entries()) {
    const segs = op.path.slice(1).split('/').map(unescape);
    const top = segs[0]!;
    if (!allowed.has(top)) throw new InvalidInputError(`patch.${i}.path: "${op.path}" cannot be changed (read-only or unknown attribute)`, top);
    if (op.op !== 'remove' && !('value' in op)) throw new InvalidInputError(`patch.${i}.value: required for op "${op.op}"`, top);
    let parent: Record<string, unknown> = out;
    for (const [depth, seg] of segs.slice(0, -1).entries()) {
      const next = parent[seg];
      if (next === undefined || next === null) {
        if (op.op === 'remove') throw new InvalidInputError(`patch.${i}.path: "${op.path}" does not exist`, top);
        parent[seg] = {};
      } else if (typeof next !== 'object' || Array.isArray(next)) {
        throw new InvalidInputError(`patch.${i}.path: "/${segs.slice(0, depth + 1).join('/')}" is not an object`, top);
      }
      parent = parent[seg] as Record<string, unknown>;
    }
    const leaf = segs[segs.length - 1]!;
    if (op.op === 'remove') {
      if (!(leaf in parent)) throw new InvalidInputError(`patch.${i}.path: "${op.path}" does not exist`, top);
      if (segs.length === 1) parent[leaf] = null;
      else delete parent[leaf];
    } else {
      if (op.op === 'replace' && segs.length > 1 && !(leaf in parent)) {
        throw new InvalidInputError(`patch.${i}.path: "${op.path}" does not exist (use op "add")`, top);
      }
      parent[leaf] = op.value;
    }
  }
  return out as T;
}
