/**
 * The power interface's steps, for every hardware type: power_on / power_off wait (through
 * deferred polls, no lock held while waiting) until the hardware reports the state; reboot returns
 * once the request is accepted. Turning a machine off or rebooting it ends the agent's boot.
 */
import { randomUUID } from 'node:crypto';
import type { StepContext, StepDefinition, StepOutcome } from '../drivers/base.js';

async function powerTo(ctx: StepContext, target: 'power on' | 'power off'): Promise<StepOutcome> {
  if (target === 'power off') await ctx.ops.powerCut(ctx.task, 'power off', 'powered off by a step');
  else await ctx.hw.power.setPowerState(ctx.task.node, target, ctx.ops.driverContext(ctx.task), 0);
  return { wait: { type: 'power', token: randomUUID(), target, until: new Date(Date.now() + ctx.settings.powerTimeoutS * 1000).toISOString() } };
}

export const POWER_STEPS: readonly StepDefinition[] = [
  { interface: 'power', step: 'power_on', repeatable: true, run: (ctx) => powerTo(ctx, 'power on') },
  { interface: 'power', step: 'power_off', repeatable: true, run: (ctx) => powerTo(ctx, 'power off') },
  {
    interface: 'power',
    step: 'reboot',
    repeatable: true,
    async run(ctx) {
      await ctx.ops.powerCut(ctx.task, 'rebooting', 'rebooted by a step');
      return 'done';
    },
  },
];
