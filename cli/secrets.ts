/**
 * `ironfleet secrets rotate`: seal every secret at rest with a new key. The new key is put first
 * in the key file (old keys stay, so running conductors and older values still open), every row
 * is re-sealed with it, and with `--drop-old` the old keys are removed once nothing uses them.
 * Conductors pick the new key up when they meet a value sealed with it.
 */
import type { ConductorConfig } from '../conductor/config.js';
import { openDatabase } from '../conductor/db/database.js';
import { Store } from '../conductor/db/store.js';
import { SecretBox, newSecretKey, parseKeyFile, writeKeyFile } from '../conductor/secret-box.js';
import { secretsKeyFile } from '../conductor/manager.js';
import { readFileSync } from 'node:fs';

export async function rotateSecretsKey(cfg: ConductorConfig, o: { dropOld: boolean }): Promise<{ file: string; key: string; rows: number; dropped: string[] }> {
  const file = secretsKeyFile(cfg);
  const old = SecretBox.load(file).keyIds;
  const current = parseKeyFile(readFileSync(file, 'utf8'), file);
  const fresh = newSecretKey();
  writeKeyFile(file, [fresh, ...current]);
  const db = await openDatabase(cfg.database.url, { poolSize: 2, busyTimeoutMs: cfg.database.busy_timeout_ms });
  const store = new Store(db, SecretBox.load(file));
  try {
    const rows = await store.sealAtRest(true);
    if (o.dropOld) writeKeyFile(file, [fresh]);
    return { file, key: fresh.id, rows, dropped: o.dropOld ? old : [] };
  } finally {
    await store.close();
  }
}
