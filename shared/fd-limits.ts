/**
 * This process's file-descriptor limit and use, read from /proc as an operator would (`ulimit -n`,
 * `ls /proc/PID/fd`). Linux only; elsewhere the limit is unknown and nothing is budgeted.
 */
import { readFileSync, readdirSync } from 'node:fs';

/** The soft "Max open files" limit, or undefined when unlimited or unknown. */
export function openFileLimit(): number | undefined {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
    const soft = line?.slice('Max open files'.length).trim().split(/\s+/)[0];
    const n = Number(soft);
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

/** Descriptors open now (all threads). */
export function openFdCount(): number | undefined {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    return undefined;
  }
}
