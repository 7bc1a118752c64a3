/**
 * Streams an HTTP(S) image onto a block device (or file) in one pass: download (main thread) →
 * decompress (raw, gzip, zstd) → hash + write in a sink worker thread that reads them from a ring
 * shared with the main thread (image-sink.ts), so the network, the hash and the writes overlap on
 * separate threads. A dropped connection resumes with an HTTP Range request instead of starting
 * over. A checksum mismatch fails the write and wipes the start and end of what was written, so
 * nothing half-written is ever left looking bootable. Small images (≤ 16 MiB announced) skip the
 * worker: a thread costs more to start than hashing a few MiB on the main thread.
 *
 * qcow2 is not streamable (its clusters are addressed through tables anywhere in the file), so a
 * qcow2 image is downloaded and verified into a scratch file, inspected with `qemu-img info`
 * (backing files and external data files are refused), then converted onto the target with
 * `qemu-img convert -n`. That needs scratch space the size of the image, as in IPA; raw, gzip
 * and zstd need none.
 */
import { createHash, type Hash } from 'node:crypto';
import { mkdtemp, open, rm, writeFile, type FileHandle } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ImageWriteError } from './image-write-error.js';
import { INLINE_MAX_BYTES, InlineSink, RingSink, type ImageSink } from './image-sink.js';
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { createGunzip } from 'node:zlib';
import { Duplex, type Transform } from 'node:stream';
import { request } from 'undici';
import { redactUrl } from '../shared/redact.js';

export { ImageWriteError };

export interface ImageInfo {
  url: string;
  /** A hex digest, or a URL of a checksum file (IPA style). */
  checksum: string;
  checksum_algo?: 'sha256' | 'sha512' | 'md5';
  disk_format?: DiskFormat;
}

export type DiskFormat = 'raw' | 'gzip' | 'zstd' | 'qcow2';

export interface WriteProgress {
  bytesDownloaded: number;
  bytesTotal: number;
  bytesWritten: number;
  rateBytesPerS: number;
  etaS: number;
}

export interface WriteOptions {
  target: string;
  md5Allowed?: boolean;
  /** Write size; multiple of 4096. @default 1 MiB */
  bufferBytes?: number;
  /** Resume attempts after a dropped transfer. @default 5 */
  retries?: number;
  progress?: (p: WriteProgress) => void;
  progressIntervalMs?: number;
  signal?: AbortSignal;
  /** Where a qcow2 image is staged before conversion. @default os.tmpdir() */
  scratchDir?: string;
  /**
   * Read the written bytes back (a block device's buffer cache is flushed first, so they come from
   * the device) and compare their checksum with the image's. Raw images only. @default false
   */
  verify?: boolean;
}

export interface WriteResult {
  bytes_written: number;
  bytes_downloaded: number;
  checksum_algo: string;
  checksum: string;
  resumed: number;
  duration_ms: number;
  rate_bytes_per_s: number;
  disk_format: string;
  /** With `verify`: the checksum of the bytes read back from the target. */
  read_back_checksum?: string;
}

/**
 * Image servers behind HTTP basic auth are given as `https://user:pass@host/…`. The credentials
 * travel as an Authorization header (never in the request line) and never in a message: every
 * error quotes the URL with its userinfo masked.
 */
export function withUrlCredentials(url: string): { url: string; headers: Record<string, string>; shown: string } {
  const u = new URL(url);
  const headers: Record<string, string> = {};
  if (u.username || u.password) {
    headers.authorization = `Basic ${Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString('base64')}`;
    u.username = '';
    u.password = '';
  }
  return { url: u.toString(), headers, shown: redactUrl(url) };
}

/** sha256 / sha512 / md5 from the digest length, as IPA infers it. */
export function algoForDigest(hex: string): 'sha256' | 'sha512' | 'md5' | undefined {
  if (!/^[0-9a-f]+$/i.test(hex)) return undefined;
  return hex.length === 64 ? 'sha256' : hex.length === 128 ? 'sha512' : hex.length === 32 ? 'md5' : undefined;
}

