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
  method: 'metadata' | 'discard' | 'zero';
  bytes: number;
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

/** erase_devices: blkdiscard (whole device) when supported, else overwrite every byte with zeros. */
export async function eraseDevices(devices: string[], progress?: (p: EraseProgress) => void, signal?: AbortSignal, allowDiscard = true): Promise<EraseResult[]> {
  return eachDevice(
    devices,
    (s) => s,
    progress,
    async (dev, size, tick) => {
      if (allowDiscard) {
        const r = await run('blkdiscard', ['--force', dev]);
        if (r.code === 0) {
          tick(size);
          return { device: dev, method: 'discard' as const, bytes: size };
        }
      }
      await zeroRange(dev, 0, size, tick, signal);
      return { device: dev, method: 'zero' as const, bytes: size };
    },
  );
}
