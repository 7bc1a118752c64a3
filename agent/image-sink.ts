/**
 * Where the image writer's bytes go: hashed, written sequentially, fsynced, or wiped. Two sinks with
 * one contract: `RingSink` hands bytes to a worker thread (image-sink-worker.ts) through a shared
 * ring buffer, so hashing and writing run beside the download; `InlineSink` does it all on the
 * main thread for small images, where starting a thread costs more than the work.
 *
 * Why a ring and not transferred buffers: transferring every 64 KiB socket buffer to the worker
 * meant the main thread allocated fresh memory for each read and the worker freed it, and that
 * churn (page faults, zeroing, cross-thread frees) cost more system time than the copy into a ring
 * that stays resident. One memcpy per byte on the main thread buys it back.
 */
import { createHash, type Hash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { alignedLength, alignedMemory, skipBytes, takeBytes } from './buffers.js';
import { ImageWriteError } from './image-write-error.js';
import { SINK_OP, type SinkReply, type SinkWorkerData } from './image-sink-protocol.js';

/**
 * The sink worker's file: compiled beside this module (dist/agent/), the build when this module
 * runs from TypeScript sources (tests), and beside agent.cjs in the ramdisk (a second esbuild entry;
 * the bundle defines import.meta.url as its own file).
 */
const SINK_WORKER = [new URL('./image-sink-worker.js', import.meta.url), new URL('../dist/agent/image-sink-worker.js', import.meta.url)]
  .map((u) => fileURLToPath(u))
  .find((f) => existsSync(f)) ?? fileURLToPath(new URL('./image-sink-worker.js', import.meta.url));

/** What to do with a buffer: hash it (the download of a compressed image), write it (its decoded bytes), or both (raw). */
export type SinkOp = keyof typeof SINK_OP;

export interface ImageSink {
  push(op: SinkOp, chunk: Buffer): Promise<void>;
  /** Everything queued is hashed and written, the target fsynced: the digest and bytes written. */
  finish(): Promise<{ digest: string; written: number }>;
  /** Zeroes the first and last MiB of what was written (a partial image must not look bootable). */
  wipe(): Promise<void>;
  close(): Promise<unknown>;
}

/** Images up to this size (from Content-Length) are hashed and written on the main thread. */
export const INLINE_MAX_BYTES = 16 << 20;

/** The same contract as the ring sink, on the main thread with async writes (small images). */
export class InlineSink implements ImageSink {
  private readonly hash: Hash;
  private fh: FileHandle | undefined;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private pos = 0;

  private constructor(private readonly target: string, algo: string, private readonly batchBytes: number) {
    this.hash = createHash(algo);
  }

  static async open(target: string, algo: string, batchBytes: number): Promise<InlineSink> {
    const s = new InlineSink(target, algo, batchBytes);
    s.fh = await open(target, 'r+').catch((err: Error) => {
      throw new ImageWriteError('IO_ERROR', `cannot open target ${target}: ${err.message}`);
    });
    return s;
  }

  async push(op: SinkOp, chunk: Buffer): Promise<void> {
    if (op !== 'write') this.hash.update(chunk);
    if (op === 'hash') return;
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    if (this.pendingBytes >= this.batchBytes) await this.flush();
  }

  /** Writes what is queued: all of it at the end, else the part that ends aligned (WRITE_ALIGN). */
  private async flush(all = false): Promise<void> {
    const n = all ? this.pendingBytes : alignedLength(this.pos, this.pendingBytes);
    if (n === 0) return;
    let bufs = takeBytes(this.pending, n);
    let left = n;
    this.pending = skipBytes(this.pending, n);
    this.pendingBytes -= n;
    try {
      while (left > 0) {
        const { bytesWritten } = await this.fh!.writev(bufs, this.pos);
        this.pos += bytesWritten;
        left -= bytesWritten;
        bufs = skipBytes(bufs, bytesWritten);
      }
    } catch (err) {
      throw new ImageWriteError('IO_ERROR', `write to ${this.target} at ${this.pos} failed: ${(err as Error).message}`);
    }
  }

  async finish(): Promise<{ digest: string; written: number }> {
    await this.flush(true);
    await this.fh!.sync();
    return { digest: this.hash.digest('hex'), written: this.pos };
  }

  async wipe(): Promise<void> {
    if (!this.fh || this.pos === 0) return;
    const mib = 1 << 20;
    const z = Buffer.alloc(Math.min(mib, this.pos));
    await this.fh.write(z, 0, z.length, 0);
    if (this.pos > mib) await this.fh.write(z, 0, Math.min(mib, this.pos - mib), Math.max(mib, this.pos - mib));
    await this.fh.sync();
  }

  async close(): Promise<void> {
    await this.fh?.close();
    this.fh = undefined;
  }
}

/**
 * Main-thread side of the sink worker. Bytes are copied into a shared ring at `head`; segments
 * (op, offset, length) go to the worker in batches, in ring order; the worker acknowledges bytes it
 * is done with, which frees ring space from the tail. Bytes in flight are bounded by the ring.
 */
export class RingSink implements ImageSink {
  private readonly worker: Worker;
  /** A Buffer, so copies in are one memcpy (TypedArray.set into shared memory copies with relaxed atomics, ~2x slower). */
  private readonly ring: Buffer;
  /** Bytes ever copied into the ring, and bytes the worker has acknowledged. */
  private head = 0;
  private acked = 0;
  /** Segments not yet sent: flat (op, offset, length) triples, in ring order. */
  private segs: number[] = [];
  private segBytes = 0;
  private waiters: Array<() => void> = [];
  private replies: Array<(m: SinkReply) => void> = [];
  private readonly batchBytes: number;
  private exited = false;
  error: string | undefined;

  /**
   * `direct`: the worker writes with O_DIRECT when the target takes it — straight from the ring
   * while every byte pushed is 'both' (a raw image), through its own aligned stage otherwise.
   * Hence the ring is page-aligned (alignedMemory).
   */
  constructor(target: string, algo: string, o: { batchBytes?: number; ringBytes?: number; direct?: boolean } = {}) {
    this.batchBytes = o.batchBytes ?? 1 << 20;
    const sab = alignedMemory(o.ringBytes ?? 16 << 20, true) as SharedArrayBuffer;
    this.ring = Buffer.from(sab);
    this.worker = new Worker(SINK_WORKER, { workerData: { target, algo, ring: sab, direct: o.direct ?? false } satisfies SinkWorkerData });
    this.worker.on('message', (m: SinkReply) => {
      if ('error' in m && typeof m.error === 'string') this.error ??= m.error;
      if ('ack' in m) {
        this.acked += m.ack;
        if (this.head - this.acked <= this.ring.length / 2 || this.error) this.wake();
        if (m.error === undefined) return;
      }
      if (!('ack' in m)) this.replies.shift()?.(m);
    });
    this.worker.on('error', (err) => {
      this.error ??= err.message;
      this.wake();
    });
    // A thread that is gone answers nothing: whoever waits for it gets the error instead.
    this.worker.on('exit', () => {
      this.exited = true;
      this.error ??= 'the image sink thread stopped';
      this.wake();
      for (const r of this.replies.splice(0)) r({ error: this.error });
    });
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Copies the chunk into the ring (waiting for room), sending a batch when one is full. */
  async push(op: SinkOp, chunk: Buffer): Promise<void> {
    const size = this.ring.length;
    for (let at = 0; at < chunk.length; ) {
      if (this.error) throw new ImageWriteError('IO_ERROR', this.error);
      const free = size - (this.head - this.acked);
      if (free === 0) {
        this.send();
        await new Promise<void>((r) => this.waiters.push(r));
        continue;
      }
      const off = this.head % size;
      const n = Math.min(chunk.length - at, free, size - off);
      chunk.copy(this.ring, off, at, at + n);
      this.segs.push(SINK_OP[op], off, n);
      this.head += n;
      this.segBytes += n;
      at += n;
    }
    if (this.segBytes >= this.batchBytes) this.send();
  }

  private send(): void {
    if (!this.segBytes) return;
    this.worker.postMessage({ op: 'data', segs: this.segs });
    this.segs = [];
    this.segBytes = 0;
  }

  private call(msg: { op: 'finish' | 'wipe' | 'close' }): Promise<SinkReply> {
    return new Promise((resolve) => {
      if (this.exited) return resolve({ error: this.error ?? 'the image sink thread stopped' });
      this.replies.push(resolve);
      this.worker.postMessage(msg);
    });
  }

  async finish(): Promise<{ digest: string; written: number; directBytes: number }> {
    this.send();
    const r = await this.call({ op: 'finish' });
    if ('error' in r && typeof r.error === 'string') throw new ImageWriteError('IO_ERROR', r.error);
    if (!('digest' in r)) throw new ImageWriteError('IO_ERROR', 'the sink worker answered finish without a digest');
    return { digest: r.digest, written: r.written, directBytes: r.directBytes };
  }

  async wipe(): Promise<void> {
    await this.call({ op: 'wipe' });
  }

  /** Closes the target (the worker's descriptors are the process's) and stops the thread. */
  async close(): Promise<number> {
    if (!this.exited) await this.call({ op: 'close' });
    return this.worker.terminate();
  }
}
