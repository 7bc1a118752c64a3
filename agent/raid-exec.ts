/**
 * Runs a software RAID plan (agent/raid-plan.ts) with the real tools — parted, sgdisk, mdadm,
 * mkfs.vfat — and tears a configuration down again (IPA's create_configuration /
 * delete_configuration). Every tool failure names the command, its exit status and stderr; a
 * failed create rolls back what it built so the disks are left blank, never half-RAIDed.
 *
 * Real md needs the kernel's md modules, which exist in the deploy ramdisk (see the qemu test),
 * not on every host; the partitioning half also runs on loop devices.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import type { RaidPlan } from './raid-plan.js';

export class RaidExecError extends Error {
  constructor(
    readonly code: 'TOOL_FAILED' | 'TOOL_MISSING' | 'DEVICE_MISSING' | 'CANCELLED',
    message: string,
    readonly argv: string[] = [],
  ) {
    super(message);
    this.name = 'RaidExecError';
  }
}

export interface ToolResult {
  stdout: string;
  stderr: string;
}

/** Runs one argv; rejects with RaidExecError naming the command. Replaceable for a VM harness. */
export type ToolRunner = (argv: string[], signal?: AbortSignal) => Promise<ToolResult>;

export const runTool: ToolRunner = (argv, signal) =>
  new Promise((resolve, reject) => {
    execFile(argv[0]!, argv.slice(1), { signal, timeout: 300_000, maxBuffer: 4 << 20 }, (err, stdout, stderr) => {
      if (!err) return resolve({ stdout, stderr });
      const e = err as NodeJS.ErrnoException & { code?: string | number };
      if (signal?.aborted) return reject(new RaidExecError('CANCELLED', `${argv.join(' ')}: cancelled`, argv));
      if (e.code === 'ENOENT') return reject(new RaidExecError('TOOL_MISSING', `${argv[0]} is not installed on this agent`, argv));
      const tail = String(stderr || stdout).trim().split('\n').slice(-3).join(' / ');
      reject(new RaidExecError('TOOL_FAILED', `${argv.join(' ')} failed (exit ${typeof e.code === 'number' ? e.code : '?'}): ${tail || e.message}`, argv));
    });
  });

export interface RaidDevice {
  device: string;
  level: string;
  name: string;
  members: string[];
  size_bytes: number;
  is_root_volume: boolean;
}

export interface ApplyOptions {
  run?: ToolRunner;
  signal?: AbortSignal;
  log?: (message: string) => void;
  progress?: (done: number, total: number, argv: string[]) => void;
  /** How long to wait for partition/md device nodes to appear. @default 10000 */
  deviceWaitMs?: number;
}

