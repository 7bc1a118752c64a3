/** Address helpers shared by the conductor's config checks and the agent's. */

/** 127.0.0.0/8, ::1 and localhost (with or without IPv6 brackets): reachable only from this machine. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '');
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || h === '::1' || h === 'localhost';
}
