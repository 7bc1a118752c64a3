/**
 * Disk erasure, as IPA's clean steps: `erase_devices_metadata` (partition tables, signatures, the
 * start and the end of each disk — where GPT keeps its backup) and `erase_devices` (discard when
 * the device supports it, else overwrite with zeros). Disks are erased in parallel; progress is
 * reported as bytes over all disks.
 */
import { open, stat } from 'node:fs/promises';
import { spawn } from 'node:child_process';

const MiB = 1024 * 1024;

export interface EraseProgress {
  bytesDone: number;
  bytesTotal: number;
}

export interface EraseResult {
  device: string;
  /** What erased the device: discard (verified to read back zeros), zero overwrite, or metadata only. */
  method: 'metadata' | 'discard' | 'zero';
  bytes: number;
  /**
   * What discard did: `verified` (sampled ranges read back as zeros), `left-data` (discard
   * succeeded but data was still readable, so the device was overwritten), `unsupported`
   * (discard refused), `disabled`. Absent for metadata erasure.
   */
  discard?: 'verified' | 'left-data' | 'unsupported' | 'disabled';
}

function run(cmd: string, args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr.on('data', (d) => (stderr += d));
    p.on('error', (e) => resolve({ code: -1, stderr: e.message }));
    p.on('close', (code) => resolve({ code: code ?? -1, stderr }));
  });
}

async function deviceSize(device: string): Promise<number> {
  const fh = await open(device, 'r');
  let isFile: boolean;
  let size: number;
  try {
    const st = await fh.stat();
    isFile = st.isFile();
    size = st.size;
  } finally {
    await fh.close();
  }
  if (isFile) return size;
  // Block devices report size 0 in stat.
  const out = await new Promise<string>((resolve, reject) => {
    const p = spawn('blockdev', ['--getsize64', device], { stdio: ['ignore', 'pipe', 'pipe'] });
    let o = '';
    p.stdout.on('data', (d) => (o += d));
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve(o.trim()) : reject(new Error(`blockdev --getsize64 ${device} failed (${code})`))));
  });
  return Number(out);
}

/** Zero [offset, offset+len) in 4 MiB writes; calls onBytes as it goes. */
async function zeroRange(device: string, offset: number, len: number, onBytes: (n: number) => void, signal?: AbortSignal): Promise<void> {
  const fh = await open(device, 'r+');
  try {
    const zeros = Buffer.alloc(Math.min(4 * MiB, Math.max(len, 1)));
    for (let pos = offset; pos < offset + len; ) {
      if (signal?.aborted) throw new Error('erase cancelled');
      const n = Math.min(zeros.length, offset + len - pos);
      await fh.write(zeros, 0, n, pos);
      pos += n;
      onBytes(n);
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Runs `erase` on every device in parallel with one shared byte counter; `work(size)` is how many
 * bytes a device of that size will account for.
 */
async function eachDevice(
  devices: string[],
  work: (size: number) => number,
  progress: ((p: EraseProgress) => void) | undefined,
  erase: (dev: string, size: number, tick: (n: number) => void) => Promise<EraseResult>,
): Promise<EraseResult[]> {
  const sizes = await Promise.all(devices.map(deviceSize));
  const total = sizes.reduce((a, s) => a + work(s), 0);
  let done = 0;
  const tick = (n: number) => {
    done += n;
    progress?.({ bytesDone: done, bytesTotal: total });
  };
  return Promise.all(devices.map((dev, i) => erase(dev, sizes[i]!, tick)));
}

/** erase_devices_metadata: wipefs, then zero the first and last MiB (MBR/GPT and its backup). */
export async function eraseMetadata(devices: string[], progress?: (p: EraseProgress) => void): Promise<EraseResult[]> {
  return eachDevice(
    devices,
    (s) => Math.min(s, 2 * MiB),
    progress,
    async (dev, size, tick) => {
      // Best effort on block devices (signatures anywhere, e.g. a RAID superblock at the end);
      // the zeroing below is the guarantee. A regular file (a simulated disk) needs only that —
      // and a simulator running hundreds of agents in one process cannot afford a spawn per disk.
      if ((await stat(dev)).isBlockDevice()) await run('wipefs', ['--all', '--force', dev]);
      const head = Math.min(MiB, size);
      await zeroRange(dev, 0, head, tick);
      if (size > MiB) await zeroRange(dev, Math.max(head, size - MiB), Math.min(MiB, size - head), tick);
      return { device: dev, method: 'metadata' as const, bytes: Math.min(size, 2 * MiB) };
    },
  );
}

/** Ranges checked after a discard: the first and last MiB plus this many spread across the device. */
const DISCARD_SAMPLES = 64;
const SAMPLE_BYTES = 64 * 1024;

/**
 * Discard does not promise that reads return zeros (only drives with "deterministic read zeroes
 * after TRIM" do; some accept the command and keep the data). So after a successful discard, read
 * back the first and last MiB and evenly spread samples (with a random phase, so no fixed pattern
 * can be prepared to pass), after dropping the device's buffer cache.
 */
async function readsBackZeros(device: string, size: number): Promise<boolean> {
  await run('blockdev', ['--flushbufs', device]);
  const ranges: Array<[number, number]> = [
    [0, Math.min(MiB, size)],
    [Math.max(0, size - MiB), Math.min(MiB, size)],
  ];
  const stride = size / DISCARD_SAMPLES;
  for (let i = 0; i < DISCARD_SAMPLES; i++) {
    const at = Math.floor(i * stride + Math.random() * Math.max(0, stride - SAMPLE_BYTES));
    ranges.push([Math.min(at, Math.max(0, size - SAMPLE_BYTES)), Math.min(SAMPLE_BYTES, size)]);
  }
  const fh = await open(device, 'r');
  try {
    const buf = Buffer.alloc(MiB);
    for (const [off, len] of ranges) {
      const { bytesRead } = await fh.read(buf, 0, len, off);
      for (let i = 0; i < bytesRead; i++) if (buf[i] !== 0) return false;
    }
    return true;
  } finally {
    await fh.close();
  }
}

/**
 * erase_devices: blkdiscard (whole device) when supported and verified to read back zeros, else
 * overwrite every byte with zeros. Each result says which method erased the device.
 */
export async function eraseDevices(devices: string[], progress?: (p: EraseProgress) => void, signal?: AbortSignal, allowDiscard = true): Promise<EraseResult[]> {
  return eachDevice(
    devices,
    (s) => s,
    progress,
    async (dev, size, tick) => {
      let discard: EraseResult['discard'] = 'disabled';
      if (allowDiscard) {
        const r = await run('blkdiscard', ['--force', dev]);
        if (r.code !== 0) discard = 'unsupported';
        else if (await readsBackZeros(dev, size)) {
          tick(size);
          return { device: dev, method: 'discard' as const, bytes: size, discard: 'verified' };
        } else discard = 'left-data';
      }
      await zeroRange(dev, 0, size, tick, signal);
      return { device: dev, method: 'zero' as const, bytes: size, discard };
    },
  );
}
