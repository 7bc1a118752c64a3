/**
 * Builds the deploy ramdisk: a Debian kernel (apt-get download + dpkg -x) and an initramfs holding
 * busybox (busybox-static), the Node runtime, the agent bundled into one file (esbuild), the disk
 * tools the agent runs (mdadm, sgdisk, parted, wipefs, partx, lsblk, …, with the shared libraries
 * they link; zstd and qemu-img for compressed and qcow2 images) and the kernel modules it needs
 * (virtio, af_packet, md + raid0/1/10/456), plus /init.
 *
 * Reproducible: entries sorted, timestamps 0, gzip without a name or time — the same inputs give
 * the same bytes. Cached: downloads are kept under `cacheDir`, and a build whose inputs (package
 * versions, Node binary, agent sources, init scripts) hash to the key in `outDir/manifest.json` is
 * not redone.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { writeCpio, type CpioEntry } from './cpio.js';

/** Bumped when the layout changes, so cached builds are redone. */
const LAYOUT_VERSION = 2;

/** Modules loaded at boot, by name; their dependencies come from modules.dep. */
export const RAMDISK_MODULES = ['virtio_pci', 'virtio_blk', 'virtio_scsi', 'virtio_net', 'af_packet', 'crc32c_generic', 'md-mod', 'raid0', 'raid1', 'raid10', 'raid456'];

/** Host tools copied in (from their installed Debian packages), with the libraries they link. */
export const RAMDISK_TOOLS = ['mdadm', 'sgdisk', 'parted', 'partprobe', 'wipefs', 'partx', 'lsblk', 'blkid', 'blockdev', 'blkdiscard', 'mkfs.vfat', 'zstd', 'qemu-img'];

export interface RamdiskBuildOptions {
  outDir: string;
  /** Downloaded and extracted packages. @default `${outDir}/cache` */
  cacheDir?: string;
  force?: boolean;
  log?: (line: string) => void;
}

export interface RamdiskManifest {
  key: string;
  kernel: string;
  initramfs: string;
  kernel_version: string;
  packages: Record<string, string>;
  node_version: string;
  modules: string[];
  agent_bundle_bytes: number;
  initramfs_bytes: number;
  initramfs_unpacked_bytes: number;
  initramfs_sha256: string;
  kernel_bytes: number;
  build_ms: number;
  built_at: string;
  cached?: boolean;
}

/** The project root (this file runs from agent/ramdisk/ under tests, dist/agent/ramdisk/ when built). */
const ROOT = (() => {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return dir;
})();
const SRC = path.join(ROOT, 'agent', 'ramdisk');

const run = (cmd: string, args: string[], cwd?: string) => execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

function packageVersion(pkg: string): string {
  const out = run('apt-cache', ['show', '--no-all-versions', pkg]);
  const v = out.match(/^Version: (.+)$/m)?.[1];
  if (!v) throw new Error(`ramdisk: apt-cache has no version for ${pkg}`);
  return v;
}

/** The versioned kernel package linux-image-amd64 currently points at. */
function kernelPackage(): string {
  const out = run('apt-cache', ['depends', 'linux-image-amd64']);
  const pkg = out.match(/Depends: (linux-image-[0-9][^\s]*-amd64)/)?.[1];
  if (!pkg) throw new Error('ramdisk: cannot resolve linux-image-amd64 to a kernel package (apt-get update?)');
  return pkg;
}

/** apt-get download into the cache (once), dpkg -x (once); the extracted tree. */
function fetchPackage(cacheDir: string, pkg: string, version: string, log: (s: string) => void): string {
  const debs = path.join(cacheDir, 'debs');
  mkdirSync(debs, { recursive: true });
  const encoded = version.replace(/:/g, '%3a');
  const cached = () => readdirSync(debs).find((f) => f.startsWith(`${pkg}_${encoded}_`) && f.endsWith('.deb'));
  let deb = cached();
  if (!deb) {
    log(`downloading ${pkg} ${version}`);
    run('apt-get', ['download', '-q', `${pkg}=${version}`], debs);
    deb = cached();
    if (!deb) throw new Error(`ramdisk: apt-get download ${pkg}=${version} produced no .deb`);
  }
  const dir = path.join(cacheDir, 'extract', deb.replace(/\.deb$/, ''));
  if (!existsSync(path.join(dir, '.extracted'))) {
    mkdirSync(dir, { recursive: true });
    run('dpkg-deb', ['-x', path.join(debs, deb), dir]);
    writeFileSync(path.join(dir, '.extracted'), '');
  }
  return dir;
}

