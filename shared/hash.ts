/**
 * FNV-1a, 32-bit: a fast, stable string hash for spreading keys (BMCs over worker shards, nodes
 * over the seconds of a sensor interval). Not for anything an attacker chooses to collide.
 */
export function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}
