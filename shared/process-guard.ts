/**
 * Process-level safety net for long-running services. An unhandled promise rejection is a bug
 * (every background loop is meant to catch its own errors), but Node's default for it is to exit
 * with status 1 — for a conductor that means every parked flow, agent stream and BMC session
 * dropped at once over one missed `.catch`. Here it is logged loudly and counted (/metrics) instead.
 */
import type { Logger } from 'pino';

export const processFaults = { unhandled_rejections: 0 };

let installed = false;

export function installProcessGuards(log: Logger): void {
  if (installed) return;
  installed = true;
  process.on('unhandledRejection', (reason) => {
    processFaults.unhandled_rejections++;
    log.error({ err: reason, unhandled_rejections: processFaults.unhandled_rejections }, 'unhandled promise rejection (a bug: please report it); the process keeps running');
  });
}
