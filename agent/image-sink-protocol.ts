/**
 * The messages between the image writer's main thread (image-sink.ts) and its sink worker
 * (image-sink-worker.ts): a shared ring handed over at start, then segments of it to hash and/or
 * write, acknowledged in bytes. Its own module so the main thread can import the op numbers
 * without loading the worker's code.
 */
/** Segment ops, as numbers in the flat (op, offset, length) triples the main thread sends. */
export const SINK_OP = { hash: 0, write: 1, both: 2 } as const;

/** What the main thread sends: ring segments in ring order, then finish (or wipe). */
export type SinkRequest = { op: 'data'; segs: number[] } | { op: 'finish' } | { op: 'wipe' } | { op: 'close' };
/** What this worker answers: byte acks, the final digest, a wipe, or the first error. */
export type SinkReply = { ack: number; error?: string } | { digest: string; written: number; directBytes: number } | { wiped: number } | { closed: true } | { error: string };
export interface SinkWorkerData {
  target: string;
  algo: string;
  /** Page-aligned (WebAssembly memory): O_DIRECT writes go straight from it. */
  ring: SharedArrayBuffer;
  /** Write direct (O_DIRECT) when the target takes it: from the ring for a raw image, staged otherwise. */
  direct: boolean;
}
