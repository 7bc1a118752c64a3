/**
 * The ring sink with its real worker thread, onto real targets: a loop device written with
 * O_DIRECT through a ring small enough to wrap hundreds of times, a tmpfs file written through the
 * page cache, a stream that stops being raw mid-way (the sink leaves direct writing without losing
 * a byte), a target that cannot be opened, and the target's descriptors closed at the end.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { RingSink } from '../../agent/image-sink.js';
import { tmpDir } from '../helpers.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

/** Random bytes pushed in random-sized chunks (1 B to 100 KiB), as a download delivers them. */
async function pushAll(sink: RingSink, op: 'both' | 'hash' | 'write', data: Buffer): Promise<void> {
  for (let at = 0; at < data.length; ) {
    const n = Math.min(data.length - at, 1 + Math.floor(Math.random() * 100 * KiB));
    await sink.push(op, data.subarray(at, at + n));
    at += n;
  }
}

function fileTarget(dir: string, size: number): string {
  const f = path.join(dir, 'disk.img');
  writeFileSync(f, Buffer.alloc(0));
  execFileSync('truncate', ['-s', String(size), f]);
  return f;
}

/** Descriptors of this process open on `file`. */
function openOn(file: string): number {
  return readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`) === file;
    } catch {
      return false;
    }
  }).length;
}

describe('RingSink', () => {
  it('writes a raw image onto a loop device with O_DIRECT through a wrapping ring; the unaligned tail too', async () => {
    if (process.getuid?.() !== 0 || !existsSync('/dev/loop-control')) throw new Error('this test needs root and loop devices (CI runs as root)');
    const dev = execFileSync('losetup', ['-f', '--show', fileTarget(tmpDir('ironfleet-sink-'), 32 * MiB)]).toString().trim();
    cleanups.push(() => execFileSync('losetup', ['-d', dev]));
    const image = randomBytes(20 * MiB + 12_345); // not a whole number of blocks
    const sink = new RingSink(dev, 'sha256', { batchBytes: 64 * KiB, ringBytes: 256 * KiB, direct: true });
    await pushAll(sink, 'both', image);
    const r = await sink.finish();
    await sink.close();
    expect(r).toMatchObject({ digest: sha256(image), written: image.length });
    // Everything up to the last 64 KiB boundary went direct; the tail through the page cache.
    expect(r.directBytes).toBe(image.length - (image.length % (64 * KiB)));
    const back = execFileSync('dd', [`if=${dev}`, 'bs=1M', 'count=21', 'iflag=direct', 'status=none'], { maxBuffer: 64 * MiB });
    expect(sha256(back.subarray(0, image.length))).toBe(sha256(image));
    expect(openOn(dev)).toBe(0);
  });

  it('without direct (a qcow2 image staged to scratch asks for none) bytes go through the page cache, byte for byte', async () => {
    const dir = mkdtempSync('/dev/shm/ironfleet-sink-');
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const t = fileTarget(dir, 8 * MiB);
    const image = randomBytes(5 * MiB + 7);
    const sink = new RingSink(t, 'sha256', { ringBytes: 128 * KiB, direct: false });
    await pushAll(sink, 'both', image);
    const r = await sink.finish();
    await sink.close();
    expect(r).toEqual({ digest: sha256(image), written: image.length, directBytes: 0 });
    expect(readFileSync(t).subarray(0, image.length).equals(image)).toBe(true);
  });

  it('a compressed image (hashed bytes between the written ones) is written O_DIRECT through the stage onto a loop device', async () => {
    if (process.getuid?.() !== 0 || !existsSync('/dev/loop-control')) throw new Error('this test needs root and loop devices (CI runs as root)');
    const dev = execFileSync('losetup', ['-f', '--show', fileTarget(tmpDir('ironfleet-sink-'), 16 * MiB)]).toString().trim();
    cleanups.push(() => execFileSync('losetup', ['-d', dev]));
    // What writeImage pushes for zstd: each downloaded chunk to hash, then what it decodes to.
    const compressed = randomBytes(3 * MiB);
    const decoded = randomBytes(9 * MiB + 4321);
    const sink = new RingSink(dev, 'sha256', { batchBytes: 64 * KiB, ringBytes: 512 * KiB, direct: true });
    const step = 100_003;
    for (let c = 0, d = 0; c < compressed.length || d < decoded.length; c += step, d += 3 * step) {
      if (c < compressed.length) await sink.push('hash', compressed.subarray(c, c + step));
      if (d < decoded.length) await sink.push('write', decoded.subarray(d, d + 3 * step));
    }
    const r = await sink.finish();
    await sink.close();
    expect(r).toMatchObject({ digest: sha256(compressed), written: decoded.length });
    // Whole 4 MiB stages went direct; the last partial stage through the page cache.
    expect(r.directBytes).toBe(8 * MiB);
    const back = execFileSync('dd', [`if=${dev}`, 'bs=1M', 'count=10', 'iflag=direct', 'status=none'], { maxBuffer: 16 * MiB });
    expect(sha256(back.subarray(0, decoded.length))).toBe(sha256(decoded));
    expect(openOn(dev)).toBe(0);
  });

  it('a stream that stops being raw mid-way leaves the ring, loses nothing, and goes on writing direct', async () => {
    const t = fileTarget(tmpDir('ironfleet-sink-'), 16 * MiB);
    const head = randomBytes(3 * MiB + 999);
    const hashedOnly = randomBytes(200 * KiB);
    const tail = randomBytes(5 * MiB + 3);
    const sink = new RingSink(t, 'sha256', { batchBytes: 64 * KiB, ringBytes: 192 * KiB, direct: true });
    await pushAll(sink, 'both', head);
    await pushAll(sink, 'hash', hashedOnly);
    await pushAll(sink, 'write', tail);
    const r = await sink.finish();
    await sink.close();
    // The digest covers what was hashed (head + hashedOnly); the target holds what was written (head + tail).
    expect(r.digest).toBe(sha256(Buffer.concat([head, hashedOnly])));
    expect(r.written).toBe(head.length + tail.length);
    expect(readFileSync(t).subarray(0, r.written).equals(Buffer.concat([head, tail]))).toBe(true);
    // The head up to its last 64 KiB boundary went from the ring; then whole 4 MiB stages (one here).
    expect(r.directBytes).toBe(head.length - (head.length % (64 * KiB)) + 4 * MiB);
    expect(openOn(t)).toBe(0);
  });

  it('a target that cannot be opened fails the push or the finish with IO_ERROR naming it', async () => {
    const missing = path.join(tmpDir('ironfleet-sink-'), 'no-such-dir', 'disk.img');
    const sink = new RingSink(missing, 'sha256', { direct: true });
    const err = await (async () => {
      await pushAll(sink, 'both', randomBytes(2 * MiB));
      return sink.finish();
    })().catch((e: unknown) => e);
    await sink.close();
    expect(err).toMatchObject({ code: 'IO_ERROR' });
    expect(String((err as Error).message)).toContain(missing);
  });
});
