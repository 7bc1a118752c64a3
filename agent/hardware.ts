/**
 * Where the agent learns about the machine it runs on. HostHardware reads the real machine
 * (systeminformation + /sys + /proc) into IPA's inventory schema; SimulatedHardware describes a
 * seeded synthetic server, used by the lab and benchmarks to run thousands of agents in one process.
 */
import { readFileSync, readdirSync, readlinkSync, existsSync, mkdirSync, openSync, ftruncateSync, closeSync } from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import { createHash, randomUUID } from 'node:crypto';
import si from 'systeminformation';
import type { Inventory } from '../shared/inventory.js';

export interface HardwareProvider {
  macs(): Promise<string[]>;
  bootId(): Promise<string>;
  inventory(): Promise<Inventory>;
  /** Power the machine off (standby.power_off). */
  powerOff(): Promise<void>;
  readonly simulated: boolean;
  /** Where a device name is really written (simulated machines back disks with files). */
  devicePath?(name: string): string;
}

function readTrim(path: string): string | null {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return null;
  }
}

/** MACs of physical-ish NICs: type 1 (ethernet), not all-zero, excluding lo. */
export function hostMacs(): string[] {
  const out: string[] = [];
  let names: string[] = [];
  try {
    names = readdirSync('/sys/class/net');
  } catch {
    return out;
  }
  for (const n of names.sort()) {
    if (n === 'lo') continue;
    const type = readTrim(`/sys/class/net/${n}/type`);
    const mac = readTrim(`/sys/class/net/${n}/address`)?.toLowerCase();
    if (type !== '1' || !mac || mac === '00:00:00:00:00:00') continue;
    out.push(mac);
  }
  return out;
}

function byPathFor(devName: string): string | null {
  const dir = '/dev/disk/by-path';
  if (!existsSync(dir)) return null;
  try {
    for (const link of readdirSync(dir)) {
      if (link.includes('-part')) continue;
      if (readlinkSync(`${dir}/${link}`).endsWith(`/${devName}`)) return `${dir}/${link}`;
    }
  } catch {
    /* ignore */
  }
  return null;
}

function nullIfEmpty(s: string | undefined | null): string | null {
  const t = (s ?? '').trim();
  return t === '' ? null : t;
}

export class HostHardware implements HardwareProvider {
  readonly simulated = false;
  constructor(private readonly extraMacs: string[] = []) {}

  async macs(): Promise<string[]> {
    return [...new Set([...hostMacs(), ...this.extraMacs.map((m) => m.toLowerCase())])];
  }

  async bootId(): Promise<string> {
    return readTrim('/proc/sys/kernel/random/boot_id') ?? randomUUID();
  }

  async powerOff(): Promise<void> {
    const { spawn } = await import('node:child_process');
    spawn('poweroff', ['-f'], { stdio: 'ignore', detached: true }).unref();
  }

