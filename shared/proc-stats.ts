/**
 * A process's CPU and memory as an operator sees them: /proc/PID/stat (utime + stime, all threads)
 * and /proc/PID/status (VmRSS). Used by the benchmarks and `ironfleet bench-fleet`.
 */
import { readdirSync, readFileSync } from 'node:fs';

const CLK_TCK = 100;

/** RSS (MiB) and cumulative CPU seconds of a process, from /proc. */
export function procSample(pid: number): { rssMiB: number; cpuS: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rssKb = Number(status.match(/VmRSS:\s+(\d+)/)?.[1] ?? 0);
  return { rssMiB: rssKb / 1024, cpuS: statCpuS(`/proc/${pid}/stat`) };
}

/** Cumulative CPU seconds of a process's main thread alone (its task whose id is the pid). */
export function mainThreadCpuS(pid: number): number {
  return statCpuS(`/proc/${pid}/task/${pid}/stat`);
}

/** utime + stime of a /proc stat file (fields after the command name, which may hold spaces). */
function statCpuS(file: string): number {
  const stat = readFileSync(file, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

/** Cumulative CPU seconds of a process and all its descendants. */
export function treeCpuS(pid: number): number {
  let total = 0;
  try {
    total = procSample(pid).cpuS;
    for (const t of readdirSync(`/proc/${pid}/task`)) {
      for (const c of readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').split(' ').filter(Boolean)) total += treeCpuS(Number(c));
    }
  } catch {
    /* exited */
  }
  return total;
}
