import { Worker } from 'node:worker_threads';
import os from 'node:os';
import { CommandFailure, type CommandContext } from './registry.js';

/** The clean steps this agent offers (IPA's step dict shape). */
export async function getCleanSteps(): Promise<Record<string, unknown>> {
  return {
    clean_steps: {
      GenericHardwareManager: [
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
