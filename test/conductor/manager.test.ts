/** Conductor start-up recovery after a crash, against a real SQLite database. */
import { describe, expect, it } from 'vitest';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { compileConfig } from '../../conductor/config.js';
import { Conductor } from '../../conductor/manager.js';
import { openDatabase } from '../../conductor/db/database.js';
import { Store } from '../../conductor/db/store.js';
import { createLogger } from '../../shared/logger.js';
import { tmpDir } from '../helpers.js';

describe('Conductor crash recovery', () => {
  it('releases its own stale locks and fails nodes left mid-operation with a clear last_error', async () => {
    const url = `sqlite://${path.join(tmpDir(), 'recover.db')}`;
    const pre = new Store(await openDatabase(url));
    const mk = async (state: string, reservation: string | null) => {
      const n = await pre.createNode({ uuid: randomUUID(), driver: 'fake-hardware', provision_state: state, target_provision_state: 'active' });
      if (reservation) await pre.reserveNode(n.id, reservation);
      return n.uuid;
    };
    const deploying = await mk('deploying', 'crashed-host');
    const cleaning = await mk('cleaning', 'crashed-host');
    const waiting = await mk('wait call-back', 'crashed-host');
    const foreign = await mk('deploying', 'another-live-host');
    const active = await mk('active', null);
    await pre.close();

    const c = await Conductor.open(compileConfig({ host: 'crashed-host', database: { url } }), createLogger({ level: 'silent' }));
    const get = async (u: string) => (await c.store.getNodeByUuid(u))!;
    expect(await get(deploying)).toMatchObject({ provision_state: 'deploy failed', reservation: null, target_provision_state: null });
    expect((await get(deploying)).last_error).toMatch(/restarted while the node was deploying/);
    expect(await get(cleaning)).toMatchObject({ provision_state: 'clean failed', reservation: null });
    // A wait state is resumable: kept as is, lock released.
    expect(await get(waiting)).toMatchObject({ provision_state: 'wait call-back', reservation: null });
    // Another conductor's work is not ours to fail.
    expect(await get(foreign)).toMatchObject({ provision_state: 'deploying', reservation: 'another-live-host' });
    expect((await get(active)).provision_state).toBe('active');
    const hist = await c.store.listHistory((await get(deploying)).id);
    expect(hist.some((h) => h.severity === 'ERROR' && /restarted/.test(h.event))).toBe(true);
    await c.stop();
  });
});