  async inventory(): Promise<Inventory> {
    const [cpu, flags, mem, sys, bios, nets, blocks] = await Promise.all([
      si.cpu(),
      si.cpuFlags(),
      si.mem(),
      si.system(),
      si.bios(),
      si.networkInterfaces(),
      si.blockDevices(),
    ]);
    const netList = Array.isArray(nets) ? nets : [nets];
    const macs = new Set(await this.macs());
    const interfaces = netList
      .filter((n) => n.iface !== 'lo' && n.mac && macs.has(n.mac.toLowerCase()))
      .map((n) => {
        const dev = `/sys/class/net/${n.iface}/device`;
        let pci: string | null = null;
        let driver: string | null = null;
        try {
          pci = readlinkSync(dev).split('/').pop() ?? null;
          driver = readlinkSync(`${dev}/driver`).split('/').pop() ?? null;
        } catch {
          /* virtual NIC */
        }
        return {
          name: n.iface,
          mac_address: n.mac.toLowerCase(),
          ipv4_address: nullIfEmpty(n.ip4),
          ipv6_address: nullIfEmpty(n.ip6),
          has_carrier: readTrim(`/sys/class/net/${n.iface}/carrier`) === '1',
          lldp: null,
          vendor: readTrim(`${dev}/vendor`),
          product: readTrim(`${dev}/device`),
          client_id: null,
          biosdevname: null,
          speed_mbps: typeof n.speed === 'number' && n.speed > 0 ? Math.round(n.speed) : null,
          pci_address: pci,
          driver,
        };
      });
    // Interfaces detected only through /sys (systeminformation can miss some).
    for (const mac of macs) {
      if (interfaces.some((i) => i.mac_address === mac)) continue;
      const name = readdirSync('/sys/class/net').find((n) => readTrim(`/sys/class/net/${n}/address`) === mac) ?? 'unknown';
      interfaces.push({
        name, mac_address: mac, ipv4_address: null, ipv6_address: null, has_carrier: readTrim(`/sys/class/net/${name}/carrier`) === '1',
        lldp: null, vendor: null, product: null, client_id: null, biosdevname: null, speed_mbps: null, pci_address: null, driver: null,
      });
    }
    const disks = blocks
      .filter((b) => b.type === 'disk' && !/^(ram|loop|zram|sr|fd)/.test(b.name) && b.size > 0)
      .map((b) => {
        const q = `/sys/block/${b.name}/queue`;
        const devDir = `/sys/block/${b.name}/device`;
        let hctl: string | null = null;
        try {
          const base = readlinkSync(devDir).split('/').pop() ?? '';
          hctl = /^\d+:\d+:\d+:\d+$/.test(base) ? base : null;
        } catch {
          /* not SCSI */
        }
        const wwn = readTrim(`/sys/block/${b.name}/device/wwid`) ?? readTrim(`/sys/block/${b.name}/wwid`);
        return {
          name: `/dev/${b.name}`,
          model: nullIfEmpty(b.model) ?? readTrim(`${devDir}/model`),
          size: b.size,
          rotational: readTrim(`${q}/rotational`) === '1',
          wwn: nullIfEmpty(wwn),
          serial: nullIfEmpty(b.serial) ?? readTrim(`${devDir}/serial`),
          vendor: readTrim(`${devDir}/vendor`),
          wwn_with_extension: nullIfEmpty(wwn),
          wwn_vendor_extension: null,
          hctl,
          by_path: byPathFor(b.name),
          logical_sectors: Number(readTrim(`${q}/logical_block_size`)) || null,
          physical_sectors: Number(readTrim(`${q}/physical_block_size`)) || null,
          tran: nullIfEmpty(b.protocol)?.toLowerCase() ?? (b.name.startsWith('nvme') ? 'nvme' : null),
        };
      });
    const bootMode = existsSync('/sys/firmware/efi') ? 'uefi' : 'bios';
    const cmdline = readTrim('/proc/cmdline') ?? '';
    const bootif = cmdline.match(/BOOTIF=(?:01-)?([0-9a-f-]{17})/i)?.[1]?.replace(/-/g, ':') ?? null;
    return {
      interfaces,
      cpu: {
        model_name: nullIfEmpty(`${cpu.manufacturer} ${cpu.brand}`),
        frequency: cpu.speedMax ? (cpu.speedMax * 1000).toFixed(4) : cpu.speed ? (cpu.speed * 1000).toFixed(4) : null,
        count: cpu.cores || os.cpus().length,
        architecture: os.arch() === 'x64' ? 'x86_64' : os.arch() === 'arm64' ? 'aarch64' : os.arch(),
        flags: flags.split(/\s+/).filter(Boolean),
        socket_count: cpu.processors || null,
      },
      disks,
      memory: { total: mem.total, physical_mb: null },
      bmc_address: null,
      bmc_v6address: null,
      system_vendor: {
        product_name: nullIfEmpty(sys.model),
        serial_number: nullIfEmpty(sys.serial),
        manufacturer: nullIfEmpty(sys.manufacturer),
        firmware: { vendor: nullIfEmpty(bios.vendor), version: nullIfEmpty(bios.version), build_date: nullIfEmpty(bios.releaseDate) },
      },
      boot: { current_boot_mode: bootMode, pxe_interface: bootif },
      hostname: os.hostname(),
    };
  }
}

/** Deterministic MAC for simulated machine `index` under `seed` (locally administered range). */
export function simulatedMac(seed: string, index: number, nic = 0): string {
  const h = createHash('sha256').update(`${seed}:${index}:${nic}`).digest();
  const bytes = [0x52, 0x54, h[0]!, h[1]!, h[2]!, h[3]!];
  // Encode the index in the tail so MACs are unique within a fleet of up to 2^24 machines.
  bytes[3] = (index >> 16) & 0xff;
  bytes[4] = (index >> 8) & 0xff;
  bytes[5] = index & 0xff;
  bytes[2] = (h[0]! & 0xf0) | (nic & 0x0f);
  return bytes.map((b) => b.toString(16).padStart(2, '0')).join(':');
}