async function resolveChecksum(info: ImageInfo): Promise<{ algo: 'sha256' | 'sha512' | 'md5'; digest: string }> {
  let digest = info.checksum.trim();
  if (/^https?:\/\//.test(digest)) {
    const src = withUrlCredentials(digest);
    const res = await request(src.url, { headers: src.headers }).catch((err: Error) => {
      throw new ImageWriteError('CHECKSUM_INVALID', `cannot fetch checksum file ${src.shown}: ${err.message}`);
    });
    const text = await res.body.text();
    if (res.statusCode !== 200) throw new ImageWriteError('CHECKSUM_INVALID', `checksum file ${src.shown}: HTTP ${res.statusCode}`);
    const file = new URL(info.url).pathname.split('/').pop() ?? '';
    const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
    const hit = lines.find((l) => l.split(/\s+/).slice(1).some((n) => n.replace(/^\*/, '') === file)) ?? (lines.length === 1 ? lines[0] : undefined);
    if (!hit) throw new ImageWriteError('CHECKSUM_INVALID', `checksum file ${redactUrl(digest)} has no entry for ${file}`);
    digest = hit.split(/\s+/)[0]!;
  }
  const algo = info.checksum_algo ?? algoForDigest(digest);
  if (!algo || algoForDigest(digest) !== algo) throw new ImageWriteError('CHECKSUM_INVALID', `checksum "${digest.slice(0, 20)}…" is not a valid ${info.checksum_algo ?? 'sha256/sha512'} digest`);
  return { algo, digest: digest.toLowerCase() };
}

interface Decoder {
  stream: Duplex | Transform;
  /** Resolves when the decoder itself says the stream was complete and valid. */
  finished: Promise<void>;
}

function decompressor(format: 'gzip' | 'zstd'): Decoder {
  if (format === 'gzip') return { stream: createGunzip(), finished: Promise.resolve() };
  // Node 20 has no zstd in zlib: stream through the zstd tool (present in the ramdisk).
  const p = spawn('zstd', ['-dc', '-q'], { stdio: ['pipe', 'pipe', 'pipe'] });
  const d = Duplex.from({ writable: p.stdin, readable: p.stdout });
  let err = '';
  p.stderr.on('data', (x) => (err += x));
  const finished = new Promise<void>((resolve, reject) => {
    p.on('error', (e) => reject(new ImageWriteError('DECOMPRESS_FAILED', `zstd not available: ${e.message}`)));
    p.on('close', (code) => (code === 0 ? resolve() : reject(new ImageWriteError('DECOMPRESS_FAILED', `zstd failed (exit ${code}): ${err.trim() || 'truncated or corrupt stream'}`))));
  });
  finished.catch((e) => d.destroy(e));
  return { stream: d, finished };
}


const execFileP = promisify(execFile);

/** Refuse qcow2 images that point outside themselves (backing file, external data file). */
async function inspectQcow2(file: string): Promise<number> {
  let out: string;
  try {
    out = (await execFileP('qemu-img', ['info', '--output=json', '-f', 'qcow2', file], { maxBuffer: 1 << 20 })).stdout;
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') throw new ImageWriteError('CONVERT_FAILED', 'qcow2 images need qemu-img, which is not installed on this agent');
    throw new ImageWriteError('CONVERT_FAILED', `qemu-img info failed: ${(e.stderr ?? e.message).trim()}`);
  }
  const info = JSON.parse(out) as { 'virtual-size'?: number; 'backing-filename'?: string; 'format-specific'?: { data?: { 'data-file'?: string } } };
  if (info['backing-filename']) throw new ImageWriteError('UNSAFE_IMAGE', `qcow2 image has a backing file (${info['backing-filename']}); refused`);
  if (info['format-specific']?.data?.['data-file']) throw new ImageWriteError('UNSAFE_IMAGE', 'qcow2 image has an external data file; refused');
  return Number(info['virtual-size'] ?? 0);
}

