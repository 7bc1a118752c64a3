/**
 * The image sink's worker thread: reads segments of a ring shared with the main thread
 * (image-sink.ts, RingSink), hashes what it is told to hash, writes what it is told to write,
 * acknowledges bytes once their ring space may be reused, and on request fsyncs and returns the
 * digest, or wipes what it wrote. Hashing and writing here keep the agent's event loop free for the
 * stream to the conductor while an image goes to disk. Built to its own file (dist/, and a second
 * esbuild entry beside agent.cjs in the ramdisk).
 *
 * Three ways to write. Direct from the ring, for a raw image (as IPA writes with `qemu-img convert
 * -t directsync`) onto a block device or a file whose filesystem takes O_DIRECT: writes go straight
 * from the page-aligned ring, 64 KiB-aligned, with no copy into the page cache; bytes not yet
 * written stay in the ring, unacknowledged, until the next aligned boundary or the end. Staged, for
 * a compressed image on such a target: the decompressed bytes are not contiguous in the ring (the
 * compressed bytes being hashed sit between them), so they are copied into this thread's own
 * page-aligned buffer and written O_DIRECT from there each time it fills — a memcpy here is far
 * cheaper than the kernel's copy into freshly allocated page cache. Buffered, for a target that
 * refuses O_DIRECT (tmpfs before Linux 6.6) or a sink not asked to write direct (qcow2 scratch):
 * writev through the page cache, each write ending on a 64 KiB boundary, the remainder copied out
 * of the ring. On this machine, 512 MiB onto a loop device took 0.04 s of CPU written direct
 * against 1.5 s buffered.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { createHash } from 'node:crypto';
import { closeSync, constants, fsyncSync, openSync, writeSync, writevSync } from 'node:fs';
import { alignedLength, alignedMemory, skipBytes, takeBytes, WRITE_ALIGN } from './buffers.js';
import { SINK_OP, type SinkReply, type SinkRequest, type SinkWorkerData } from './image-sink-protocol.js';

const { target, algo, ring, direct: directWanted } = workerData as SinkWorkerData;
const port = parentPort!;
const bytes = new Uint8Array(ring);
const hash = createHash(algo);
let fd = -1;
/** The O_DIRECT descriptor (-1 if the target refused it); used while mode is not 'buffered'. */
let dfd = -1;
/** 'ring' while every byte so far was raw and in ring order; then 'stage' (direct) or 'buffered'. */
let mode: 'ring' | 'stage' | 'buffered' = 'buffered';
/** File position of the next byte to write (in stage mode: of stage[0]). */
let pos = 0;
/** Bytes written with O_DIRECT (the rest went through the page cache). */
let directBytes = 0;
/** Ring mode: bytes received (hashed) so far; pos..received is in the ring at pos % ring size. */
let received = 0;
let failed: string | null = null;
/** Buffered: bytes received but held back (copied out of the ring) so writes end aligned. */
let carry: Buffer[] = [];
let carryBytes = 0;
/** Stage mode: this thread's page-aligned buffer (WebAssembly memory) and the bytes in it. */
const STAGE_BYTES = 4 << 20;
let stage: Uint8Array | undefined;
let staged = 0;
try {
  fd = openSync(target, 'r+');
  if (directWanted) dfd = openDirect();
  if (dfd >= 0) mode = 'ring';
} catch (e) {
  failed = `cannot open target ${target}: ${(e as Error).message}`;
}

function openDirect(): number {
  try {
    return openSync(target, constants.O_WRONLY | constants.O_DIRECT);
  } catch {
    return -1; // a device that refuses O_DIRECT is written through the page cache
  }
}

const reply = (m: SinkReply) => port.postMessage(m);

/** Writes all `n` bytes of `bufs` at `pos` through the page cache (writev may write less). */
function writeAll(bufs: Uint8Array[], n: number): void {
  for (let off = 0; off < n; ) {
    const w = writevSync(fd, off === 0 ? bufs : skipBytes(bufs, off), pos);
    pos += w;
    off += w;
  }
}

/** Buffered: writes the aligned part of what is held back plus `bufs`; copies the rest out. */
function writeBuffered(bufs: Uint8Array[], n: number): void {
  const all: Uint8Array[] = carryBytes ? [...carry, ...bufs] : bufs;
  const total = carryBytes + n;
  const now = alignedLength(pos, total);
  if (now > 0) writeAll(takeBytes(all, now), now);
  carry = [Buffer.concat(skipBytes(all, now))];
  carryBytes = total - now;
}

/** The ring's views of bytes pos..end (two when they wrap). */
function ringViews(end: number): Uint8Array[] {
  const off = pos % bytes.length;
  const n = end - pos;
  if (off + n <= bytes.length) return [bytes.subarray(off, off + n)];
  return [bytes.subarray(off), bytes.subarray(0, n - (bytes.length - off))];
}

