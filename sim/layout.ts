/** Where BMC number i lives and how to log in to it: a pure function of (seed, i). */
import { createHash } from 'node:crypto';
import { stableUuid } from './rng.js';

export const SIM_USERNAME = 'admin';

/**
 * 127.A.B.C with C in 1..254: 254 BMCs per /24, starting at 127.10.0.1. All of 127.0.0.0/8 is
 * routed to the loopback interface on Linux, so each BMC gets its own address with no setup.
 */
export function bmcHost(i: number): string {
  const c = (i % 254) + 1;
  const rest = Math.floor(i / 254);
  const b = rest % 256;
  const a = 10 + Math.floor(rest / 256);
  if (a > 254) throw new Error(`BMC index ${i} does not fit in 127.0.0.0/8`);
  return `127.${a}.${b}.${c}`;
}

export function bmcPassword(seed: string, i: number): string {
  return createHash('sha256').update(`${seed}\u0000${i}\u0000password`).digest('base64url').slice(0, 20);
}

export function systemId(seed: string, i: number): string {
  return stableUuid(seed, i, 'system');
}
