/**
 * The RAID executor with the real tools on real loop devices. This host's kernel has no md
 * module, so mdadm --create fails here for real: the test proves partitioning runs, that the
 * failure names the command and mdadm's own message, and that the rollback leaves blank disks.
 * The full create (arrays assembled) runs inside the qemu ramdisk test.
 */
import { describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { planSoftwareRaid } from '../../agent/raid-plan.js';
import { applyRaidPlan, deleteRaidConfiguration, holderOf, RaidExecError, runTool } from '../../agent/raid-exec.js';
import type { InventoryDisk } from '../../shared/inventory.js';
import { tmpDir } from '../helpers.js';

const GiB = 2 ** 30;

function loopDisks(n: number, size = GiB): { devs: string[]; cleanup: () => void } {
  if (process.getuid?.() !== 0) throw new Error('this test needs root and loop devices (CI runs as root)');
  const dir = tmpDir('ironfleet-raid-');
  const devs: string[] = [];
  for (let i = 0; i < n; i++) {
    const f = path.join(dir, `d${i}.img`);
    execFileSync('truncate', ['-s', String(size), f]);
    devs.push(execFileSync('losetup', ['-f', '--show', '-P', f]).toString().trim());
  }
  return { devs, cleanup: () => devs.forEach((d) => spawnSync('losetup', ['-d', d])) };
}

const disk = (name: string, size = GiB): InventoryDisk =>
  ({ name, size, model: 'loop', rotational: false, wwn: null, serial: null, vendor: null, wwn_with_extension: null, wwn_vendor_extension: null, hctl: null, by_path: null, logical_sectors: 512, physical_sectors: 512, tran: null }) as InventoryDisk;

const partitionTable = (dev: string) => spawnSync('sgdisk', ['-p', dev]).stdout.toString();

describe('software RAID executor', () => {
  it('holderOf maps partitions to their disks', () => {
    expect(holderOf('/dev/sda2')).toBe('/dev/sda');
    expect(holderOf('/dev/nvme0n1p3')).toBe('/dev/nvme0n1');
    expect(holderOf('/dev/loop7p1')).toBe('/dev/loop7');
    expect(holderOf('/dev/vdb')).toBe('/dev/vdb');
  });

  it('partitions the holders for real, then a failing mdadm is named precisely and rolled back to blank disks', async () => {
    const { devs, cleanup } = loopDisks(2);
    try {
      const plan = planSoftwareRaid({ logical_disks: [{ raid_level: '1', size_gb: 'MAX', controller: 'software' }] }, devs.map((d) => disk(d)), 'uefi');
      const ran: string[] = [];
      let partitioned = '';
      const err = await applyRaidPlan(plan, {
        log: (m) => ran.push(m),
        progress: (_d, _t, argv) => {
          // Just before the first mdadm: the ESP and data partitions exist on every holder.
          if (argv[0] === 'sgdisk' && argv[2]?.startsWith('2:') === false) partitioned = partitionTable(devs[1]!);
        },
      }).catch((e) => e);
      expect(ran.filter((m) => m.startsWith("parted")), `${ran.join("\n")}\n${err}`).toHaveLength(2 + 4);
      expect(existsSync(`${devs[0]}p2`) || ran.some((m) => m.includes(`${devs[0]}p2`))).toBe(true);
      expect(partitioned).toMatch(/EF00/);
      expect(err).toBeInstanceOf(RaidExecError);
      expect(err.code).toBe('TOOL_FAILED');
      expect(err.message).toMatch(new RegExp(`^mdadm --create /dev/md0 .*${devs[0]}p2 ${devs[1]}p2 failed \\(exit \\d+\\): .*mdadm`));
      expect(ran.some((m) => m.startsWith('RAID configuration failed, rolling back'))).toBe(true);
      for (const d of devs) {
        expect(partitionTable(d)).not.toMatch(/EF00|Linux/);
        expect(spawnSync('wipefs', ['--no-act', d]).stdout.toString().trim()).toBe('');
      }
    } finally {
      cleanup();
    }
  });

  it('delete_configuration on given holders wipes their partition tables', async () => {
    const { devs, cleanup } = loopDisks(2, 64 * 2 ** 20);
    try {
      for (const d of devs) execFileSync('parted', ['-s', d, '--', 'mklabel', 'gpt', 'mkpart', 'primary', '1MiB', '-1']);
      expect(partitionTable(devs[0]!)).toMatch(/ 1 /);
      const r = await deleteRaidConfiguration(devs);
      expect(r.wiped.sort()).toEqual([...devs].sort());
      for (const d of devs) expect(spawnSync('wipefs', ['--no-act', d]).stdout.toString().trim()).toBe('');
    } finally {
      cleanup();
    }
  });

  it('a missing tool and a failing tool are distinct, named errors', async () => {
    await expect(runTool(['ironfleet-no-such-tool', '--x'])).rejects.toMatchObject({ code: 'TOOL_MISSING', message: /ironfleet-no-such-tool is not installed/ });
    await expect(runTool(['sh', '-c', 'echo boom >&2; exit 3'])).rejects.toMatchObject({ code: 'TOOL_FAILED', message: /failed \(exit 3\): boom/ });
    const ac = new AbortController();
    const p = runTool(['sleep', '5'], ac.signal);
    ac.abort();
    await expect(p).rejects.toMatchObject({ code: 'CANCELLED' });
  });
});
