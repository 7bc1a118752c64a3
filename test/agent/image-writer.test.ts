/**
 * write_image against a real HTTP server on loopback, onto real files and a real loop device:
 * raw/gzip/zstd, sha256/sha512/md5 rules, checksum URLs, a dropped connection (Range resume),
 * 404, a wrong checksum and a truncated compressed stream — nothing half-written left bootable.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';
import { gzipSync } from 'node:zlib';
import { readFileSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { ImageWriteError, writeImage } from '../../agent/image-writer.js';
import { tmpDir } from '../helpers.js';

const MiB = 1024 * 1024;
const files = new Map<string, Buffer>();
const dropOnce = new Set<string>();
const slow = new Set<string>();
let server: http.Server;
let base = '';
const hits: Array<{ name: string; range?: string }> = [];

const sha = (algo: string, b: Buffer) => createHash(algo).update(b).digest('hex');

beforeAll(async () => {
  server = http.createServer((req, res) => {
    const name = (req.url ?? '/').slice(1);
    hits.push({ name, range: req.headers.range });
    const body = files.get(name);
    if (!body) {
      res.writeHead(404);
      return res.end('not found');
    }
    let start = 0;
    const m = req.headers.range?.match(/^bytes=(\d+)-$/);
    if (m) start = Number(m[1]);
    const slice = body.subarray(start);
    res.writeHead(m ? 206 : 200, { 'content-length': slice.length, 'accept-ranges': 'bytes', ...(m ? { 'content-range': `bytes ${start}-${body.length - 1}/${body.length}` } : {}) });
    if (slow.has(name)) {
      // 1 MiB every 50 ms: long enough to cancel in the middle.
      let o = 0;
      const tick = () => {
        if (res.destroyed) return;
        if (o >= slice.length) return void res.end();
        res.write(slice.subarray(o, o + MiB));
        o += MiB;
        setTimeout(tick, 50);
      };
      return tick();
    }
    if (dropOnce.has(name) && !m) {
      dropOnce.delete(name);
      res.write(slice.subarray(0, Math.floor(slice.length / 3)), () => req.socket.destroy());
      return;
    }
    res.end(slice);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

function image(mib: number): Buffer {
  // Compressible but not trivial: repeated random blocks with a partition-table-like header.
  const block = randomBytes(256 * 1024);
  const b = Buffer.alloc(mib * MiB);
  for (let o = 0; o < b.length; o += block.length) block.copy(b, o);
  b.write('IRONFLEET-TEST-MBR', 0);
  b[510] = 0x55;
  b[511] = 0xaa;
  return b;
}

function target(size: number): string {
  const f = path.join(tmpDir('ironfleet-img-'), 'disk.img');
  writeFileSync(f, Buffer.alloc(0));
  execFileSync('truncate', ['-s', String(size), f]);
  return f;
}

describe('writeImage', () => {
  const img = image(24);

  it('raw + sha256: the target holds the image byte for byte', async () => {
    files.set('raw.img', img);
    const t = target(32 * MiB);
    const progress: number[] = [];
    const r = await writeImage({ url: `${base}/raw.img`, checksum: sha('sha256', img) }, { target: t, progress: (p) => progress.push(p.bytesDownloaded), progressIntervalMs: 0 });
    expect(r).toMatchObject({ bytes_written: img.length, bytes_downloaded: img.length, checksum_algo: 'sha256', disk_format: 'raw', resumed: 0 });
    expect(readFileSync(t).subarray(0, img.length).equals(img)).toBe(true);
    expect(progress.length).toBeGreaterThan(1);
  });

  it('gzip + sha512 (format detected from magic bytes)', async () => {
    const gz = gzipSync(img);
    files.set('img.gz', gz);
    const t = target(32 * MiB);
    const r = await writeImage({ url: `${base}/img.gz`, checksum: sha('sha512', gz) }, { target: t });
    expect(r).toMatchObject({ disk_format: 'gzip', checksum_algo: 'sha512', bytes_written: img.length, bytes_downloaded: gz.length });
    expect(readFileSync(t).subarray(0, img.length).equals(img)).toBe(true);
  });

  it('zstd', async () => {
    const z = spawnSync('zstd', ['-q', '-c', '-3'], { input: img, maxBuffer: 64 * MiB }).stdout;
    files.set('img.zst', z);
    const t = target(32 * MiB);
    const r = await writeImage({ url: `${base}/img.zst`, checksum: sha('sha256', z), disk_format: 'zstd' }, { target: t });
    expect(r.bytes_written).toBe(img.length);
    expect(readFileSync(t).subarray(0, img.length).equals(img)).toBe(true);
  });

  it('a checksum URL (IPA style "digest  filename" file)', async () => {
    files.set('SHA256SUMS', Buffer.from(`${'0'.repeat(64)}  other.img\n${sha('sha256', img)}  raw.img\n`));
    const t = target(32 * MiB);
    const r = await writeImage({ url: `${base}/raw.img`, checksum: `${base}/SHA256SUMS` }, { target: t });
    expect(r.checksum).toBe(sha('sha256', img));
  });

  it('a dropped connection resumes with Range instead of starting over', async () => {
    files.set('drop.img', img);
    dropOnce.add('drop.img');
    hits.length = 0;
    const t = target(32 * MiB);
    const r = await writeImage({ url: `${base}/drop.img`, checksum: sha('sha256', img) }, { target: t });
    expect(r.resumed).toBe(1);
    expect(hits.filter((h) => h.name === 'drop.img').map((h) => Boolean(h.range))).toEqual([false, true]);
    expect(Number(hits[1]!.range!.match(/\d+/)![0])).toBeGreaterThan(0);
    expect(readFileSync(t).subarray(0, img.length).equals(img)).toBe(true);
  });

  it('a wrong checksum fails and wipes the start and end of what was written', async () => {
    files.set('raw.img', img);
    const t = target(32 * MiB);
    const err = await writeImage({ url: `${base}/raw.img`, checksum: sha('sha256', Buffer.from('something else')) }, { target: t }).catch((e) => e);
    expect(err).toBeInstanceOf(ImageWriteError);
    expect(err.code).toBe('CHECKSUM_MISMATCH');
    const disk = readFileSync(t);
    expect(disk.subarray(0, MiB).every((b) => b === 0)).toBe(true);
    expect(disk.subarray(img.length - MiB, img.length).every((b) => b === 0)).toBe(true);
  });

  it('a small image (≤ 16 MiB, written on the main thread) lands byte for byte; a wrong checksum wipes it', async () => {
    const small = image(3);
    files.set('small.img', small);
    const t = target(8 * MiB);
    const r = await writeImage({ url: `${base}/small.img`, checksum: sha('sha256', small) }, { target: t, verify: true });
    expect(r).toMatchObject({ bytes_written: small.length, checksum_algo: 'sha256', disk_format: 'raw', read_back_checksum: sha('sha256', small) });
    expect(readFileSync(t).subarray(0, small.length).equals(small)).toBe(true);
    const err = await writeImage({ url: `${base}/small.img`, checksum: sha('sha256', img) }, { target: t }).catch((e) => e);
    expect(err.code).toBe('CHECKSUM_MISMATCH');
    const disk = readFileSync(t);
    expect(disk.subarray(0, MiB).every((b) => b === 0)).toBe(true);
    expect(disk.subarray(small.length - MiB, small.length).every((b) => b === 0)).toBe(true);
  });

  it('md5 is refused unless explicitly enabled', async () => {
    const t = target(32 * MiB);
    await expect(writeImage({ url: `${base}/raw.img`, checksum: sha('md5', img) }, { target: t })).rejects.toMatchObject({ code: 'MD5_NOT_ALLOWED' });
    const r = await writeImage({ url: `${base}/raw.img`, checksum: sha('md5', img) }, { target: t, md5Allowed: true });
    expect(r.checksum_algo).toBe('md5');
  });

  it('404 and an invalid checksum are clear errors, and nothing is written', async () => {
    const t = target(8 * MiB);
    await expect(writeImage({ url: `${base}/missing.img`, checksum: sha('sha256', img) }, { target: t })).rejects.toMatchObject({ code: 'HTTP_ERROR', message: /HTTP 404/ });
    await expect(writeImage({ url: `${base}/raw.img`, checksum: 'xyz' }, { target: t })).rejects.toMatchObject({ code: 'CHECKSUM_INVALID' });
    expect(readFileSync(t).every((b) => b === 0)).toBe(true);
  });

  it('a truncated compressed stream fails (even with a matching checksum) and the target is wiped', async () => {
    for (const [name, data] of [
      ['trunc.gz', gzipSync(img)],
      ['trunc.zst', spawnSync('zstd', ['-q', '-c'], { input: img, maxBuffer: 64 * MiB }).stdout],
    ] as const) {
      const cut = data.subarray(0, Math.floor(data.length * 0.6));
      files.set(name, cut);
      const t = target(32 * MiB);
      const err = await writeImage({ url: `${base}/${name}`, checksum: sha('sha256', cut) }, { target: t }).catch((e) => e);
      expect(err, name).toBeInstanceOf(ImageWriteError);
      expect(err.code, name).toBe('DECOMPRESS_FAILED');
      expect(readFileSync(t).subarray(0, MiB).every((b) => b === 0), name).toBe(true);
    }
  });

  it('qcow2: staged, verified, inspected and converted with qemu-img onto the target', async () => {
    const dir = tmpDir('ironfleet-qcow2-');
    writeFileSync(path.join(dir, 'src.raw'), img);
    execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', path.join(dir, 'src.raw'), path.join(dir, 'img.qcow2')]);
    const q = readFileSync(path.join(dir, 'img.qcow2'));
    files.set('img.qcow2', q);
    const scratch = tmpDir('ironfleet-scratch-');
    const t = target(32 * MiB);
    const r = await writeImage({ url: `${base}/img.qcow2`, checksum: sha('sha256', q) }, { target: t, scratchDir: scratch });
    expect(r).toMatchObject({ disk_format: 'qcow2', bytes_written: img.length, bytes_downloaded: q.length });
    expect(readFileSync(t).subarray(0, img.length).equals(img)).toBe(true);
    expect(readdirSync(scratch)).toEqual([]);
    // A wrong checksum never reaches the target: the scratch copy fails verification first.
    const t2 = target(8 * MiB);
    writeFileSync(t2, Buffer.alloc(MiB, 0x5a), { flag: 'r+' });
    await expect(writeImage({ url: `${base}/img.qcow2`, checksum: sha('sha256', img) }, { target: t2, scratchDir: scratch })).rejects.toMatchObject({ code: 'CHECKSUM_MISMATCH', message: /nothing was written to the target/ });
    expect(readFileSync(t2).subarray(0, MiB).every((b) => b === 0x5a)).toBe(true);
    expect(readdirSync(scratch)).toEqual([]);
  });

  it('qcow2 with a backing file (a host path) is refused and the target untouched', async () => {
    const dir = tmpDir('ironfleet-qcow2-');
    writeFileSync(path.join(dir, 'secret'), 'not for the image');
    execFileSync('qemu-img', ['create', '-f', 'qcow2', '-F', 'raw', '-b', path.join(dir, 'secret'), path.join(dir, 'evil.qcow2')]);
    const q = readFileSync(path.join(dir, 'evil.qcow2'));
    files.set('evil.qcow2', q);
    const t = target(8 * MiB);
    await expect(writeImage({ url: `${base}/evil.qcow2`, checksum: sha('sha256', q), disk_format: 'qcow2' }, { target: t })).rejects.toMatchObject({ code: 'UNSAFE_IMAGE', message: /backing file/ });
    expect(readFileSync(t).every((b) => b === 0)).toBe(true);
  });

  it('cancellation mid-transfer stops the download, reports CANCELLED and wipes the target', async () => {
    const big = image(64);
    files.set('slow.img', big);
    slow.add('slow.img');
    const t = target(80 * MiB);
    const ac = new AbortController();
    let seen = 0;
    const p = writeImage({ url: `${base}/slow.img`, checksum: sha('sha256', big) }, {
      target: t,
      signal: ac.signal,
      progressIntervalMs: 0,
      progress: (x) => {
        seen = x.bytesDownloaded;
        if (seen > 4 * MiB) ac.abort();
      },
    });
    const err = await p.catch((e) => e);
    slow.delete('slow.img');
    expect(err).toMatchObject({ code: 'CANCELLED' });
    expect(seen).toBeLessThan(big.length);
    expect(readFileSync(t).subarray(0, MiB).every((b) => b === 0)).toBe(true);
  });

  it('writes a real block device (loop device)', async () => {
    if (process.getuid?.() !== 0 || !existsSync('/dev/loop-control')) throw new Error('this test needs root and loop devices (CI runs as root)');
    const backing = target(32 * MiB);
    const dev = execFileSync('losetup', ['-f', '--show', backing]).toString().trim();
    try {
      const r = await writeImage({ url: `${base}/raw.img`, checksum: sha('sha256', img) }, { target: dev });
      expect(r.bytes_written).toBe(img.length);
      const back = execFileSync('dd', [`if=${dev}`, 'bs=1M', `count=${img.length / MiB}`, 'status=none'], { maxBuffer: 64 * MiB });
      expect(createHash('sha256').update(back).digest('hex')).toBe(sha('sha256', img));
    } finally {
      execFileSync('losetup', ['-d', dev]);
    }
  });
});
