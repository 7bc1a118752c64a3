/**
 * Streams an HTTP(S) image onto a block device (or file) in one pass: download → hash (in a
 * worker thread, overlapped with I/O) → decompress (raw, gzip, zstd) → large aligned writes →
 * fsync. A dropped connection resumes with an HTTP Range request instead of starting over. A
 * checksum mismatch fails the write and wipes the start and end of what was written, so nothing
 * half-written is ever left looking bootable.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { Worker } from 'node:worker_threads';
import { spawn } from 'node:child_process';
import { createGunzip } from 'node:zlib';
import { Duplex, PassThrough, type Transform } from 'node:stream';
import { request } from 'undici';

export class ImageWriteError extends Error {
  constructor(
    readonly code: 'CHECKSUM_MISMATCH' | 'CHECKSUM_INVALID' | 'MD5_NOT_ALLOWED' | 'DOWNLOAD_FAILED' | 'HTTP_ERROR' | 'DECOMPRESS_FAILED' | 'IO_ERROR' | 'CANCELLED',
    message: string,
  ) {
    super(message);
    this.name = 'ImageWriteError';
  }
}

export interface ImageInfo {
  url: string;
  /** A hex digest, or a URL of a checksum file (IPA style). */
  checksum: string;
  checksum_algo?: 'sha256' | 'sha512' | 'md5';
  disk_format?: 'raw' | 'gzip' | 'zstd';
}

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
  /** Write size; multiple of 4096. @default 4 MiB */
  bufferBytes?: number;
  /** Resume attempts after a dropped transfer. @default 5 */
  retries?: number;
  progress?: (p: WriteProgress) => void;
  progressIntervalMs?: number;
  signal?: AbortSignal;
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
}

