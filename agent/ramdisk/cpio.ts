/**
 * A reproducible initramfs archive: the kernel's "newc" cpio format written directly (no cpio
 * binary needed), entries sorted by path, every timestamp 0, owner root, inode numbers assigned
 * in order — the same inputs give the same bytes.
 */
export type CpioEntry =
  | { path: string; type: 'dir'; mode?: number }
  | { path: string; type: 'file'; mode?: number; data: Buffer }
  | { path: string; type: 'symlink'; target: string };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;

function header(ino: number, mode: number, nlink: number, size: number, nameSize: number): string {
  const hex = (n: number) => n.toString(16).padStart(8, '0');
  // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize, check
  return '070701' + [ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, nameSize, 0].map(hex).join('');
}

const pad4 = (n: number) => (4 - (n % 4)) % 4;

/** The archive: parents are added for every path, duplicates refused. */
export function writeCpio(entries: CpioEntry[]): Buffer {
  const byPath = new Map<string, CpioEntry>();
  for (const e of entries) {
    const p = e.path.replace(/^\/+/, '');
    if (!p) continue;
    const parts = p.split('/');
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      if (!byPath.has(dir)) byPath.set(dir, { path: dir, type: 'dir' });
    }
    const prev = byPath.get(p);
    if (prev && !(prev.type === 'dir' && e.type === 'dir')) throw new Error(`initramfs: ${p} added twice`);
    byPath.set(p, { ...e, path: p });
  }
  const out: Buffer[] = [];
  let ino = 1;
  const push = (name: string, mode: number, nlink: number, data: Buffer) => {
    const nameBuf = Buffer.from(`${name}\0`);
    const h = Buffer.from(header(ino++, mode, nlink, data.length, nameBuf.length), 'ascii');
    out.push(h, nameBuf, Buffer.alloc(pad4(h.length + nameBuf.length)), data, Buffer.alloc(pad4(data.length)));
  };
  for (const p of [...byPath.keys()].sort()) {
    const e = byPath.get(p)!;
    if (e.type === 'dir') push(p, S_IFDIR | (e.mode ?? 0o755), 2, Buffer.alloc(0));
    else if (e.type === 'file') push(p, S_IFREG | (e.mode ?? 0o644), 1, e.data);
    else push(p, S_IFLNK | 0o777, 1, Buffer.from(e.target));
  }
  push('TRAILER!!!', 0, 1, Buffer.alloc(0));
  return Buffer.concat(out);
}
