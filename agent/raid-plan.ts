/**
 * Software RAID planning with IPA's rules: a pure function from (target_raid_config, disks, boot
 * mode) to an ordered list of commands (partition tables, partitions, mdadm arrays, mirrored ESP).
 * Validation errors name the field. Execution (running the commands) is separate, so the plan can
 * be unit-tested exhaustively and the executor driven inside a VM.
 */
import { z } from 'zod';
import type { InventoryDisk } from '../shared/inventory.js';
import { targetRaidConfigSchema } from '../shared/raid-config.js';
import { compileHints, matchesHints } from './root-device.js';

const GIB = 2 ** 30;
/** UEFI: room for a 550 MiB ESP at the start of every holder (IPA leaves 551 MiB). */
export const UEFI_ESP_START_MIB = 1;
export const UEFI_ESP_END_MIB = 551;
/** BIOS + gpt: 8 MiB for bios_grub. */
export const BIOS_GPT_RESERVED_MIB = 8;

export { targetRaidConfigSchema, type TargetRaidConfig } from '../shared/raid-config.js';

export class RaidConfigError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
    this.name = 'RaidConfigError';
  }
}

export interface PlannedArray {
  device: string;
  level: string;
  name: string;
  members: string[];
  size_gb: number | 'MAX';
  is_root_volume: boolean;
  metadata: '1' | '1.0';
}

export interface RaidPlan {
  holders: string[];
  label: 'gpt' | 'msdos';
  arrays: PlannedArray[];
  esp: PlannedArray | null;
  /** Commands in execution order (argv arrays). */
  commands: string[][];
}

const SUPPORTED_LEVELS = new Set(['0', '1', '1+0', '5', '6']);
const MIN_DISKS: Record<string, number> = { '0': 2, '1': 2, '1+0': 4, '5': 3, '6': 4 };

/** /dev/sda + 2 → /dev/sda2; /dev/nvme0n1 + 2 → /dev/nvme0n1p2 (names ending in a digit get "p"). */
export function partitionName(disk: string, n: number): string {
  return /\d$/.test(disk) ? `${disk}p${n}` : `${disk}${n}`;
}

