/** IPA root-device hints: every hint and every operator, table-driven. */
import { describe, expect, it } from 'vitest';
import { RootDeviceHintError, selectRootDevice } from '../../agent/root-device.js';
import type { InventoryDisk } from '../../shared/inventory.js';

const GiB = 2 ** 30;
const disk = (name: string, gib: number, extra: Partial<InventoryDisk> = {}): InventoryDisk => ({
  name, size: gib * GiB, model: null, rotational: false, wwn: null, serial: null, vendor: null, wwn_with_extension: null,
  wwn_vendor_extension: null, hctl: null, by_path: null, logical_sectors: 512, physical_sectors: 512, tran: null, ...extra,
});

const DISKS: InventoryDisk[] = [
  disk('/dev/sda', 2000, { model: 'ST2000NM', vendor: 'SEAGATE', rotational: true, serial: 'ZA1', wwn: '0x5000c500a1', hctl: '0:0:0:0', by_path: '/dev/disk/by-path/pci-0000:00:17.0-ata-1', tran: 'sata', wwn_with_extension: '0x5000c500a1', wwn_vendor_extension: '0x1' }),
  disk('/dev/sdb', 480, { model: 'INTEL SSDSC2KB480G8', vendor: 'ATA', serial: 'BTYF1', wwn: '0x55cd2e41', hctl: '1:0:0:0', by_path: '/dev/disk/by-path/pci-0000:00:17.0-ata-2', tran: 'sata' }),
  disk('/dev/nvme0n1', 960, { model: 'SAMSUNG MZQL2960HCJR', serial: 'S64F', wwn: 'eui.0025', tran: 'nvme', by_path: '/dev/disk/by-path/pci-0000:5e:00.0-nvme-1' }),
  disk('/dev/nvme1n1', 960, { model: 'SAMSUNG MZQL2960HCJR', serial: 'S64G', tran: 'nvme' }),
  disk('/dev/sdc', 2, { model: 'USB KEY', tran: 'usb' }),
];

const pick = (hints: Record<string, unknown> | null) => selectRootDevice(DISKS, hints)?.name;

describe('root device hints (IPA semantics)', () => {
  it('without hints: the smallest disk of at least 4 GiB', () => {
    expect(pick(null)).toBe('/dev/sdb');
    expect(pick({})).toBe('/dev/sdb');
    expect(selectRootDevice([disk('/dev/sdz', 3)], null)).toBeUndefined();
    // ties broken by name
    expect(selectRootDevice([disk('/dev/b', 10), disk('/dev/a', 10)], null)!.name).toBe('/dev/a');
  });

  const cases: Array<[string, Record<string, unknown>, string | undefined]> = [
    // every hint, default operator
    ['name', { name: '/dev/nvme1n1' }, '/dev/nvme1n1'],
    ['model (case-insensitive)', { model: 'intel ssdsc2kb480g8' }, '/dev/sdb'],
    ['vendor', { vendor: 'SEAGATE' }, '/dev/sda'],
    ['serial', { serial: 'S64G' }, '/dev/nvme1n1'],
    ['wwn', { wwn: '0x55cd2e41' }, '/dev/sdb'],
    ['wwn_with_extension', { wwn_with_extension: '0x5000c500a1' }, '/dev/sda'],
    ['wwn_vendor_extension', { wwn_vendor_extension: '0x1' }, '/dev/sda'],
    ['hctl', { hctl: '1:0:0:0' }, '/dev/sdb'],
    ['by_path', { by_path: '/dev/disk/by-path/pci-0000:5e:00.0-nvme-1' }, '/dev/nvme0n1'],
    ['tran', { tran: 'nvme' }, '/dev/nvme0n1'],
    ['rotational true', { rotational: true }, '/dev/sda'],
    ['rotational "false" string', { rotational: 'false' }, '/dev/sdb'],
    ['size int (GiB)', { size: 960 }, '/dev/nvme0n1'],
    ['size string', { size: '480' }, '/dev/sdb'],
    // numeric operators
    ['size ==', { size: '== 2000' }, '/dev/sda'],
    ['size !=', { size: '!= 2000' }, '/dev/sdb'],
    ['size >=', { size: '>= 960' }, '/dev/sda'],
    ['size >', { size: '> 960' }, '/dev/sda'],
    ['size <=', { size: '<= 480' }, '/dev/sdb'],
    ['size <', { size: '< 480' }, '/dev/sdc'],
    ['size = (legacy >=)', { size: '= 500' }, '/dev/sda'],
    ['size <range-in> inclusive', { size: '<range-in> [480 960]' }, '/dev/sdb'],
    ['size <range-in> exclusive', { size: '<range-in> (480 960]' }, '/dev/nvme0n1'],
    ['size <range-in> both exclusive', { size: '<range-in> (480 960)' }, undefined],
    // string operators
    ['s==', { model: 's== SAMSUNG MZQL2960HCJR' }, '/dev/nvme0n1'],
    ['s!=', { tran: 's!= sata' }, '/dev/nvme0n1'],
    ['s>= (lexicographic: ZA1 >= S64G comes first)', { serial: 's>= S64G' }, '/dev/sda'],
    ['s>= with tran', { serial: 's>= S64G', tran: 'nvme' }, '/dev/nvme1n1'],
    ['s> with tran', { serial: 's> S64F', tran: 'nvme' }, '/dev/nvme1n1'],
    ['s<=', { serial: 's<= BTYF1' }, '/dev/sdb'],
    ['s<', { serial: 's< C' }, '/dev/sdb'],
    ['<in>', { model: '<in> intel' }, '/dev/sdb'],
    ['<or>', { serial: '<or> NOPE <or> S64G' }, '/dev/nvme1n1'],
    ['<all-in>', { model: '<all-in> samsung 2960' }, '/dev/nvme0n1'],
    // all hints must match; the first match in order wins
    ['several hints', { tran: 'nvme', serial: 'S64G' }, '/dev/nvme1n1'],
    ['first match wins', { model: 'SAMSUNG MZQL2960HCJR' }, '/dev/nvme0n1'],
    ['no match', { serial: 'NOPE' }, undefined],
    ['conflicting hints', { tran: 'usb', rotational: true }, undefined],
  ];
  for (const [label, hints, want] of cases) it(`${label}: ${JSON.stringify(hints)} → ${want ?? 'none'}`, () => expect(pick(hints)).toBe(want));

  it('list-valued attributes match when any value matches', () => {
    const d = [disk('/dev/sdx', 100, { serial: ['A1', 'B2'] as unknown as string })];
    expect(selectRootDevice(d, { serial: 'B2' })!.name).toBe('/dev/sdx');
    expect(selectRootDevice(d, { serial: 'C3' })).toBeUndefined();
  });

  it('bad hints are rejected naming the hint', () => {
    const bad: Array<[Record<string, unknown>, RegExp]> = [
      [{ colour: 'red' }, /root_device\.colour: unknown hint/],
      [{ size: 0 }, /root_device\.size: must be a positive integer/],
      [{ size: -5 }, /root_device\.size/],
      [{ size: 'big' }, /root_device\.size: "big" is not a number/],
      [{ size: '<range-in> [a b]' }, /root_device\.size/],
      [{ rotational: 'maybe' }, /root_device\.rotational: "maybe" is not a boolean/],
      [{ model: 42 }, /root_device\.model: must be a string/],
    ];
    for (const [h, re] of bad) {
      expect(() => selectRootDevice(DISKS, h)).toThrow(RootDeviceHintError);
      expect(() => selectRootDevice(DISKS, h)).toThrow(re);
    }
  });
});
