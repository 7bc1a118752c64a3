import { Worker } from 'node:worker_threads';
import os from 'node:os';
import { CommandFailure, type CommandContext } from './registry.js';
import { eraseDevices, eraseMetadata, type EraseProgress } from '../erase.js';
import { resolveOwnDevice } from '../device-guard.js';

async function eraseTargets(ctx: CommandContext): Promise<string[]> {
  const given = ctx.params.devices as string[] | undefined;
  const names = given?.length ? given : (await ctx.hardware.inventory()).disks.map((d) => d.name);
  return Promise.all(names.map((n, i) => resolveOwnDevice(ctx, n, `devices.${i}`)));
}

const eraseProgress = (ctx: CommandContext, stage: string) => (p: EraseProgress) =>
  ctx.progress({ percent: p.bytesTotal ? (p.bytesDone / p.bytesTotal) * 100 : -1, stage, bytesDone: p.bytesDone, bytesTotal: p.bytesTotal });

/** clean.erase_devices_metadata (IPA priority 99). */
export async function eraseDevicesMetadata(ctx: CommandContext): Promise<Record<string, unknown>> {
  const devices = await eraseTargets(ctx);
  try {
    return { devices: await eraseMetadata(devices, eraseProgress(ctx, 'erase_devices_metadata')) };
  } catch (err) {
    throw new CommandFailure('IO_ERROR', `erase_devices_metadata failed: ${(err as Error).message}`);
  }
}

/** clean.erase_devices (IPA priority 10): discard, else overwrite with zeros. */
export async function eraseAllDevices(ctx: CommandContext): Promise<Record<string, unknown>> {
  const devices = await eraseTargets(ctx);
  try {
    return { devices: await eraseDevices(devices, eraseProgress(ctx, 'erase_devices'), ctx.signal) };
  } catch (err) {
    if (ctx.signal.aborted) throw new CommandFailure('CANCELLED', 'erase_devices cancelled');
    throw new CommandFailure('IO_ERROR', `erase_devices failed: ${(err as Error).message}`);
  }
}

/** The clean steps this agent offers (IPA's step dict shape). */
export async function getCleanSteps(): Promise<Record<string, unknown>> {
  return {
    clean_steps: {
      GenericHardwareManager: [
        { step: 'erase_devices_metadata', priority: 99, interface: 'deploy', reboot_requested: false, abortable: true },
        { step: 'erase_devices', priority: 10, interface: 'deploy', reboot_requested: false, abortable: true },
        { step: 'burnin_cpu', priority: 0, interface: 'deploy', reboot_requested: false, abortable: true, argsinfo: { duration_s: { description: 'seconds to load every CPU', required: true } } },
      ],
    },
    hardware_manager_version: { GenericHardwareManager: '1.0' },
  };
}

// Each worker hashes in a tight loop until told to stop, then reports how many rounds it did.
const BURN_WORKER = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
let stop = false; let ops = 0;
parentPort.on('message', () => { stop = true; });
const buf = Buffer.alloc(64 * 1024, 7);
function chunk() {
  const until = Date.now() + 50;
  while (Date.now() < until) { createHash('sha256').update(buf).digest(); ops++; }
  if (stop) parentPort.postMessage(ops); else setImmediate(chunk);
}
chunk();
`;

/** clean.burnin_cpu: keep `cpus` threads busy for duration_s (IPA burnin_cpu without stress-ng). */
export async function burninCpu(ctx: CommandContext): Promise<Record<string, unknown>> {
  const duration = Number(ctx.params.duration_s);
  const cpus = Number(ctx.params.cpus) || os.availableParallelism();
  const workers = Array.from({ length: cpus }, () => new Worker(BURN_WORKER, { eval: true }));
  const started = Date.now();
  ctx.remoteLog('info', `burnin_cpu: loading ${cpus} CPU(s) for ${duration}s`);
  try {
    while (Date.now() - started < duration * 1000) {
      if (ctx.signal.aborted) throw new CommandFailure('CANCELLED', 'burnin_cpu cancelled');
      await new Promise((r) => setTimeout(r, Math.min(250, duration * 1000 - (Date.now() - started))));
      const elapsed = (Date.now() - started) / 1000;
      ctx.progress({ percent: Math.min(100, (elapsed / duration) * 100), stage: 'burnin', etaS: Math.max(0, duration - elapsed) });
    }
    const counts = await Promise.all(
      workers.map(
        (w) =>
          new Promise<number>((resolve, reject) => {
            w.once('message', resolve);
            w.once('error', reject);
            w.postMessage('stop');
          }),
      ),
    );
    return { cpus, ops: counts.reduce((a, b) => a + b, 0), duration_s: Math.round((Date.now() - started) / 100) / 10 };
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}
