/** A conductor in-process (real SQLite, real BMC pool threads) enrolled from a simulator manifest. */
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { compileConfig, type ConductorConfigInput } from '../../../conductor/config.js';
import { Conductor } from '../../../conductor/manager.js';
import { createLogger } from '../../../shared/logger.js';
import { tmpDir } from '../../helpers.js';
import type { Manifest } from '../../../sim/fleet.js';
import type { Node } from '../../../conductor/db/store.js';

export async function conductorFor(manifest: Manifest, extra: ConductorConfigInput = {}, dbPath?: string): Promise<{ c: Conductor; nodes: Node[]; db: string }> {
  const db = dbPath ?? path.join(tmpDir('ironfleet-rf-'), 'c.db');
  const cfg = compileConfig({
    host: 'rf-test',
    database: { url: `sqlite://${db}` },
    redfish: { pool_size: 2, timeout_ms: 3000, connect_timeout_ms: 2000, ...(extra.redfish ?? {}) },
    power_sync: { interval_s: 0, ...(extra.power_sync ?? {}) },
    conductor: { node_locked_retry_attempts: 20, node_locked_retry_interval_ms: 100 },
    ...Object.fromEntries(Object.entries(extra).filter(([k]) => k !== 'redfish' && k !== 'power_sync')),
  });
  const c = await Conductor.open(cfg, createLogger({ level: process.env.TEST_LOG_LEVEL === 'debug' ? 'debug' : 'silent' }));
  const nodes: Node[] = [];
  if (!dbPath) {
    for (const b of manifest.bmcs) {
      nodes.push(
        await c.store.createNode({
          uuid: randomUUID(),
          name: b.name,
          driver: 'redfish',
          provision_state: 'manageable',
          driver_info: { redfish_address: b.address, redfish_username: b.username, redfish_password: b.password, redfish_system_id: b.system_id, redfish_verify_ca: false },
        }),
      );
    }
  } else nodes.push(...(await c.store.listNodes()));
  return { c, nodes, db };
}