export interface SimulatedMachineSpec {
  seed: string;
  index: number;
  bootId?: string;
  nics?: number;
  disks?: number;
  onPowerOff?: () => void;
  /** Back the simulated disks with sparse files here (writes, erases really happen). */
  diskDir?: string;
  /** Size of each file-backed (sparse) disk. @default 8 GiB */
  diskBytes?: number;
}

/** A simulated disk: a sparse file of `bytes`, created (with its directory) if missing. */
export function ensureSparseFile(file: string, bytes: number): void {
  if (existsSync(file)) return;
  mkdirSync(path.dirname(file), { recursive: true });
  const fd = openSync(file, 'w');
  ftruncateSync(fd, bytes);
  closeSync(fd);
}

export class SimulatedHardware implements HardwareProvider {
  readonly simulated = true;
  private readonly boot: string;
  constructor(private readonly spec: SimulatedMachineSpec) {
    this.boot = spec.bootId ?? randomUUID();
  }

  async macs(): Promise<string[]> {
    return Array.from({ length: this.spec.nics ?? 2 }, (_, i) => simulatedMac(this.spec.seed, this.spec.index, i));
  }

  async bootId(): Promise<string> {
    return this.boot;
  }

  async powerOff(): Promise<void> {
    this.spec.onPowerOff?.();
  }

  /** /dev/nvme0n1 → its backing file (created sparse on first use) when disks are file-backed. */
  devicePath(name: string): string {
    const dir = this.spec.diskDir;
    if (!dir) return name;
    const m = name.match(/^\/dev\/(nvme\d+n1)$/);
    if (!m) return name;
    const f = path.join(dir, `m${this.spec.index}-${m[1]}.img`);
    ensureSparseFile(f, this.spec.diskBytes ?? 8 * 2 ** 30);
    return f;
  }

  async inventory(): Promise<Inventory> {
    const { index } = this.spec;
    const macs = await this.macs();
    const serial = `SIM${createHash('sha1').update(`${this.spec.seed}:${index}`).digest('hex').slice(0, 10).toUpperCase()}`;
    return {
      interfaces: macs.map((mac, i) => ({
        name: `eno${i + 1}`, mac_address: mac, ipv4_address: i === 0 ? `10.${(index >> 16) & 255}.${(index >> 8) & 255}.${index & 255}` : null,
        ipv6_address: null, has_carrier: i === 0, lldp: null, vendor: '0x8086', product: '0x1572', client_id: null, biosdevname: null,
        speed_mbps: 25000, pci_address: `0000:3b:00.${i}`, driver: 'i40e',
      })),
      cpu: { model_name: 'Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz', frequency: '3200.0000', count: 64, architecture: 'x86_64', flags: ['fpu', 'vmx', 'sse4_2', 'avx2', 'avx512f'], socket_count: 2 },
      disks: Array.from({ length: this.spec.disks ?? 2 }, (_, d) => ({
        name: `/dev/nvme${d}n1`, model: 'SAMSUNG MZQL2960HCJR-00A07', size: this.spec.diskDir ? (this.spec.diskBytes ?? 8 * 2 ** 30) : 960_197_124_096, rotational: false, wwn: `eui.${serial.toLowerCase()}${d}`,
        serial: `${serial}D${d}`, vendor: null, wwn_with_extension: null, wwn_vendor_extension: null, hctl: null,
        by_path: `/dev/disk/by-path/pci-0000:5${d}:00.0-nvme-1`, logical_sectors: 512, physical_sectors: 512, tran: 'nvme',
      })),
      memory: { total: 270_000_000_000, physical_mb: 262_144 },
      bmc_address: null,
      bmc_v6address: null,
      system_vendor: { product_name: 'PowerEdge R650 (simulated)', serial_number: serial, manufacturer: 'ironfleet-sim', firmware: { vendor: 'ironfleet-sim', version: '1.9.2', build_date: '03/14/2026' } },
      boot: { current_boot_mode: 'uefi', pxe_interface: macs[0]! },
      hostname: `sim-${index}`,
    };
  }
}
