/** Small buffer helpers shared by the agent's write paths (the image writer and its sink worker). */

/** The buffers from byte `n` on: what is left to write after a short (partial) writev. */
export function skipBytes<T extends Uint8Array>(bufs: T[], n: number): T[] {
  const out: T[] = [];
  for (const b of bufs) {
    if (n >= b.length) {
      n -= b.length;
      continue;
    }
    out.push(n ? (b.subarray(n) as T) : b);
    n = 0;
  }
  return out;
}
