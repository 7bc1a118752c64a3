/**
 * A simulated server whose "hardware" is a qemu VM (TCG; no KVM on these hosts): when its BMC
 * powers it on and the boot override is not the disk, the VM boots the built deploy ramdisk
 * (direct kernel boot standing in for PXE/virtual media) and the agent inside connects to the
 * conductor; a power cut kills the VM. The VM's virtio disks are files that survive reboots.
 *
 * Networking is qemu user networking with `restrict=on`: the guest reaches nothing but the ports
 * forwarded (guestfwd) from GUEST_HOST:port to 127.0.0.1:port on the host, one relay process per
 * connection.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import type { Machine } from './machine.js';
import { bootSource, followPower } from './ramdisk.js';
import { ensureSparseFile } from '../agent/hardware.js';

/** The address the guest uses for the host's forwarded ports. */
export const GUEST_HOST = '10.0.2.100';

export interface QemuRamdiskOptions {
  kernel: string;
  initramfs: string;
  /** host:port of the conductor's agent endpoint (the port is forwarded). */
  conductor: string;
  /** More host ports the guest may reach at GUEST_HOST (image server…). */
  forwardPorts: number[];
  diskDir: string;
  disks: number;
  diskBytes: number;
  memoryMiB: number;
  /** Extra kernel command line. */
  append?: string;
  log: Logger;
}

const RELAY = fileURLToPath(new URL('./qemu-relay.js', import.meta.url));

export class QemuRamdisk {
  private vm: ChildProcess | undefined;
  boots = 0;
  instanceBoots = 0;

  constructor(
    private readonly machine: Machine,
    private readonly o: QemuRamdiskOptions,
  ) {
    for (const f of this.diskFiles()) ensureSparseFile(f, o.diskBytes);
    followPower(machine, () => this.bootWhenOn(), () => this.kill());
  }

  get running(): boolean {
    return this.vm !== undefined;
  }

  diskFiles(): string[] {
    return Array.from({ length: this.o.disks }, (_, d) => path.join(this.o.diskDir, `m${this.machine.index}-vd${String.fromCharCode(97 + d)}.img`));
  }

  get consoleLog(): string {
    return path.join(this.o.diskDir, `m${this.machine.index}-console.log`);
  }

  private bootWhenOn(): void {
    if (this.vm || this.machine.redfishPower !== 'On') return;
    if (bootSource(this.machine) === 'instance') {
      // The instance boots from its disk; this payload only runs the deploy ramdisk.
      this.instanceBoots++;
      return;
    }
    this.boots++;
    const conductorPort = Number(this.o.conductor.split(':').pop());
    const ports = [...new Set([conductorPort, ...this.o.forwardPorts])];
    const fwd = ports.map((p) => `guestfwd=tcp:${GUEST_HOST}:${p}-cmd:${process.execPath} ${RELAY} 127.0.0.1 ${p}`).join(',');
    const mac = this.machine.macs[0]!;
    const append = [
      'console=ttyS0',
      'panic=-1',
      `ironfleet.conductor=${GUEST_HOST}:${conductorPort}`,
      // The guest's only route is qemu's restricted user network, relayed to this host's loopback:
      // plaintext is acceptable here and must be said explicitly (the agent refuses it otherwise).
      'ironfleet.insecure=1',
      `BOOTIF=01-${mac.replace(/:/g, '-')}`,
      this.o.append ?? '',
    ].join(' ').trim();
    const args = [
      '-machine', 'q35', '-accel', 'tcg', '-cpu', 'max', '-smp', '1', '-m', String(this.o.memoryMiB),
      '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
      '-serial', `file:${this.consoleLog}`,
      '-kernel', this.o.kernel, '-initrd', this.o.initramfs, '-append', append,
      '-netdev', `user,id=n0,restrict=on,${fwd}`,
      '-device', `virtio-net-pci,netdev=n0,mac=${mac}`,
      ...this.diskFiles().flatMap((f, d) => ['-drive', `file=${f},format=raw,if=none,id=d${d},cache=writeback`, '-device', `virtio-blk-pci,drive=d${d},serial=IRONFLEET-${this.machine.index}-${d}`]),
    ];
    const vm = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    this.vm = vm;
    let err = '';
    vm.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-2000)));
    vm.once('exit', (code, sig) => {
      if (this.vm !== vm) return;
      this.vm = undefined;
      // The guest halted or rebooted by itself (-no-reboot): the server is off.
      this.o.log.warn({ machine: this.machine.index, code, sig, stderr: err.trim() }, 'VM exited');
      if (this.machine.redfishPower === 'On') this.machine.reset('ForceOff');
    });
    this.o.log.info({ machine: this.machine.index, args }, 'VM booting the deploy ramdisk');
  }

  /** Power cut: the VM dies now. */
  kill(): void {
    const vm = this.vm;
    this.vm = undefined;
    if (vm && vm.exitCode === null) vm.kill('SIGKILL');
  }
}
