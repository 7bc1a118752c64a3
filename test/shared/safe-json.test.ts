/** Untrusted JSON: prototype keys refused at any depth, nesting bounded, everything else as JSON.parse. */
import { describe, expect, it } from 'vitest';
import { jsonDepth, parseUntrustedJson } from '../../shared/safe-json.js';
import { applyPatch } from '../../conductor/api/json-patch.js';

describe('parseUntrustedJson', () => {
  it('refuses __proto__ / constructor / prototype keys anywhere, accepts them as values', () => {
    for (const t of ['{"__proto__":{}}', '{"a":[{"b":{"constructor":1}}]}', '{"prototype":null}']) expect(() => parseUntrustedJson(t), t).toThrow(/is not allowed/);
    expect(parseUntrustedJson('{"a":"__proto__","b":["constructor"]}')).toEqual({ a: '__proto__', b: ['constructor'] });
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
  it('bounds nesting without recursing (brackets inside strings do not count)', () => {
    expect(() => parseUntrustedJson('['.repeat(100_000) + ']'.repeat(100_000))).toThrow(/nested deeper than 64/);
    expect(jsonDepth('{"a":"[[[[[[[[[["}', 5)).toBe(1);
    expect(parseUntrustedJson('[[["x\\\\"]]]')).toEqual([[['x\\']]]);
  });
});

describe('applyPatch', () => {
  const allowed = new Set(['extra', 'name']);
  it('refuses prototype segments and follows own properties only', () => {
    for (const path of ['/extra/__proto__/x', '/extra/constructor/prototype/x', '/__proto__']) {
      expect(() => applyPatch({ extra: {}, name: null }, [{ op: 'add', path, value: 1 }], new Set([...allowed, '__proto__']))).toThrow(/not allowed/);
    }
    expect(({} as Record<string, unknown>).x).toBeUndefined();
    // "toString" exists on every object's prototype, not as an own key: replace must not see it.
    expect(() => applyPatch({ extra: {}, name: null }, [{ op: 'replace', path: '/extra/toString', value: 1 }], allowed)).toThrow(/does not exist/);
    const out = applyPatch({ extra: { a: { b: 1 } }, name: null }, [{ op: 'add', path: '/extra/a/c', value: { d: 2 } }], allowed);
    expect(out.extra).toEqual({ a: { b: 1, c: { d: 2 } } });
  });
});