/** Writes `v` at pos with O_DIRECT; false (nothing lost, pos at the first unwritten byte) if refused. */
function writeDirectly(v: Uint8Array): number {
  let off = 0;
  try {
    while (off < v.length) {
      const w = writeSync(dfd, v, off, v.length - off, pos);
      pos += w;
      directBytes += w;
      off += w;
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EINVAL') throw e;
  }
  return off;
}

/** Ring mode: writes from the ring up to `end` (aligned); falls back to buffered if refused. */
function writeDirect(end: number): void {
  for (const v of ringViews(end)) {
    if (writeDirectly(v) < v.length) return leaveDirect();
  }
}

/** Stops writing direct: what is held unwritten (ring tail or stage) becomes the buffered carry. */
function leaveDirect(): void {
  const held = mode === 'ring' ? ringViews(received) : [stage!.subarray(0, staged)];
  carry = [Buffer.concat(held)];
  carryBytes = carry[0]!.length;
  staged = 0;
  mode = 'buffered';
}

/**
 * Ring mode ends (a compressed stream, or bytes out of order): the ring's whole blocks are written
 * direct first, as the end of a batch would have, then the unaligned rest goes to the stage. Why
 * first: without it, how much of the raw head went direct depended on where the main thread's
 * batches happened to split the stream.
 */
function leaveRing(): void {
  const end = received - (received % WRITE_ALIGN);
  if (end > pos) writeDirect(end);
  if (mode !== 'ring') return; // refused: leaveDirect() made the rest the buffered carry
  const held = ringViews(received);
  mode = 'stage';
  toStage(held);
}

/** Stage mode: copies the views into the stage, writing it O_DIRECT each time it fills. */
function toStage(views: Uint8Array[]): void {
  stage ??= new Uint8Array(alignedMemory(STAGE_BYTES, false));
  for (let i = 0; i < views.length; i++) {
    const v = views[i]!;
    for (let off = 0; off < v.length; ) {
      const k = Math.min(v.length - off, STAGE_BYTES - staged);
      stage.set(off === 0 && k === v.length ? v : v.subarray(off, off + k), staged);
      staged += k;
      off += k;
      if (staged < STAGE_BYTES) continue;
      const w = writeDirectly(stage);
      if (w < STAGE_BYTES) {
        // Refused mid-way: the rest of the stage and of these views go through the page cache.
        stage.copyWithin(0, w);
        staged -= w;
        leaveDirect();
        const rest = [v.subarray(off), ...views.slice(i + 1)];
        return writeBuffered(rest, rest.reduce((n, x) => n + x.length, 0));
      }
      staged = 0;
    }
  }
}

/** Zeroes the first and last MiB of what was written (enough to make a partial image unbootable). */
function wipe(): void {
  if (fd < 0 || pos === 0) return;
  const mib = 1 << 20;
  const z = Buffer.alloc(Math.min(mib, pos));
  writeSync(fd, z, 0, z.length, 0);
  if (pos > mib) writeSync(fd, z, 0, Math.min(mib, pos - mib), Math.max(mib, pos - mib));
  fsyncSync(fd);
}

/** Ring bytes received in all, and acknowledged in all (see data()). */
let ringIn = 0;
let ringAcked = 0;

/**
 * Hashes and writes one batch of segments; answers how many more ring bytes may be reused. The
 * main thread frees ring space in ring order, so what is acknowledged is everything received but
 * the direct tail still to be written, which is always the newest bytes.
 */
function data(segs: number[]): number {
  const out: Uint8Array[] = [];
  let outBytes = 0;
  for (let i = 0; i < segs.length; i += 3) {
    const op = segs[i]!;
    const view = new Uint8Array(ring, segs[i + 1]!, segs[i + 2]!);
    ringIn += view.length;
    // Direct writing reads the ring by file position: only a run of raw bytes, in order, qualifies.
    if (mode === 'ring' && (op !== SINK_OP.both || segs[i + 1] !== received % bytes.length) && !failed) leaveRing();
    if (op !== SINK_OP.write) hash.update(view);
    if (op === SINK_OP.hash || failed) continue;
    if (mode === 'ring') received += view.length;
    else if (mode === 'stage') toStage([view]);
    else {
      out.push(view);
      outBytes += view.length;
    }
  }
  if (!failed) {
    if (mode === 'ring') {
      const end = received - (received % WRITE_ALIGN);
      if (end > pos) writeDirect(end);
    }
    if (outBytes) writeBuffered(out, outBytes);
  }
  const held = mode === 'ring' ? received - pos : 0;
  const ack = ringIn - held - ringAcked;
  ringAcked += ack;
  return ack;
}

/** Direct: writes what is held (ring tail or stage) through the page cache (O_DIRECT needs whole blocks). */
function finishDirect(): void {
  if (mode === 'ring') writeAll(ringViews(received), received - pos);
  else if (mode === 'stage') writeAll([stage!.subarray(0, staged)], staged);
  staged = 0;
  mode = 'buffered';
}

port.on('message', (m: SinkRequest) => {
  try {
    if (m.op === 'finish') {
      if (failed) return reply({ error: failed });
      finishDirect();
      writeAll(carry, carryBytes);
      carry = [];
      carryBytes = 0;
      fsyncSync(fd);
      return reply({ digest: hash.digest('hex'), written: pos, directBytes });
    }
    if (m.op === 'wipe') {
      wipe();
      return reply({ wiped: pos });
    }
    if (m.op === 'close') {
      // Descriptors belong to the process, not this thread: terminating it would not close them.
      for (const d of [dfd, fd]) if (d >= 0) closeSync(d);
      dfd = fd = -1;
      return reply({ closed: true });
    }
    reply({ ack: data(m.segs) });
  } catch (e) {
    failed = `write to ${target} at ${pos} failed: ${(e as Error).message}`;
    reply({ error: failed, ack: 0 });
  }
});
