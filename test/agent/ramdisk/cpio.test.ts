import { describe, expect, it } from 'vitest';
import { writeCpio, type CpioEntry } from '../../../agent/ramdisk/cpio.js';

/** Minimal newc reader: [name, mode, data] per entry (the kernel's unpacker reads the same fields). */
function readCpio(b: Buffer): Array<{ name: string; mode: number; data: Buffer; mtime: number }> {
  const out = [];
  let o = 0;
  const pad = (n: number) => (n + 3) & ~3;
  for (;;) {
    expect(b.toString('ascii', o, o + 6)).toBe('070701');
    const f = (i: number) => parseInt(b.toString('ascii', o + 6 + i * 8, o + 14 + i * 8), 16);
    const mode = f(1);
    const mtime = f(5);
    const size = f(6);
    const nameSize = f(11);
    const name = b.toString('utf8', o + 110, o + 110 + nameSize - 1);
    const dataAt = pad(o + 110 + nameSize);
    if (name === 'TRAILER!!!') return out;
    out.push({ name, mode, mtime, data: b.subarray(dataAt, dataAt + size) });
    o = pad(dataAt + size);
  }
}

describe('initramfs cpio writer', () => {
  const entries: CpioEntry[] = [
    { path: 'usr/bin/node', type: 'file', mode: 0o755, data: Buffer.from('binary') },
    { path: '/init', type: 'file', mode: 0o755, data: Buffer.from('#!/bin/busybox sh\n') },
    { path: 'bin/sh', type: 'symlink', target: 'busybox' },
  ];

  it('is reproducible: same entries in any order give the same bytes, every mtime 0', () => {
    const a = writeCpio(entries);
    expect(writeCpio([...entries].reverse()).equals(a)).toBe(true);
    expect(readCpio(a).every((e) => e.mtime === 0)).toBe(true);
  });

  it('adds parent directories, keeps modes, symlink targets and contents', () => {
    const got = readCpio(writeCpio(entries));
    expect(got.map((e) => e.name)).toEqual(['bin', 'bin/sh', 'init', 'usr', 'usr/bin', 'usr/bin/node']);
    const by = new Map(got.map((e) => [e.name, e]));
    expect(by.get('usr')!.mode).toBe(0o040755);
    expect(by.get('init')!.mode).toBe(0o100755);
    expect(by.get('init')!.data.toString()).toBe('#!/bin/busybox sh\n');
    expect(by.get('bin/sh')!.mode).toBe(0o120777);
    expect(by.get('bin/sh')!.data.toString()).toBe('busybox');
  });

  it('refuses a path added twice', () => {
    expect(() => writeCpio([...entries, { path: 'init', type: 'file', data: Buffer.from('x') }])).toThrow(/init added twice/);
  });
});
