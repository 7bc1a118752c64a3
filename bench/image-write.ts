/**
 * bench/image-write: the same image onto the same target, in one run:
 *   (a) ironfleet writeImage over HTTP (loopback, separate server process), sha256 verified;
 *   (b) a plain copy: dd bs=4M conv=fsync from the local file;
 *   (c) sha256sum of the local file;
 *   (d) the IPA-style non-streaming path: download to a file (curl), sha256sum it, dd it to the target.
 *   (e) Node's own sha256 over the local file, one core, 1 MiB buffers (the agent hashes with it).
 * Also zstd (the same image compressed) and a loop device as the target (when losetup works here).
 * Every timed write gets a fresh target file; the raw cases run REPS times, ours and dd alternating,
 * best of each (zstd too, best of REPS) (the machine is shared and noisy). Keys: ratio_vs_floor = throughput(a) / min(dd to the
 * same target, Node sha256) — raw, _zstd, _loop (target >= 0.7); ratio_vs_min_copy_hash (against
 * coreutils sha256sum, the former floor); speedup_vs_ipa_style = time(d) / time(a).
 */
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, openSync, readSync, rmSync, writeSync, closeSync, writeFileSync, statfsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeImage } from '../agent/image-writer.js';
import { printTable, writeResults } from './lib.js';

const quick = process.argv.includes('--quick');
const SIZE = (quick ? 512 : 3072) * 1024 * 1024;
/** Raw writes (ours and dd, file and loop device) are repeated, alternating, and the best kept. */
const REPS = quick ? 2 : 3;
const MiB = 1024 * 1024;

function makeImage(file: string): string {
  const fd = openSync(file, 'w');
  const block = randomBytes(8 * MiB);
  const h = createHash('sha256');
  for (let off = 0; off < SIZE; off += block.length) {
    block[0] = off / block.length; // every block differs
    writeSync(fd, block, 0, block.length, off);
    h.update(block);
  }
  closeSync(fd);
  return h.digest('hex');
}

const SERVER = `
const http = require('node:http'); const fs = require('node:fs'); const path = require('node:path');
const dir = process.argv[2];
http.createServer((req, res) => {
  const file = path.join(dir, path.basename(req.url)); const size = fs.statSync(file).size;
  const m = (req.headers.range || '').match(/^bytes=(\\d+)-$/); const start = m ? Number(m[1]) : 0;
  res.writeHead(m ? 206 : 200, { 'content-length': size - start, 'accept-ranges': 'bytes', ...(m ? { 'content-range': 'bytes ' + start + '-' + (size - 1) + '/' + size } : {}) });
  fs.createReadStream(file, { start, highWaterMark: 1 << 20 }).pipe(res);
}).listen(0, '127.0.0.1', function () { console.log(this.address().port); });`;

/** Node's own SHA-256 over the (page-cached) file in 1 MiB reads, on this thread: the hash floor. */
function nodeSha256(file: string): string {
  const h = createHash('sha256');
  const fd = openSync(file, 'r');
  const buf = Buffer.allocUnsafe(MiB);
  for (let n; (n = readSync(fd, buf, 0, MiB, null)) > 0; ) h.update(n === MiB ? buf : buf.subarray(0, n));
  closeSync(fd);
  return h.digest('hex');
}

function time(fn: () => void): number {
  const t0 = performance.now();
  fn();
  return (performance.now() - t0) / 1000;
}

