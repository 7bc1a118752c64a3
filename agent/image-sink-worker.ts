/**
 * The image sink's worker thread: hashes what it is told to hash, writes what it is told to write
 * (sequentially, with writev), acknowledges bytes so the main thread can bound what is in flight,
 * and on request fsyncs and returns the digest, or wipes what it wrote. Hashing and writing here
 * keep the agent's event loop free for the stream to the conductor while an image goes to disk.
 * Built to its own file (dist/, and a second esbuild entry beside agent.cjs in the ramdisk).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { createHash } from 'node:crypto';
import { fsyncSync, openSync, writeSync, writevSync } from 'node:fs';
import { skipBytes } from './buffers.js';

/** What the main thread (image-writer.ts, class Sink) sends. */
export type SinkRequest = { op: 'hash' | 'write' | 'both'; bufs: ArrayBuffer[] } | { op: 'finish' } | { op: 'wipe' };
/** What this worker answers: byte acks, the final digest, a wipe, or the first error. */
export type SinkReply = { ack: number; error?: string } | { digest: string; written: number } | { wiped: number } | { error: string; ack?: number };
export interface SinkWorkerData {
  target: string;
  algo: string;
}

const { target, algo } = workerData as SinkWorkerData;
const port = parentPort!;
const hash = createHash(algo);
let fd = -1;
let pos = 0;
let failed: string | null = null;
try {
  fd = openSync(target, 'r+');
} catch (e) {
  failed = `cannot open target ${target}: ${(e as Error).message}`;
}

const reply = (m: SinkReply) => port.postMessage(m);

/** Zeroes the first and last MiB of what was written (enough to make a partial image unbootable). */
function wipe(): void {
  if (fd < 0 || pos === 0) return;
  const mib = 1 << 20;
  const z = Buffer.alloc(Math.min(mib, pos));
  writeSync(fd, z, 0, z.length, 0);
  if (pos > mib) writeSync(fd, z, 0, Math.min(mib, pos - mib), Math.max(mib, pos - mib));
  fsyncSync(fd);
}


port.on('message', (m: SinkRequest) => {
  try {
    if (m.op === 'finish') {
      if (failed) return reply({ error: failed });
      fsyncSync(fd);
      return reply({ digest: hash.digest('hex'), written: pos });
    }
    if (m.op === 'wipe') {
      wipe();
      return reply({ wiped: pos });
    }
    const bufs = m.bufs.map((a) => new Uint8Array(a));
    let n = 0;
    for (const b of bufs) n += b.length;
    if (m.op !== 'write') for (const b of bufs) hash.update(b);
    if (m.op !== 'hash' && !failed) {
      let off = 0;
      while (off < n) {
        const w = writevSync(fd, off === 0 ? bufs : skipBytes(bufs, off), pos);
        pos += w;
        off += w;
      }
    }
    reply({ ack: n });
  } catch (e) {
    failed = `write to ${target} at ${pos} failed: ${(e as Error).message}`;
    reply({ error: failed, ack: 0 });
  }
});