export function planSoftwareRaid(rawConfig: unknown, disks: InventoryDisk[], bootMode: 'uefi' | 'bios', diskLabel: 'gpt' | 'msdos' = 'msdos'): RaidPlan {
  const parsed = targetRaidConfigSchema.safeParse(rawConfig);
  if (!parsed.success) {
    const i = parsed.error.issues[0]!;
    const path = ['target_raid_config', ...i.path.map(String)].join('.');
    throw new RaidConfigError(i.code === 'unrecognized_keys' ? `${path}.${i.keys[0]}` : path, i.code === 'unrecognized_keys' ? 'unknown property' : i.message);
  }
  const lds = parsed.data.logical_disks;
  if (lds.length > 2) throw new RaidConfigError('target_raid_config.logical_disks', `software RAID supports at most 2 logical disks, got ${lds.length}`);
  lds.forEach((ld, i) => {
    const f = `target_raid_config.logical_disks.${i}`;
    if (ld.controller !== 'software') throw new RaidConfigError(`${f}.controller`, 'must be "software" on every logical disk for software RAID');
    if (!SUPPORTED_LEVELS.has(ld.raid_level)) throw new RaidConfigError(`${f}.raid_level`, `level ${ld.raid_level} is not supported by software RAID (use 0, 1, 1+0, 5 or 6)`);
  });
  if (lds[0]!.raid_level !== '1') throw new RaidConfigError('target_raid_config.logical_disks.0.raid_level', `the first logical disk must be RAID-1, got ${lds[0]!.raid_level}`);
  if (lds.filter((l) => l.size_gb === 'MAX').length > 1) throw new RaidConfigError('target_raid_config.logical_disks', 'at most one logical disk may have size_gb MAX');
  if (lds.filter((l) => l.is_root_volume).length > 1) throw new RaidConfigError('target_raid_config.logical_disks', 'at most one logical disk may be the root volume');
  const names = lds.map((l) => l.volume_name).filter((n): n is string => Boolean(n));
  if (new Set(names).size !== names.length) throw new RaidConfigError('target_raid_config.logical_disks', `volume names must be unique, got ${names.join(', ')}`);

  // Members: hints (each takes its first unused match), else every block device.
  const memberSets = lds.map((ld, i) => {
    const f = `target_raid_config.logical_disks.${i}`;
    // md devices are results of RAID, never members of a new one.
    if (!ld.physical_disks) return disks.filter((d) => !/^\/dev\/md/.test(d.name)).map((d) => d.name);
    const used = new Set<string>();
    return ld.physical_disks.map((hints, j) => {
      let compiled;
      try {
        compiled = compileHints(hints);
      } catch (err) {
        throw new RaidConfigError(`${f}.physical_disks.${j}`, (err as Error).message);
      }
      const hit = disks.find((d) => !used.has(d.name) && !/^\/dev\/md/.test(d.name) && matchesHints(d, compiled));
      if (!hit) throw new RaidConfigError(`${f}.physical_disks.${j}`, `no unused disk matches ${JSON.stringify(hints)}`);
      used.add(hit.name);
      return hit.name;
    });
  });
  lds.forEach((ld, i) => {
    const need = MIN_DISKS[ld.raid_level]!;
    if (memberSets[i]!.length < need) {
      throw new RaidConfigError(`target_raid_config.logical_disks.${i}.raid_level`, `RAID-${ld.raid_level} needs at least ${need} disks, ${memberSets[i]!.length} available`);
    }
    if (ld.raid_level === '1+0' && memberSets[i]!.length % 2 !== 0) throw new RaidConfigError(`target_raid_config.logical_disks.${i}.raid_level`, 'RAID-1+0 needs an even number of disks');
  });

  const holders = [...new Set(memberSets.flat())];
  const label: 'gpt' | 'msdos' = bootMode === 'uefi' ? 'gpt' : diskLabel;
  const startMiB = bootMode === 'uefi' ? UEFI_ESP_END_MIB : label === 'gpt' ? BIOS_GPT_RESERVED_MIB + 1 : 1;
  // Space check: every holder must fit the fixed-size volumes that use it.
  for (const h of holders) {
    const d = disks.find((x) => x.name === h)!;
    const fixed = lds.reduce((acc, ld, i) => (memberSets[i]!.includes(h) && ld.size_gb !== 'MAX' ? acc + ld.size_gb : acc), 0);
    const avail = d.size / GIB - startMiB / 1024;
    if (fixed > avail) throw new RaidConfigError('target_raid_config.logical_disks', `disk ${h} has ${avail.toFixed(1)} GiB usable, the volumes on it need ${fixed} GiB`);
  }

  const commands: string[][] = [];
  for (const h of holders) commands.push(['parted', '-s', h, '--', 'mklabel', label]);
  const partCount = new Map<string, number>(holders.map((h) => [h, 0]));
  // Positions in whole MiB: parted refuses fractional GiB values below 1 and rounds others.
  const cursorMiB = new Map<string, number>(holders.map((h) => [h, startMiB]));
  const addPart = (disk: string, start: string, end: string): string => {
    const n = partCount.get(disk)! + 1;
    partCount.set(disk, n);
    commands.push(['parted', '-s', '-a', 'optimal', disk, '--', 'mkpart', 'primary', start, end]);
    return partitionName(disk, n);
  };
  let esp: PlannedArray | null = null;
  const espParts: string[] = [];
  if (bootMode === 'uefi') {
    for (const h of holders) {
      const p = addPart(h, `${UEFI_ESP_START_MIB}MiB`, `${UEFI_ESP_END_MIB}MiB`);
      commands.push(['sgdisk', '-t', `${partCount.get(h)}:ef00`, h]);
      espParts.push(p);
    }
  } else if (label === 'gpt') {
    for (const h of holders) {
      addPart(h, '1MiB', `${BIOS_GPT_RESERVED_MIB + 1}MiB`);
      commands.push(['parted', '-s', h, '--', 'set', String(partCount.get(h)), 'bios_grub', 'on']);
    }
  }
  // MAX goes last so the fixed-size volumes get their space first.
  const order = lds.map((ld, i) => ({ ld, i })).sort((a, b) => Number(a.ld.size_gb === 'MAX') - Number(b.ld.size_gb === 'MAX'));
  const arrays: PlannedArray[] = [];
  for (const [k, { ld, i }] of order.entries()) {
    const parts = memberSets[i]!.map((disk) => {
      const start = cursorMiB.get(disk)!;
      if (ld.size_gb === 'MAX') return addPart(disk, `${start}MiB`, '-1');
      const end = start + ld.size_gb * 1024;
      cursorMiB.set(disk, end);
      return addPart(disk, `${start}MiB`, `${end}MiB`);
    });
    const device = `/dev/md${k}`;
    const name = ld.volume_name ?? `md${k}`;
    arrays.push({ device, level: ld.raid_level, name, members: parts, size_gb: ld.size_gb, is_root_volume: Boolean(ld.is_root_volume), metadata: '1' });
    commands.push(['mdadm', '--create', device, '--force', '--run', '--metadata=1', `--level=${ld.raid_level === '1+0' ? '10' : ld.raid_level}`, `--name=${name}`, `--raid-devices=${parts.length}`, ...parts]);
  }
  if (espParts.length) {
    // A mirrored ESP with metadata 1.0 (superblock at the end) so firmware reads plain FAT.
    esp = { device: `/dev/md${arrays.length}`, level: '1', name: 'esp', members: espParts, size_gb: 0, is_root_volume: false, metadata: '1.0' };
    commands.push(['mdadm', '--create', esp.device, '--force', '--run', '--metadata=1.0', '--level=1', '--name=esp', `--raid-devices=${espParts.length}`, ...espParts]);
    commands.push(['mkfs.vfat', '-F', '32', '-n', 'EFI', esp.device]);
  }
  return { holders, label, arrays, esp, commands };
}
