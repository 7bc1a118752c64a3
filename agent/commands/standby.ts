import { spawn } from 'node:child_process';
import { CommandFailure, type CommandContext } from './registry.js';

/** standby.sync: flush file system buffers to disk (sync(1)). */
export async function syncDisks(ctx: CommandContext): Promise<Record<string, unknown>> {
  const started = Date.now();
  if (!ctx.hardware.simulated) {
    await new Promise<void>((resolve, reject) => {
      const p = spawn('sync', [], { stdio: 'ignore' });
      p.on('error', (err) => reject(new CommandFailure('IO_ERROR', `sync failed: ${err.message}`)));
      p.on('exit', (code) => (code === 0 ? resolve() : reject(new CommandFailure('IO_ERROR', `sync exited with ${code}`))));
    });
  }
  return { synced: true, duration_ms: Date.now() - started };
}

/** standby.power_off: answer first, then power the machine off. */
export async function powerOff(ctx: CommandContext): Promise<Record<string, unknown>> {
  setTimeout(() => void ctx.hardware.powerOff(), 200).unref();
  return { powering_off: true };
}
