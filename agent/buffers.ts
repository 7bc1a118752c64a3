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

/** The first `n` bytes of the buffers, as views (no copy): what fits before an alignment boundary. */
export function takeBytes<T extends Uint8Array>(bufs: T[], n: number): T[] {
  const out: T[] = [];
  for (const b of bufs) {
    if (n <= 0) break;
    out.push(n >= b.length ? b : (b.subarray(0, n) as T));
    n -= b.length;
  }
  return out;
}

/**
 * Writes end on this boundary (except the last). Why: a buffered write that covers only part of a
 * block device's page makes the kernel read that page from the device first; on a loop device (or
 * a real disk) that is a synchronous read per batch boundary, and it cut image writes onto a loop
 * device to 0.4 of `dd`. Download chunks have arbitrary sizes, so batches rarely end aligned.
 */
export const WRITE_ALIGN = 64 << 10;

/** How many of `bytes` queued at offset `pos` to write now so the write ends on WRITE_ALIGN. */
export function alignedLength(pos: number, bytes: number): number {
  return Math.max(0, bytes - ((pos + bytes) % WRITE_ALIGN));
}

/** WebAssembly memory comes in 64 KiB pages. */
const WASM_PAGE = 64 << 10;
type WasmMemoryCtor = new (d: { initial: number; maximum: number; shared: boolean }) => { buffer: ArrayBuffer | SharedArrayBuffer };

/**
 * Page-aligned memory of at least `bytes` (whole 64 KiB pages), shared between threads or not: the
 * aligned memory O_DIRECT writes need. WebAssembly memory is the one page-aligned buffer JavaScript
 * can allocate (this project's TypeScript lib has no WebAssembly values, hence the cast).
 */
export function alignedMemory(bytes: number, shared: boolean): ArrayBuffer | SharedArrayBuffer {
  const pages = Math.max(1, Math.ceil(bytes / WASM_PAGE));
  const Memory = (globalThis as unknown as { WebAssembly: { Memory: WasmMemoryCtor } }).WebAssembly.Memory;
  return new Memory({ initial: pages, maximum: pages, shared }).buffer;
}