async function waitForDevice(dev: string, ms: number, run: ToolRunner, disk?: string): Promise<void> {
  const until = Date.now() + ms;
  let poked = false;
  while (!existsSync(dev)) {
    if (Date.now() > until) throw new RaidExecError('DEVICE_MISSING', `${dev} did not appear within ${ms} ms`);
    if (disk && !poked) {
      poked = true;
      await run(['partx', '-u', disk]).catch(() => undefined);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** md device size from sysfs (512-byte sectors), 0 when unknown. */
function mdSize(dev: string): number {
  const n = dev.split('/').pop()!;
  try {
    return Number(readFileSync(`/sys/block/${n}/size`, 'utf8').trim()) * 512;
  } catch {
    return 0;
  }
}

/** Build the planned arrays. On failure, tear down what was built and wipe the holders. */
export async function applyRaidPlan(plan: RaidPlan, o: ApplyOptions = {}): Promise<RaidDevice[]> {
  const run = o.run ?? runTool;
  const wait = o.deviceWaitMs ?? 10_000;
  const log = o.log ?? (() => {});
  // Arrays still assembled on these disks (a previous deploy, e.g. a fast-track rebuild) hold
  // their partitions: stop them and clear their members first.
  if (listMdArrays().some((a) => a.members.some((m) => plan.holders.includes(holderOf(m))))) {
    log('stopping the md arrays already on these disks');
    await teardown(plan.holders, run, log);
  }
  // Old signatures (a previous array's superblocks, filesystems) would confuse mdadm and the OS.
  const prep = plan.holders.map((h) => ['wipefs', '--all', '--force', h]);
  const all = [...prep, ...plan.commands];
  try {
    for (const [i, argv] of all.entries()) {
      if (o.signal?.aborted) throw new RaidExecError('CANCELLED', 'RAID configuration cancelled');
      // Partitions and arrays must exist as device nodes before mdadm/mkfs use them.
      if (argv[0] === 'mdadm') {
        for (const m of argv.slice(argv.findIndex((a) => a.startsWith('--raid-devices=')) + 1)) {
          await waitForDevice(m, wait, run, plan.holders.find((h) => m.startsWith(h)));
        }
      }
      if (argv[0] === 'mkfs.vfat') await waitForDevice(argv[argv.length - 1]!, wait, run);
      log(argv.join(' '));
      await run(argv, o.signal);
      o.progress?.(i + 1, all.length, argv);
    }
  } catch (err) {
    log(`RAID configuration failed, rolling back: ${(err as Error).message}`);
    await teardown(plan.holders, run, log).catch((e: Error) => log(`rollback incomplete: ${e.message}`));
    throw err;
  }
  const vols = [...plan.arrays, ...(plan.esp ? [plan.esp] : [])];
  return vols.map((a) => ({ device: a.device, level: a.level, name: a.name, members: a.members, size_bytes: mdSize(a.device), is_root_volume: a.is_root_volume }));
}

/** md arrays currently assembled, with their member block devices (from sysfs). */
export function listMdArrays(): Array<{ device: string; members: string[] }> {
  let names: string[] = [];
  try {
    names = readdirSync('/sys/block').filter((n) => /^md\d+$/.test(n));
  } catch {
    return [];
  }
  return names.map((n) => {
    let members: string[] = [];
    try {
      members = readdirSync(`/sys/block/${n}/slaves`).map((s) => `/dev/${s}`);
    } catch {
      /* no slaves dir */
    }
    return { device: `/dev/${n}`, members };
  });
}

/** The disk a partition belongs to (/dev/sda2 → /dev/sda, /dev/nvme0n1p2 → /dev/nvme0n1). */
export function holderOf(part: string): string {
  const m = part.match(/^(.*\d)p\d+$/) ?? part.match(/^(.*\D)\d+$/);
  return m ? m[1]! : part;
}

async function teardown(holders: string[], run: ToolRunner, log: (m: string) => void): Promise<void> {
  const errors: string[] = [];
  const step = async (argv: string[]) => {
    log(argv.join(' '));
    await run(argv).catch((e: Error) => errors.push(e.message));
  };
  for (const md of listMdArrays().filter((a) => a.members.some((m) => holders.includes(holderOf(m))))) {
    await step(['mdadm', '--stop', md.device]);
    for (const m of md.members) await step(['mdadm', '--zero-superblock', m]);
  }
  for (const h of holders) {
    for (const p of partitionsOf(h)) await run(['wipefs', '--all', '--force', p]).catch(() => undefined);
    await step(['wipefs', '--all', '--force', h]);
    await step(['sgdisk', '--zap-all', h]);
    await run(['partx', '-d', h]).catch(() => undefined);
  }
  if (errors.length) throw new RaidExecError('TOOL_FAILED', errors.join('; '));
}

/** Partition device nodes of a disk, from sysfs. */
function partitionsOf(disk: string): string[] {
  const n = disk.split('/').pop()!;
  try {
    return readdirSync(`/sys/block/${n}`).filter((p) => p.startsWith(n) && /\d$/.test(p)).map((p) => `/dev/${p}`);
  } catch {
    return [];
  }
}

/**
 * delete_configuration: stop every md array on the given disks (all arrays when none are given),
 * zero the members' superblocks and wipe the holders' partition tables.
 */
export async function deleteRaidConfiguration(disks: string[] | undefined, o: { run?: ToolRunner; log?: (m: string) => void } = {}): Promise<{ stopped: string[]; wiped: string[] }> {
  const run = o.run ?? runTool;
  const arrays = listMdArrays().filter((a) => !disks || a.members.some((m) => disks.includes(holderOf(m))));
  const holders = [...new Set([...(disks ?? []), ...arrays.flatMap((a) => a.members.map(holderOf))])];
  await teardown(holders, run, o.log ?? (() => {}));
  return { stopped: arrays.map((a) => a.device), wiped: holders };
}
