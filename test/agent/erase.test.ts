/** Erase steps on real loop devices and files. */
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { eraseDevices, eraseMetadata } from '../../agent/erase.js';
import { tmpDir } from '../helpers.js';

const MiB = 1024 * 1024;

function randomFile(mib: number): string {
  const f = path.join(tmpDir('ironfleet-erase-'), 'disk.img');
  writeFileSync(f, randomBytes(mib * MiB));
  return f;
}

function withLoop<T>(file: string, fn: (dev: string) => Promise<T>): Promise<T> {
  if (process.getuid?.() !== 0) throw new Error('this test needs root and loop devices (CI runs as root)');
  const dev = execFileSync('losetup', ['-f', '--show', file]).toString().trim();
  return fn(dev).finally(() => execFileSync('losetup', ['-d', dev]));
}

const zero = (b: Buffer) => b.every((x) => x === 0);

describe('erase steps', () => {
  it('erase_devices_metadata zeroes the first and last MiB and leaves the middle', async () => {
    const a = randomFile(8);
    const b = randomFile(6);
    const before = readFileSync(a);
    const seen: number[] = [];
    await withLoop(a, async (devA) => {
      const r = await eraseMetadata([devA, b], (p) => seen.push(p.bytesDone));
      expect(r.map((x) => x.method)).toEqual(['metadata', 'metadata']);
    });
    for (const f of [a, b]) {
      const d = readFileSync(f);
      expect(zero(d.subarray(0, MiB))).toBe(true);
      expect(zero(d.subarray(d.length - MiB))).toBe(true);
    }
    expect(readFileSync(a).subarray(2 * MiB, 6 * MiB).equals(before.subarray(2 * MiB, 6 * MiB))).toBe(true);
    expect(seen.at(-1)).toBe(4 * MiB);
  });

  it('erase_devices: discard on a device that supports it, zero-overwrite otherwise; disks in parallel', async () => {
    const a = randomFile(8);
    const b = randomFile(8);
    let last = 0;
    await withLoop(a, async (devA) =>
      withLoop(b, async (devB) => {
        const discard = await eraseDevices([devA], (p) => (last = p.bytesDone));
        expect(discard[0]).toMatchObject({ method: 'discard', discard: 'verified' });
        expect(last).toBe(8 * MiB);
        const zeroed = await eraseDevices([devB], undefined, undefined, false);
        expect(zeroed[0]).toMatchObject({ method: 'zero', bytes: 8 * MiB });
      }),
    );
    expect(zero(readFileSync(a))).toBe(true);
    expect(zero(readFileSync(b))).toBe(true);
  });

  it('erase_devices: a discard that succeeds but leaves data readable is caught and the device is zeroed', async () => {
    // Some drives accept TRIM and keep returning the old data (no "deterministic read zeroes").
    // Stand-in: a blkdiscard that reports success and does nothing, first on PATH; the loop
    // device, the read-back and the overwrite are real.
    const bin = tmpDir('ironfleet-fakebin-');
    writeFileSync(path.join(bin, 'blkdiscard'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
    const a = randomFile(8);
    const oldPath = process.env.PATH;
    process.env.PATH = `${bin}:${oldPath}`;
    try {
      await withLoop(a, async (dev) => {
        const r = await eraseDevices([dev]);
        expect(r[0]).toMatchObject({ device: dev, method: 'zero', discard: 'left-data', bytes: 8 * MiB });
      });
    } finally {
      process.env.PATH = oldPath;
    }
    expect(zero(readFileSync(a))).toBe(true);
  });

  it('a missing device is a clear error', async () => {
    await expect(eraseMetadata(['/dev/does-not-exist'])).rejects.toThrow(/does-not-exist/);
  });
});
