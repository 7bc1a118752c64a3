/**
 * The agent as it runs in the deploy ramdisk (bundled into one file by `ironfleet ramdisk build`):
 * every setting comes from the kernel command line (ironfleet.conductor=…), as IPA reads its own.
 */
import { runAgent } from '../main.js';

runAgent({}).catch((err: unknown) => {
  console.error(`ironfleet-agent: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