/** Module files (relative to lib/modules) in load order: dependencies first, builtins skipped. */
function resolveModules(modDir: string, names: string[]): string[] {
  const dep = new Map<string, string[]>();
  const byName = new Map<string, string>();
  for (const line of readFileSync(path.join(modDir, 'modules.dep'), 'utf8').split('\n')) {
    const m = line.match(/^([^:]+):\s*(.*)$/);
    if (!m) continue;
    dep.set(m[1]!, m[2]!.split(/\s+/).filter(Boolean));
    byName.set(path.basename(m[1]!).replace(/\.ko(\.[a-z]+)?$/, '').replace(/_/g, '-'), m[1]!);
  }
  const builtin = new Set(readFileSync(path.join(modDir, 'modules.builtin'), 'utf8').split('\n').map((l) => path.basename(l).replace(/\.ko$/, '').replace(/_/g, '-')));
  const order: string[] = [];
  const visit = (file: string) => {
    if (order.includes(file)) return;
    // modules.dep lists the full closure, innermost last: load from the end.
    for (const d of [...(dep.get(file) ?? [])].reverse()) visit(d);
    order.push(file);
  };
  for (const n of names) {
    const key = n.replace(/_/g, '-');
    const file = byName.get(key);
    if (file) visit(file);
    else if (!builtin.has(key)) throw new Error(`ramdisk: kernel module ${n} is neither a module nor built in`);
  }
  return order;
}

/** Shared libraries (and the loader) an ELF binary links, from ldd. */
function sharedLibs(binary: string): string[] {
  let out = '';
  try {
    out = run('ldd', [binary]);
  } catch {
    return []; // static
  }
  const libs: string[] = [];
  for (const line of out.split('\n')) {
    const m = line.match(/=>\s+(\/\S+)/) ?? line.match(/^\s+(\/\S+)\s+\(/);
    if (m) libs.push(m[1]!);
  }
  return libs;
}

function which(tool: string): string {
  for (const dir of ['/usr/sbin', '/usr/bin', '/sbin', '/bin']) {
    const p = path.join(dir, tool);
    if (existsSync(p)) return p;
  }
  throw new Error(`ramdisk: ${tool} is not installed on this host (scripts/setup.sh installs it)`);
}

function owningPackage(file: string): string {
  // Merged /usr: dpkg may list /usr/sbin/mdadm as /sbin/mdadm.
  for (const candidate of [file, file.replace(/^\/usr/, ''), realpathSync(file)]) {
    try {
      const pkg = run('dpkg-query', ['-S', candidate]).split(':')[0]!.trim();
      return `${pkg}=${run('dpkg-query', ['-W', '-f', '${Version}', pkg]).trim()}`;
    } catch {
      /* try the resolved path (merged /usr) */
    }
  }
  return 'unpackaged';
}

/** Hash of every source file the bundle is built from. */
function sourcesDigest(): string {
  const h = createHash('sha256');
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.(ts|sh|script)$/.test(e.name)) h.update(p.slice(ROOT.length)).update(readFileSync(p));
    }
  };
  walk(path.join(ROOT, 'agent'));
  walk(path.join(ROOT, 'shared'));
  h.update(readFileSync(path.join(ROOT, 'package-lock.json')));
  return h.digest('hex');
}

/**
 * The agent as one CommonJS file plus its image-sink worker as a second entry (a worker thread
 * loads its own file). import.meta.url is defined as the bundle's own file URL, so the agent finds
 * the worker beside itself.
 */
async function bundleAgent(): Promise<{ agent: Buffer; sinkWorker: Buffer }> {
  const esbuild = await import('esbuild');
  const common = {
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    write: false,
    legalComments: 'none',
    logLevel: 'silent',
    define: { 'import.meta.url': '__ironfleet_module_url' },
    banner: { js: "const __ironfleet_module_url = require('node:url').pathToFileURL(__filename).href;" },
  } as const;
  const [agent, sink] = await Promise.all([
    esbuild.build({ ...common, entryPoints: [path.join(SRC, 'entry.ts')] }),
    esbuild.build({ ...common, entryPoints: [path.join(ROOT, 'agent', 'image-sink-worker.ts')] }),
  ]);
  return { agent: Buffer.from(agent.outputFiles[0]!.contents), sinkWorker: Buffer.from(sink.outputFiles[0]!.contents) };
}