function detectFormat(first: Buffer): DiskFormat {
  if (first[0] === 0x1f && first[1] === 0x8b) return 'gzip';
  if (first.length >= 4 && first.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  if (first.length >= 4 && first.readUInt32BE(0) === 0x514649fb) return 'qcow2';
  return 'raw';
}

export async function writeImage(info: ImageInfo, o: WriteOptions): Promise<WriteResult> {
  const t0 = Date.now();
  const { algo, digest } = await resolveChecksum(info);
  if (algo === 'md5' && !o.md5Allowed) throw new ImageWriteError('MD5_NOT_ALLOWED', 'md5 checksums are refused; use sha256/sha512 (or enable md5 explicitly)');
  const maxRetries = o.retries ?? 5;
  // Opened here only to fail early and clearly; the sink worker writes.
  await (await open(o.target, 'r+').catch((err: Error) => {
    throw new ImageWriteError('IO_ERROR', `cannot open target ${o.target}: ${err.message}`);
  })).close();
  let format: DiskFormat | undefined = info.disk_format;
  let scratch: string | undefined;
  let sinkTarget = o.target;
  if (format === 'qcow2') {
    scratch = await mkdtemp(path.join(o.scratchDir ?? os.tmpdir(), 'ironfleet-qcow2-'));
    sinkTarget = path.join(scratch, 'image.qcow2');
    await writeFile(sinkTarget, '');
  }
  const batch = o.bufferBytes ?? 1 << 20;
  // Created once the first bytes (format) and the announced size are known.
  let sink: ImageSink | undefined;
  let downloaded = 0;
  let total = 0;
  let resumed = 0;
  let lastProgress = 0;
  let written = 0;
  const report = (force = false) => {
    const now = Date.now();
    if (!o.progress || (!force && now - lastProgress < (o.progressIntervalMs ?? 1000))) return;
    lastProgress = now;
    const rate = downloaded / Math.max(0.001, (now - t0) / 1000);
    o.progress({ bytesDownloaded: downloaded, bytesTotal: total, bytesWritten: written, rateBytesPerS: rate, etaS: total ? Math.max(0, (total - downloaded) / rate) : 0 });
  };
  let wroteTarget = false;
  try {
    let dec: Duplex | Transform | undefined;
    let decDone: Promise<void> = Promise.resolve();
    /** raw and qcow2: the downloaded bytes are written as they are; one buffer is hashed and written. */
    let passthrough = false;
    const start = async (first: Buffer) => {
      if (!format) {
        format = detectFormat(first);
        if (format === 'qcow2') {
          // Detected from the magic: stage into a scratch file like a declared qcow2.
          scratch = await mkdtemp(path.join(o.scratchDir ?? os.tmpdir(), 'ironfleet-qcow2-'));
          sinkTarget = path.join(scratch, 'image.qcow2');
          await writeFile(sinkTarget, '');
        }
      }
      sink = total > 0 && total <= INLINE_MAX_BYTES ? await InlineSink.open(sinkTarget, algo, batch) : new RingSink(sinkTarget, algo, { batchBytes: batch, direct: format !== 'qcow2' });
      wroteTarget = sinkTarget === o.target;
      if (format === 'raw' || format === 'qcow2') {
        passthrough = true;
        return;
      }
      const d = decompressor(format);
      dec = d.stream;
      decDone = (async () => {
        for await (const out of dec as AsyncIterable<Buffer>) {
          written += out.length;
          await sink!.push('write', out);
        }
        await d.finished;
      })().catch((err) => {
        throw err instanceof ImageWriteError ? err : new ImageWriteError('DECOMPRESS_FAILED', `${format} stream is corrupt or truncated: ${(err as Error).message}`);
      });
      decDone.catch(() => {});
    };
    let started = false;
    const src = withUrlCredentials(info.url);
    for (let attempt = 0; ; attempt++) {
      if (o.signal?.aborted) throw new ImageWriteError('CANCELLED', 'image write cancelled');
      const headers: Record<string, string> = downloaded > 0 ? { ...src.headers, range: `bytes=${downloaded}-` } : { ...src.headers };
      let res;
      try {
        res = await request(src.url, { headers, signal: o.signal, headersTimeout: 30_000, bodyTimeout: 60_000 });
      } catch (err) {
        if (o.signal?.aborted) throw new ImageWriteError('CANCELLED', 'image write cancelled');
        if (attempt >= maxRetries) throw new ImageWriteError('DOWNLOAD_FAILED', `download of ${redactUrl(info.url)} failed: ${(err as Error).message}`);
        await new Promise((r) => setTimeout(r, 200 * (attempt + 1)));
        continue;
      }
      if (res.statusCode >= 400) {
        await res.body.dump();
        throw new ImageWriteError('HTTP_ERROR', `download of ${redactUrl(info.url)} failed: HTTP ${res.statusCode}`);
      }
      if (downloaded > 0) {
        const cr = String(res.headers['content-range'] ?? '');
        if (res.statusCode !== 206 || !cr.startsWith(`bytes ${downloaded}-`)) {
          await res.body.dump();
          throw new ImageWriteError('DOWNLOAD_FAILED', `server cannot resume ${redactUrl(info.url)} at byte ${downloaded} (HTTP ${res.statusCode}); not restarting a partial write`);
        }
        resumed++;
      } else {
        total = Number(res.headers['content-length'] ?? 0);
      }
      try {
        for await (const chunk of res.body as AsyncIterable<Buffer>) {
          if (o.signal?.aborted) throw new ImageWriteError('CANCELLED', 'image write cancelled');
          if (!started) {
            started = true;
            await start(chunk);
          }
          downloaded += chunk.length;
          if (passthrough) {
            written += chunk.length;
            await sink!.push('both', chunk);
          } else {
            // The sink copies the chunk into its ring before the decoder gets it.
            await sink!.push('hash', chunk);
            if (!dec!.write(chunk)) await new Promise((r) => dec!.once('drain', r));
          }
          report();
        }
        if (total && downloaded < total) throw new Error(`connection closed at ${downloaded} of ${total} bytes`);
        break;
      } catch (err) {
        if (err instanceof ImageWriteError) throw err;
        if (attempt >= maxRetries) throw new ImageWriteError('DOWNLOAD_FAILED', `download of ${redactUrl(info.url)} kept failing: ${(err as Error).message}`);
        // Resume from `downloaded` with a Range request on the next attempt.
      }
    }
    if (!started) throw new ImageWriteError('DOWNLOAD_FAILED', `${redactUrl(info.url)} is empty`);
    dec?.end();
    await decDone;
    const fin = await sink!.finish();
    if (fin.digest !== digest) {
      await sink!.wipe();
      throw new ImageWriteError('CHECKSUM_MISMATCH', `checksum mismatch for ${redactUrl(info.url)}: expected ${algo} ${digest}, got ${fin.digest}; ${wroteTarget ? 'the target was wiped' : 'nothing was written to the target'}`);
    }
    if (format === 'qcow2') written = await convertQcow2(sinkTarget, o.target);
    let readBack: string | undefined;
    if (o.verify && format === 'raw') {
      readBack = await readBackDigest(o.target, algo, written);
      if (readBack !== digest) {
        throw new ImageWriteError('VERIFY_FAILED', `read-back of ${o.target} does not match: ${algo} of the ${written} bytes written is ${readBack}, the image's is ${digest}`);
      }
    }
    report(true);
    const ms = Date.now() - t0;
    return { bytes_written: written, bytes_downloaded: downloaded, checksum_algo: algo, checksum: fin.digest, resumed, duration_ms: ms, rate_bytes_per_s: Math.round(downloaded / Math.max(0.001, ms / 1000)), disk_format: format ?? 'raw', ...(readBack ? { read_back_checksum: readBack } : {}) };
  } catch (err) {
    if (!(err instanceof ImageWriteError) || err.code !== 'CHECKSUM_MISMATCH') {
      await sink?.wipe().catch(() => {});
    }
    throw err instanceof ImageWriteError ? err : new ImageWriteError('IO_ERROR', (err as Error).message);
  } finally {
    await sink?.close();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  }
}

/**
 * The digest of the first `bytes` of the target, read back. For a block device the kernel's buffer
 * cache is dropped first (`blockdev --flushbufs`), so the bytes come from the device (for an md
 * array, from its members) rather than from what was just written into memory.
 */
async function readBackDigest(target: string, algo: string, bytes: number): Promise<string> {
  const fh = await open(target, 'r');
  try {
    if ((await fh.stat()).isBlockDevice()) await execFileP('blockdev', ['--flushbufs', target]).catch(() => undefined);
    const h = createHash(algo);
    const buf = Buffer.allocUnsafe(4 << 20);
    for (let pos = 0; pos < bytes; ) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, bytes - pos), pos);
      if (bytesRead === 0) throw new ImageWriteError('VERIFY_FAILED', `read-back of ${target} ended at byte ${pos} of ${bytes}`);
      h.update(buf.subarray(0, bytesRead));
      pos += bytesRead;
    }
    return h.digest('hex');
  } finally {
    await fh.close();
  }
}

/** Verified qcow2 → raw onto the target; returns the virtual size written. */
async function convertQcow2(file: string, target: string): Promise<number> {
  const size = await inspectQcow2(file);
  try {
    await execFileP('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', '-n', file, target], { maxBuffer: 1 << 20 });
  } catch (err) {
    const e = err as Error & { stderr?: string };
    await wipeFile(target).catch(() => {});
    throw new ImageWriteError('CONVERT_FAILED', `qemu-img convert onto ${target} failed: ${(e.stderr ?? e.message).trim()}`);
  }
  const fh = await open(target, 'r+');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
  return size;
}

/** Zero the first MiB of a target (partition table and boot sector gone). */
async function wipeFile(target: string): Promise<void> {
  const fh = await open(target, 'r+');
  try {
    await fh.write(Buffer.alloc(1 << 20), 0, 1 << 20, 0);
    await fh.sync();
  } finally {
    await fh.close();
  }
}
