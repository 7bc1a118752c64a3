/**
 * bench/power-sync: steady-state power-sync sweeps of the same realistic simulator fleet by
 * (a) ironfleet at pool sizes 1, 2, 4, (b) the Ironic-style sushy + 8 threads baseline and (c) the
 * simulator's own ceiling. Keys: speedup_vs_baseline (>= 50), fraction_of_sim_ceiling (>= 0.8),
 * sessions_per_sweep_after_first (0). See bench/fleet-bench.ts.
 */
import { runFleetBench } from './fleet-bench.js';

const quick = process.argv.includes('--quick');
runFleetBench({
  name: 'power-sync',
  mode: 'power',
  quick,
  sizes: quick ? [500] : [1000, 10_000],
  poolSizes: quick ? [1, 2] : [1, 2, 4],
  steadySweeps: quick ? 2 : 3,
  baselineNodes: () => (quick ? 40 : 200),
  ceilingSeconds: quick ? 4 : 8,
}).catch((err) => {
  console.error(err);
  process.exit(1);
});