export async function buildRamdisk(o: RamdiskBuildOptions): Promise<RamdiskManifest> {
  const t0 = Date.now();
  const log = o.log ?? (() => {});
  const outDir = path.resolve(o.outDir);
  const cacheDir = path.resolve(o.cacheDir ?? path.join(outDir, 'cache'));
  mkdirSync(outDir, { recursive: true });

  const kpkg = kernelPackage();
  const packages: Record<string, string> = { [kpkg]: packageVersion(kpkg), 'busybox-static': packageVersion('busybox-static') };
  const tools = RAMDISK_TOOLS.map((t) => which(t));
  for (const t of tools) {
    const [pkg, ver] = owningPackage(t).split('=');
    packages[pkg!] = ver ?? '';
  }
  const nodeStat = statSync(process.execPath);
  const key = sha256(JSON.stringify({ LAYOUT_VERSION, packages, node: [process.version, nodeStat.size, nodeStat.mtimeMs], sources: sourcesDigest(), modules: RAMDISK_MODULES, tools: RAMDISK_TOOLS }));
  const manifestFile = path.join(outDir, 'manifest.json');
  if (!o.force && existsSync(manifestFile)) {
    const prev = JSON.parse(readFileSync(manifestFile, 'utf8')) as RamdiskManifest;
    if (prev.key === key && existsSync(prev.kernel) && existsSync(prev.initramfs)) {
      log(`up to date (key ${key.slice(0, 12)})`);
      return { ...prev, cached: true };
    }
  }

  const kdir = fetchPackage(cacheDir, kpkg, packages[kpkg]!, log);
  const bbdir = fetchPackage(cacheDir, 'busybox-static', packages['busybox-static']!, log);
  const kver = readdirSync(path.join(kdir, 'lib', 'modules'))[0]!;
  const modDir = path.join(kdir, 'lib', 'modules', kver);
  if (!existsSync(path.join(modDir, 'modules.dep'))) run('depmod', ['-b', kdir, kver]);
  const modules = resolveModules(modDir, RAMDISK_MODULES);

  log('bundling the agent (esbuild)');
  const { agent, sinkWorker } = await bundleAgent();

  const entries: CpioEntry[] = [];
  const files = new Set<string>();
  const addHostFile = (p: string) => {
    if (files.has(p)) return;
    files.add(p);
    entries.push({ path: p, type: 'file', mode: 0o755, data: readFileSync(p) });
  };
  for (const bin of [process.execPath, ...tools]) {
    addHostFile(bin);
    for (const lib of sharedLibs(bin)) addHostFile(lib);
  }
  entries.push({ path: 'bin/busybox', type: 'file', mode: 0o755, data: readFileSync(path.join(bbdir, 'bin', 'busybox')) });
  entries.push({ path: 'bin/sh', type: 'symlink', target: 'busybox' });
  entries.push({ path: 'init', type: 'file', mode: 0o755, data: readFileSync(path.join(SRC, 'init.sh')) });
  entries.push({ path: 'etc/ironfleet/udhcpc.script', type: 'file', mode: 0o755, data: readFileSync(path.join(SRC, 'udhcpc.script')) });
  entries.push({ path: 'etc/ironfleet/modules.load', type: 'file', data: Buffer.from(modules.map((m) => `${kver}/${m}\n`).join('')) });
  entries.push({ path: 'etc/ironfleet/release', type: 'file', data: Buffer.from(`ironfleet deploy ramdisk ${key.slice(0, 12)}\n`) });
  entries.push({ path: 'etc/passwd', type: 'file', data: Buffer.from('root:x:0:0:root:/root:/bin/sh\n') });
  entries.push({ path: 'etc/group', type: 'file', data: Buffer.from('root:x:0:\n') });
  entries.push({ path: 'opt/ironfleet/agent.cjs', type: 'file', data: agent });
  entries.push({ path: 'opt/ironfleet/image-sink-worker.js', type: 'file', data: sinkWorker });
  for (const m of modules) entries.push({ path: `lib/modules/${kver}/${m}`, type: 'file', data: readFileSync(path.join(modDir, m)) });
  for (const d of ['proc', 'sys', 'dev', 'run', 'tmp', 'root', 'mnt']) entries.push({ path: d, type: 'dir' });

  log(`packing ${entries.length} entries`);
  const cpio = writeCpio(entries);
  const initramfs = gzipSync(cpio, { level: 6 });
  const kernelSrc = path.join(kdir, 'boot', `vmlinuz-${kver}`);
  const kernelOut = path.join(outDir, 'vmlinuz');
  const initrdOut = path.join(outDir, 'initramfs.cpio.gz');
  writeFileSync(kernelOut, readFileSync(kernelSrc));
  writeFileSync(initrdOut, initramfs);
  const manifest: RamdiskManifest = {
    key,
    kernel: kernelOut,
    initramfs: initrdOut,
    kernel_version: kver,
    packages,
    node_version: process.version,
    modules: modules.map((m) => path.basename(m)),
    agent_bundle_bytes: agent.length,
    initramfs_bytes: initramfs.length,
    initramfs_unpacked_bytes: cpio.length,
    initramfs_sha256: sha256(initramfs),
    kernel_bytes: statSync(kernelOut).size,
    build_ms: Date.now() - t0,
    built_at: new Date().toISOString(),
  };
  writeFileSync(manifestFile, JSON.stringify(manifest, null, 2));
  return manifest;
}
