/** Software RAID planning (IPA rules): every supported level, layouts, and every rejected config. */
import { describe, expect, it } from 'vitest';
import { RaidConfigError, partitionName, planSoftwareRaid } from '../../agent/raid-plan.js';
import type { InventoryDisk } from '../../shared/inventory.js';

const GiB = 2 ** 30;
const disk = (name: string, gib: number, extra: Partial<InventoryDisk> = {}): InventoryDisk => ({
  name, size: gib * GiB, model: null, rotational: false, wwn: null, serial: null, vendor: null, wwn_with_extension: null,
  wwn_vendor_extension: null, hctl: null, by_path: null, logical_sectors: 512, physical_sectors: 512, tran: null, ...extra,
});
const four = [disk('/dev/sda', 100, { serial: 'A' }), disk('/dev/sdb', 100, { serial: 'B' }), disk('/dev/nvme0n1', 100, { serial: 'C', tran: 'nvme' }), disk('/dev/nvme1n1', 100, { serial: 'D', tran: 'nvme' })];
const sw = (ld: Record<string, unknown>) => ({ controller: 'software', ...ld });

describe('planSoftwareRaid', () => {
  it('names partitions like the kernel (p separator after a digit)', () => {
    expect(partitionName('/dev/sda', 2)).toBe('/dev/sda2');
    expect(partitionName('/dev/nvme0n1', 2)).toBe('/dev/nvme0n1p2');
  });

  it('RAID-1 root + RAID-0 MAX on two disks, UEFI: gpt, mirrored ESP (metadata 1.0), fixed volume first', () => {
    const p = planSoftwareRaid(
      { logical_disks: [sw({ raid_level: '1', size_gb: 20, volume_name: 'root', is_root_volume: true }), sw({ raid_level: '0', size_gb: 'MAX', volume_name: 'data' })] },
      four.slice(0, 2),
      'uefi',
    );
    expect(p.label).toBe('gpt');
    expect(p.holders).toEqual(['/dev/sda', '/dev/sdb']);
    expect(p.arrays.map((a) => [a.device, a.level, a.name, a.members])).toEqual([
      ['/dev/md0', '1', 'root', ['/dev/sda2', '/dev/sdb2']],
      ['/dev/md1', '0', 'data', ['/dev/sda3', '/dev/sdb3']],
    ]);
    expect(p.esp).toMatchObject({ device: '/dev/md2', metadata: '1.0', members: ['/dev/sda1', '/dev/sdb1'] });
    const cmds = p.commands.map((c) => c.join(' '));
    expect(cmds[0]).toBe('parted -s /dev/sda -- mklabel gpt');
    expect(cmds).toContain('parted -s -a optimal /dev/sda -- mkpart primary 1MiB 551MiB');
    expect(cmds).toContain('sgdisk -t 1:ef00 /dev/sda');
    expect(cmds).toContain(`parted -s -a optimal /dev/sdb -- mkpart primary 551MiB ${551 + 20 * 1024}MiB`);
    expect(cmds).toContain(`parted -s -a optimal /dev/sdb -- mkpart primary ${551 + 20 * 1024}MiB -1`);
    expect(cmds).toContain('mdadm --create /dev/md0 --force --run --metadata=1 --level=1 --name=root --raid-devices=2 /dev/sda2 /dev/sdb2');
    expect(cmds).toContain('mdadm --create /dev/md2 --force --run --metadata=1.0 --level=1 --name=esp --raid-devices=2 /dev/sda1 /dev/sdb1');
    expect(cmds.at(-1)).toBe('mkfs.vfat -F 32 -n EFI /dev/md2');
    // mdadm for data comes after its partitions
    expect(cmds.indexOf('mdadm --create /dev/md1 --force --run --metadata=1 --level=0 --name=data --raid-devices=2 /dev/sda3 /dev/sdb3')).toBeGreaterThan(cmds.indexOf(`parted -s -a optimal /dev/sdb -- mkpart primary ${551 + 20 * 1024}MiB -1`));
  });

  it('MAX listed first is still created last', () => {
    const p = planSoftwareRaid({ logical_disks: [sw({ raid_level: '1', size_gb: 'MAX' }), sw({ raid_level: '0', size_gb: 10 })] }, four.slice(0, 2), 'bios');
    expect(p.arrays.map((a) => [a.level, a.size_gb])).toEqual([['0', 10], ['1', 'MAX']]);
  });

  const levels: Array<[string, number, string]> = [
    ['1', 2, '--level=1'],
    ['0', 2, '--level=0'],
    ['5', 3, '--level=5'],
    ['6', 4, '--level=6'],
    ['1+0', 4, '--level=10'],
  ];
  for (const [level, n, flag] of levels) {
    it(`second volume RAID-${level} on ${n} disks (BIOS msdos)`, () => {
      const p = planSoftwareRaid({ logical_disks: [sw({ raid_level: '1', size_gb: 10 }), sw({ raid_level: level, size_gb: 'MAX' })] }, four.slice(0, n), 'bios');
      expect(p.label).toBe('msdos');
      expect(p.esp).toBeNull();
      expect(p.arrays[1]!.members).toHaveLength(n);
      expect(p.commands.map((c) => c.join(' ')).some((c) => c.includes(flag) && c.includes(`--raid-devices=${n}`))).toBe(true);
    });
  }

  it('BIOS with gpt reserves bios_grub; NVMe members get p-partitions', () => {
    const p = planSoftwareRaid({ logical_disks: [sw({ raid_level: '1', size_gb: 'MAX', physical_disks: [{ tran: 'nvme' }, { tran: 'nvme' }] })] }, four, 'bios', 'gpt');
    expect(p.holders).toEqual(['/dev/nvme0n1', '/dev/nvme1n1']);
    expect(p.arrays[0]!.members).toEqual(['/dev/nvme0n1p2', '/dev/nvme1n1p2']);
    expect(p.commands.map((c) => c.join(' '))).toContain('parted -s /dev/nvme0n1 -- set 1 bios_grub on');
  });

  it('physical_disks hints: each takes its first unused match', () => {
    const p = planSoftwareRaid({ logical_disks: [sw({ raid_level: '1', size_gb: 10, physical_disks: [{ serial: 'D' }, { size: '>= 50' }] })] }, four, 'bios');
    expect(p.arrays[0]!.members).toEqual(['/dev/nvme1n1p1', '/dev/sda1']);
  });

  const bad: Array<[string, unknown, RegExp]> = [
    ['not an object', 'raid please', /target_raid_config/],
    ['no logical disks', { logical_disks: [] }, /logical_disks/],
    ['unknown property', { logical_disks: [sw({ raid_level: '1', size_gb: 10, colour: 'red' })] }, /logical_disks\.0\.colour: unknown property/],
    ['unknown top-level key', { logical_disks: [sw({ raid_level: '1', size_gb: 10 })], extra: 1 }, /target_raid_config\.extra/],
    ['three volumes', { logical_disks: [sw({ raid_level: '1', size_gb: 1 }), sw({ raid_level: '0', size_gb: 1 }), sw({ raid_level: '0', size_gb: 1 })] }, /at most 2 logical disks/],
    ['hardware controller', { logical_disks: [{ raid_level: '1', size_gb: 10, controller: 'RAID.Integrated.1-1' }] }, /controller: must be "software"/],
    ['first not RAID-1', { logical_disks: [sw({ raid_level: '0', size_gb: 10 })] }, /first logical disk must be RAID-1/],
    ['unsupported level', { logical_disks: [sw({ raid_level: '1', size_gb: 10 }), sw({ raid_level: '5+0', size_gb: 10 })] }, /5\+0 is not supported/],
    ['bad level string', { logical_disks: [sw({ raid_level: '7', size_gb: 10 })] }, /raid_level/],
    ['negative size', { logical_disks: [sw({ raid_level: '1', size_gb: -1 })] }, /size_gb/],
    ['two MAX', { logical_disks: [sw({ raid_level: '1', size_gb: 'MAX' }), sw({ raid_level: '0', size_gb: 'MAX' })] }, /at most one logical disk may have size_gb MAX/],
    ['two roots', { logical_disks: [sw({ raid_level: '1', size_gb: 1, is_root_volume: true }), sw({ raid_level: '0', size_gb: 1, is_root_volume: true })] }, /root volume/],
    ['duplicate names', { logical_disks: [sw({ raid_level: '1', size_gb: 1, volume_name: 'v' }), sw({ raid_level: '0', size_gb: 1, volume_name: 'v' })] }, /unique/],
    ['RAID-5 on 2 disks', { logical_disks: [sw({ raid_level: '1', size_gb: 1 }), sw({ raid_level: '5', size_gb: 'MAX', physical_disks: [{ serial: 'A' }, { serial: 'B' }] })] }, /RAID-5 needs at least 3 disks, 2 available/],
    ['RAID-6 on 3 disks', { logical_disks: [sw({ raid_level: '1', size_gb: 1 }), sw({ raid_level: '6', size_gb: 'MAX', physical_disks: [{ serial: 'A' }, { serial: 'B' }, { serial: 'C' }] })] }, /RAID-6 needs at least 4 disks, 3 available/],
    ['RAID-1 on 1 disk', { logical_disks: [sw({ raid_level: '1', size_gb: 1, physical_disks: [{ serial: 'A' }] })] }, /RAID-1 needs at least 2 disks/],
    ['hint without match', { logical_disks: [sw({ raid_level: '1', size_gb: 1, physical_disks: [{ serial: 'A' }, { serial: 'Z' }] })] }, /physical_disks\.1: no unused disk matches/],
    ['same disk twice', { logical_disks: [sw({ raid_level: '1', size_gb: 1, physical_disks: [{ serial: 'A' }, { serial: 'A' }] })] }, /physical_disks\.1: no unused disk/],
    ['bad hint', { logical_disks: [sw({ raid_level: '1', size_gb: 1, physical_disks: [{ colour: 'red' }, { serial: 'A' }] })] }, /physical_disks\.0: root_device\.colour/],
    ['too big', { logical_disks: [sw({ raid_level: '1', size_gb: 500 })] }, /the volumes on it need 500 GiB/],
  ];
  for (const [label, cfg, re] of bad) {
    it(`rejects: ${label}`, () => {
      expect(() => planSoftwareRaid(cfg, four, 'uefi')).toThrow(RaidConfigError);
      expect(() => planSoftwareRaid(cfg, four, 'uefi')).toThrow(re);
    });
  }
});
