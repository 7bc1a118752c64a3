/**
 * bench/image-write: the same image onto the same target, in one run:
 *   (a) ironfleet writeImage over HTTP (loopback, separate server process), sha256 verified;
 *   (b) a plain copy: dd bs=4M conv=fsync from the local file;
 *   (c) sha256sum of the local file;
 *   (d) the IPA-style non-streaming path: download to a file (curl), sha256sum it, dd it to the target.
 * Keys: ratio_vs_min_copy_hash = a / min(b, c) throughput (target >= 0.9),
 *       speedup_vs_ipa_style = time(d) / time(a) (target > 1).
 */
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, openSync, rmSync, writeSync, closeSync, writeFileSync, statfsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeImage } from '../agent/image-writer.js';
import { printTable, writeResults } from './lib.js';

const quick = process.argv.includes('--quick');
const SIZE = (quick ? 512 : 3072) * 1024 * 1024;
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
const http = require('node:http'); const fs = require('node:fs');
const file = process.argv[2]; const size = fs.statSync(file).size;
http.createServer((req, res) => {
  const m = (req.headers.range || '').match(/^bytes=(\\d+)-$/); const start = m ? Number(m[1]) : 0;
  res.writeHead(m ? 206 : 200, { 'content-length': size - start, 'accept-ranges': 'bytes', ...(m ? { 'content-range': 'bytes ' + start + '-' + (size - 1) + '/' + size } : {}) });
  fs.createReadStream(file, { start, highWaterMark: 1 << 20 }).pipe(res);
}).listen(0, '127.0.0.1', function () { console.log(this.address().port); });`;

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
  console.log(`image-write: ${SIZE / MiB} MiB image…`);
  const digest = makeImage(img);
  execFileSync('truncate', ['-s', String(SIZE), tgt]);
  const serverJs = path.join(dir, 'server.cjs');
  writeFileSync(serverJs, SERVER);
  const server = spawn(process.execPath, [serverJs, img], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((r) => server.stdout!.once('data', (d) => r(Number(String(d).trim()))));
  const url = `http://127.0.0.1:${port}/image.raw`;
  const rows: Array<Record<string, string | number>> = [];
  try {
    // Warm the page cache identically for every case.
    execFileSync('cat', [img], { stdio: ['ignore', 'ignore', 'ignore'] });
    const t0 = performance.now();
    const r = await writeImage({ url, checksum: digest }, { target: tgt });
    const a = (performance.now() - t0) / 1000;
    if (r.checksum !== digest) throw new Error('checksum mismatch in the bench');
    const b = time(() => execFileSync('dd', [`if=${img}`, `of=${tgt}`, 'bs=4M', 'conv=fsync,notrunc', 'status=none']));
    const c = time(() => execFileSync('sha256sum', [img], { stdio: ['ignore', 'ignore', 'inherit'] }));
    const t1 = performance.now();
    execFileSync('curl', ['-sS', '--fail', '-o', dl, url]);
    const sum = execFileSync('sha256sum', [dl]).toString().split(/\s+/)[0];
    if (sum !== digest) throw new Error('IPA-style download checksum mismatch');
    execFileSync('dd', [`if=${dl}`, `of=${tgt}`, 'bs=4M', 'conv=fsync,notrunc', 'status=none']);
    const d = (performance.now() - t1) / 1000;
    const mbs = (s: number) => Math.round(SIZE / MiB / s);
    rows.push({ case: '(a) ironfleet writeImage (HTTP, sha256, fsync)', seconds: Math.round(a * 100) / 100, 'MiB/s': mbs(a) });
    rows.push({ case: '(b) dd bs=4M conv=fsync (local copy)', seconds: Math.round(b * 100) / 100, 'MiB/s': mbs(b) });
    rows.push({ case: '(c) sha256sum (local file)', seconds: Math.round(c * 100) / 100, 'MiB/s': mbs(c) });
    rows.push({ case: '(d) IPA style: download, verify, copy', seconds: Math.round(d * 100) / 100, 'MiB/s': mbs(d) });
    printTable(`image-write (${SIZE / MiB} MiB raw image, target = file on ${os.tmpdir()})`, rows);
    const doc = {
      quick,
      image_mib: SIZE / MiB,
      seconds: { a, b, c, d },
      // throughput(a) / min(throughput(b), throughput(c)) = slowest of b and c in seconds / a
      ratio_vs_min_copy_hash: Math.round((Math.max(b, c) / a) * 1000) / 1000,
      speedup_vs_ipa_style: Math.round((d / a) * 100) / 100,
      rows,
    };
    console.log(`ratio_vs_min_copy_hash = ${doc.ratio_vs_min_copy_hash} (target >= 0.9); speedup_vs_ipa_style = ${doc.speedup_vs_ipa_style} (target > 1)`);
    console.log(`wrote ${writeResults('image-write', doc)}`);
  } finally {
    server.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
