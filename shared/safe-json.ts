/**
 * JSON parsing for documents that come from outside the process (API bodies, agent messages).
 *
 * Plain JSON.parse turns `{"__proto__": {...}}` into an own property that later code may copy
 * with an assignment — and an assignment to `__proto__` replaces an object's prototype. So keys
 * that address the prototype chain are refused outright, and nesting is bounded (a 100,000-deep
 * array costs stack in every recursive walker that meets it later, not only in the parser).
 */

export class UnsafeJsonError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UnsafeJsonError';
  }
}

export const PROTO_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);

/** Deepest nesting of arrays/objects in `text`, scanning outside strings; stops past `limit`. */
export function jsonDepth(text: string, limit: number): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped char
      else if (c === 0x22) inString = false;
      continue;
    }
    if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > max) {
        max = depth;
        if (max > limit) return max;
      }
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return max;
}

/** JSON.parse that refuses prototype keys (at any depth) and nesting deeper than `maxDepth`. */
export function parseUntrustedJson(text: string, maxDepth = 64): unknown {
  if (jsonDepth(text, maxDepth) > maxDepth) throw new UnsafeJsonError(`document nested deeper than ${maxDepth} levels`);
  return JSON.parse(text, function reviver(key, value) {
    if (PROTO_KEYS.has(key) && !Array.isArray(this)) throw new UnsafeJsonError(`key "${key}" is not allowed in a document`);
    return value;
  });
}
