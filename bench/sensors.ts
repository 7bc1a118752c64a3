/**
 * bench/sensors: Thermal + Power of every node of the same realistic simulator fleet, by
 * (a) ironfleet at pool sizes 1, 2, 4, (b) sushy + 8 threads (chassis → thermal, power) and
 * (c) the simulator's ceiling (2 GETs per node). Same keys as power-sync.
 */
import { runFleetBench } from './fleet-bench.js';

const quick = process.argv.includes('--quick');
runFleetBench({
  name: 'sensors',
  mode: 'sensors',
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