async function main() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ironfleet-bench-img-'));
  const free = statfsSync(dir).bavail * statfsSync(dir).bsize;
  if (free < SIZE * 4) throw new Error(`need ${((SIZE * 4) / 2 ** 30).toFixed(1)} GiB free in ${dir}, have ${(free / 2 ** 30).toFixed(1)} GiB`);
  const img = path.join(dir, 'image.raw');
  const tgt = path.join(dir, 'target.img');
  const dl = path.join(dir, 'download.raw');
  const zst = path.join(dir, 'image.raw.zst');
  console.log(`image-write: ${SIZE / MiB} MiB image…`);
  const digest = makeImage(img);
  execFileSync('truncate', ['-s', String(SIZE), tgt]);
  const serverJs = path.join(dir, 'server.cjs');
  writeFileSync(serverJs, SERVER);
  const server = spawn(process.execPath, [serverJs, dir], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((r) => server.stdout!.once('data', (d) => r(Number(String(d).trim()))));
  const url = `http://127.0.0.1:${port}/image.raw`;
  const rows: Array<Record<string, string | number>> = [];
  let loop: string | null = null;
  try {
    // Warm the page cache identically for every case.
    execFileSync('cat', [img], { stdio: ['ignore', 'ignore', 'ignore'] });
    // Every timed write gets a fresh, empty target (no pages already cached from the case before).
    const fresh = () => {
      rmSync(tgt, { force: true });
      execFileSync('truncate', ['-s', String(SIZE), tgt]);
    };
    const ours = async (u: string, sum: string, target: string) => {
      const t0 = performance.now();
      const r = await writeImage({ url: u, checksum: sum }, { target });
      if (r.checksum !== sum) throw new Error('checksum mismatch in the bench');
      return (performance.now() - t0) / 1000;
    };
    // Writes onto fresh memory cost more than onto pages just freed (this VM backs guest memory
    // lazily), so whichever case runs first pays more: the raw cases alternate, best of REPS each.
    let a = Infinity;
    let b = Infinity;
    for (let r = 0; r < REPS; r++) {
      fresh();
      a = Math.min(a, await ours(url, digest, tgt));
      fresh();
      b = Math.min(b, time(() => execFileSync('dd', [`if=${img}`, `of=${tgt}`, 'bs=4M', 'conv=fsync,notrunc', 'status=none'])));
    }
    const c = time(() => execFileSync('sha256sum', [img], { stdio: ['ignore', 'ignore', 'inherit'] }));
    const e = time(() => nodeSha256(img));
    // zstd: the same image compressed (hash over the download, as IPA checks what it fetched).
    execFileSync('zstd', ['-q', '-1', '-T0', '-f', img, '-o', zst]);
    const zsum = execFileSync('sha256sum', [zst]).toString().split(/\s+/)[0]!;
    // Writing the 3 GiB .zst left it dirty in the page cache: flush it now, not during a timed case.
    execFileSync('sync');
    // Best of REPS like the raw cases (the first write onto fresh memory pays more here).
    let z = Infinity;
    for (let r = 0; r < REPS; r++) {
      fresh();
      z = Math.min(z, await ours(url.replace('image.raw', 'image.raw.zst'), zsum, tgt));
    }
    // A loop device over a fresh file, when this machine lets us make one (root, loop module).
    let l: number | null = null;
    let bl: number | null = null;
    const best = (x: number | null, y: number) => (x === null ? y : Math.min(x, y));
    const attach = () => {
      if (loop) execFileSync('losetup', ['-d', loop]);
      fresh();
      loop = execFileSync('losetup', ['-f', '--show', tgt]).toString().trim();
      return loop;
    };
    try {
      for (let r = 0; r < REPS; r++) {
        const mine = async () => (l = best(l, await ours(url, digest, attach())));
        const dd = () => {
          const dev = attach();
          bl = best(bl, time(() => execFileSync('dd', [`if=${img}`, `of=${dev}`, 'bs=4M', 'conv=fsync', 'status=none'])));
        };
        if (r % 2) {
          dd();
          await mine();
        } else {
          await mine();
          dd();
        }
      }
    } catch (err) {
      console.log(`loop device case skipped: ${(err as Error).message.split('\n')[0]}`);
    }
    fresh();
    const t1 = performance.now();
    execFileSync('curl', ['-sS', '--fail', '-o', dl, url]);
    const sum = execFileSync('sha256sum', [dl]).toString().split(/\s+/)[0];
    if (sum !== digest) throw new Error('IPA-style download checksum mismatch');
    execFileSync('dd', [`if=${dl}`, `of=${tgt}`, 'bs=4M', 'conv=fsync,notrunc', 'status=none']);
    const d = (performance.now() - t1) / 1000;
    const mbs = (sec: number) => Math.round(SIZE / MiB / sec);
    const row = (name: string, sec: number) => rows.push({ case: name, seconds: Math.round(sec * 100) / 100, 'MiB/s': mbs(sec) });
    row('(a) ironfleet writeImage, raw → file (HTTP, sha256, fsync)', a);
    row('(a) ironfleet writeImage, zstd → file', z);
    if (l !== null) row('(a) ironfleet writeImage, raw → loop device (O_DIRECT)', l);
    row('(b) dd bs=4M conv=fsync → file (local copy)', b);
    if (bl !== null) row('(b) dd bs=4M conv=fsync → loop device', bl);
    row('(c) sha256sum (coreutils, local file)', c);
    row("(e) Node's sha256, one core, 1 MiB buffers", e);
    row('(d) IPA style: download, verify, copy', d);
    printTable(`image-write (${SIZE / MiB} MiB image, target = file on ${os.tmpdir()}; raw and zstd cases best of ${REPS})`, rows);
    // The floor: what the slower of writing and hashing allows, each measured in this run.
    const floorFile = Math.max(b, e);
    const floorLoop = bl === null ? null : Math.max(bl, e);
    const ratio = (floor: number, sec: number) => Math.round((floor / sec) * 1000) / 1000;
    const doc = {
      quick,
      image_mib: SIZE / MiB,
      seconds: { a, zstd: z, loop: l, b, b_loop: bl, c, e, d },
      floor: { file_mib_s: mbs(floorFile), loop_mib_s: floorLoop === null ? null : mbs(floorLoop), what: 'min(dd to the same target, Node sha256 on one core)' },
      ratio_vs_floor: ratio(floorFile, a),
      ratio_vs_floor_zstd: ratio(floorFile, z),
      ratio_vs_floor_loop: floorLoop === null || l === null ? null : ratio(floorLoop, l),
      // the former key: against min(dd, coreutils sha256sum)
      ratio_vs_min_copy_hash: Math.round((Math.max(b, c) / a) * 1000) / 1000,
      speedup_vs_ipa_style: Math.round((d / a) * 100) / 100,
      rows,
    };
    console.log(`floor = min(dd, Node sha256) = ${doc.floor.file_mib_s} MiB/s (file)${floorLoop === null ? '' : `, ${doc.floor.loop_mib_s} MiB/s (loop)`}`);
    console.log(`ratio_vs_floor = ${doc.ratio_vs_floor} raw, ${doc.ratio_vs_floor_zstd} zstd, ${doc.ratio_vs_floor_loop ?? '-'} loop (target >= 0.7); speedup_vs_ipa_style = ${doc.speedup_vs_ipa_style}`);
    console.log(`wrote ${writeResults('image-write', doc)}`);
  } finally {
    if (loop) execFileSync('losetup', ['-d', loop]);
    server.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