const HASH_WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const h = createHash(workerData.algo);
parentPort.on('message', (m) => {
  if (m === 'digest') parentPort.postMessage(h.digest('hex'));
  else h.update(new Uint8Array(m));
});
`;

/** sha256 / sha512 / md5 from the digest length, as IPA infers it. */
export function algoForDigest(hex: string): 'sha256' | 'sha512' | 'md5' | undefined {
  if (!/^[0-9a-f]+$/i.test(hex)) return undefined;
  return hex.length === 64 ? 'sha256' : hex.length === 128 ? 'sha512' : hex.length === 32 ? 'md5' : undefined;
}

async function resolveChecksum(info: ImageInfo): Promise<{ algo: 'sha256' | 'sha512' | 'md5'; digest: string }> {
  let digest = info.checksum.trim();
  if (/^https?:\/\//.test(digest)) {
    const res = await request(digest).catch((err: Error) => {
      throw new ImageWriteError('CHECKSUM_INVALID', `cannot fetch checksum file ${digest}: ${err.message}`);
    });
    const text = await res.body.text();
    if (res.statusCode !== 200) throw new ImageWriteError('CHECKSUM_INVALID', `checksum file ${digest}: HTTP ${res.statusCode}`);
    const file = new URL(info.url).pathname.split('/').pop() ?? '';
    const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
    const hit = lines.find((l) => l.split(/\s+/).slice(1).some((n) => n.replace(/^\*/, '') === file)) ?? (lines.length === 1 ? lines[0] : undefined);
    if (!hit) throw new ImageWriteError('CHECKSUM_INVALID', `checksum file ${digest} has no entry for ${file}`);
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

function decompressor(format: string): Decoder {
  if (format === 'gzip') return { stream: createGunzip(), finished: Promise.resolve() };
  if (format === 'zstd') {
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
  return { stream: new PassThrough(), finished: Promise.resolve() };
}

export async function writeImage(info: ImageInfo, o: WriteOptions): Promise<WriteResult> {
  const t0 = Date.now();
  const { algo, digest } = await resolveChecksum(info);
  if (algo === 'md5' && !o.md5Allowed) throw new ImageWriteError('MD5_NOT_ALLOWED', 'md5 checksums are refused; use sha256/sha512 (or enable md5 explicitly)');
  const bufSize = o.bufferBytes ?? 4 * 1024 * 1024;
  const maxRetries = o.retries ?? 5;
  const fh: FileHandle = await open(o.target, 'r+').catch((err: Error) => {
    throw new ImageWriteError('IO_ERROR', `cannot open target ${o.target}: ${err.message}`);
  });
  const hasher = new Worker(HASH_WORKER, { eval: true, workerData: { algo } });
  let written = 0;
  let downloaded = 0;
  let total = 0;
  let resumed = 0;
  let format = info.disk_format;
  let lastProgress = 0;
  const report = (force = false) => {
    const now = Date.now();
    if (!o.progress || (!force && now - lastProgress < (o.progressIntervalMs ?? 1000))) return;
    lastProgress = now;
    const rate = downloaded / Math.max(0.001, (now - t0) / 1000);
    o.progress({ bytesDownloaded: downloaded, bytesTotal: total, bytesWritten: written, rateBytesPerS: rate, etaS: total ? Math.max(0, (total - downloaded) / rate) : 0 });
  };
  // Writer: fill aligned buffers, write at increasing offsets.
  let buf = Buffer.allocUnsafe(bufSize);
  let fill = 0;
  let pendingWrite: Promise<unknown> = Promise.resolve();
  const flushBuf = async (final: boolean) => {
    if (fill === 0) return;
    const len = final ? fill : bufSize;
    const chunk = buf;
    const pos = written;
    written += len;
    buf = Buffer.allocUnsafe(bufSize);
    fill = 0;
    await pendingWrite;
    pendingWrite = fh.write(chunk, 0, len, pos).catch((err: Error) => {
      throw new ImageWriteError('IO_ERROR', `write to ${o.target} at ${pos} failed: ${err.message}`);
    });
  };
  const sink = async (data: Buffer) => {
    let off = 0;
    while (off < data.length) {
      const n = Math.min(bufSize - fill, data.length - off);
      data.copy(buf, fill, off, off + n);
      fill += n;
      off += n;
      if (fill === bufSize) await flushBuf(false);
    }
  };
  try {
    let dec: Duplex | Transform | undefined;
    let decDone: Promise<void> | undefined;
    const startDecoder = (first: Buffer) => {
      if (!format) format = first[0] === 0x1f && first[1] === 0x8b ? 'gzip' : first.readUInt32LE(0) === 0xfd2fb528 ? 'zstd' : 'raw';
      const d = decompressor(format);
      dec = d.stream;
      decDone = (async () => {
        for await (const out of dec as AsyncIterable<Buffer>) await sink(out);
        await d.finished;
      })().catch((err) => {
        throw err instanceof ImageWriteError ? err : new ImageWriteError('DECOMPRESS_FAILED', `${format} stream is corrupt or truncated: ${(err as Error).message}`);
      });
      decDone.catch(() => {});
    };
    for (let attempt = 0; ; attempt++) {
      if (o.signal?.aborted) throw new ImageWriteError('CANCELLED', 'image write cancelled');
      const headers: Record<string, string> = downloaded > 0 ? { range: `bytes=${downloaded}-` } : {};
      let res;
      try {
        res = await request(info.url, { headers, signal: o.signal, headersTimeout: 30_000, bodyTimeout: 60_000 });
      } catch (err) {
        if (o.signal?.aborted) throw new ImageWriteError('CANCELLED', 'image write cancelled');
        if (attempt >= maxRetries) throw new ImageWriteError('DOWNLOAD_FAILED', `download of ${info.url} failed: ${(err as Error).message}`);
        await new Promise((r) => setTimeout(r, 200 * (attempt + 1)));
        continue;
      }
      if (res.statusCode >= 400) {
        await res.body.dump();
        throw new ImageWriteError('HTTP_ERROR', `download of ${info.url} failed: HTTP ${res.statusCode}`);
      }
      if (downloaded > 0) {
        const cr = String(res.headers['content-range'] ?? '');
        if (res.statusCode !== 206 || !cr.startsWith(`bytes ${downloaded}-`)) {
          await res.body.dump();
          throw new ImageWriteError('DOWNLOAD_FAILED', `server cannot resume ${info.url} at byte ${downloaded} (HTTP ${res.statusCode}); not restarting a partial write`);
        }
        resumed++;
      } else {
        total = Number(res.headers['content-length'] ?? 0);
      }
      try {
        for await (const chunk of res.body as AsyncIterable<Buffer>) {
          if (o.signal?.aborted) throw new ImageWriteError('CANCELLED', 'image write cancelled');
          if (!dec) startDecoder(chunk);
          downloaded += chunk.length;
          const copy = new Uint8Array(chunk.length);
          copy.set(chunk);
          hasher.postMessage(copy.buffer, [copy.buffer]);
          if (!dec!.write(chunk)) await new Promise((r) => dec!.once('drain', r));
          report();
        }
        if (total && downloaded < total) throw new Error(`connection closed at ${downloaded} of ${total} bytes`);
        break;
      } catch (err) {
        if (err instanceof ImageWriteError) throw err;
        if (attempt >= maxRetries) throw new ImageWriteError('DOWNLOAD_FAILED', `download of ${info.url} kept failing: ${(err as Error).message}`);
        // Resume from `downloaded` with a Range request on the next attempt.
      }
    }
    dec!.end();
    await decDone;
    await flushBuf(true);
    await pendingWrite;
    await fh.sync();
    const got = await new Promise<string>((resolve) => {
      hasher.once('message', resolve);
      hasher.postMessage('digest');
    });
    if (got !== digest) {
      await wipe(fh, written);
      throw new ImageWriteError('CHECKSUM_MISMATCH', `checksum mismatch for ${info.url}: expected ${algo} ${digest}, got ${got}; the target was wiped`);
    }
    report(true);
    const ms = Date.now() - t0;
    return { bytes_written: written, bytes_downloaded: downloaded, checksum_algo: algo, checksum: got, resumed, duration_ms: ms, rate_bytes_per_s: Math.round(downloaded / Math.max(0.001, ms / 1000)), disk_format: format ?? 'raw' };
  } catch (err) {
    if (!(err instanceof ImageWriteError) || err.code !== 'CHECKSUM_MISMATCH') await wipe(fh, written).catch(() => {});
    throw err instanceof ImageWriteError ? err : new ImageWriteError('IO_ERROR', (err as Error).message);
  } finally {
    await hasher.terminate();
    await fh.close();
  }
}

/** Zero the first and last MiB of what was written: partition tables and boot sectors are gone. */
async function wipe(fh: FileHandle, written: number): Promise<void> {
  if (written === 0) return;
  const mib = 1024 * 1024;
  const zeros = Buffer.alloc(Math.min(mib, written));
  await fh.write(zeros, 0, zeros.length, 0);
  if (written > mib) await fh.write(zeros, 0, Math.min(mib, written - mib), Math.max(mib, written - mib));
  await fh.sync();
}
