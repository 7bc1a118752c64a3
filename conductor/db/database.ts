/**
 * Opens the data layer: Kysely over better-sqlite3 (embedded default) or pg (PostgreSQL), and
 * brings the schema up to date. The rest of the conductor only sees `Store` (store.ts).
 */
import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import { Kysely, Migrator, PostgresDialect, SqliteDialect } from 'kysely';
import SqliteDatabase from 'better-sqlite3';
import pg from 'pg';
import type { Database } from './schema.js';
import { migrationProvider, type SqlDialect } from './migrations.js';
import { ConfigError } from '../../shared/errors.js';

export interface OpenedDb {
  db: Kysely<Database>;
  dialect: SqlDialect;
  close(): Promise<void>;
}

export function parseDatabaseUrl(url: string): { dialect: SqlDialect; target: string } {
  if (url === 'sqlite::memory:' || url === 'sqlite://:memory:') return { dialect: 'sqlite', target: ':memory:' };
  if (url.startsWith('sqlite://')) {
    const target = url.slice('sqlite://'.length);
    if (!target) throw new ConfigError('database.url: sqlite URL needs a path, e.g. sqlite:///var/lib/ironfleet/ironfleet.db', 'database.url');
    return { dialect: 'sqlite', target };
  }
  if (url.startsWith('postgres://') || url.startsWith('postgresql://')) return { dialect: 'postgres', target: url };
  throw new ConfigError(`database.url: unsupported scheme in ${url.replace(/\/\/[^@]*@/, '//***@')} (use sqlite:// or postgres://)`, 'database.url');
}

/**
 * Kysely prepares every query anew; on better-sqlite3 preparing cost more CPU than running the
 * statement (a fleet-wide rebuild spent ~45% of the conductor's SQLite time in prepare). Statements
 * are reusable (Kysely runs each synchronously to completion), so keep them, bounded, by SQL text.
 */
function withStatementCache(sqlite: SqliteDatabase.Database, max = 1000): { close(): void; prepare(sql: string): SqliteDatabase.Statement } {
  const cache = new Map<string, SqliteDatabase.Statement>();
  return {
    close: () => sqlite.close(),
    prepare(sql: string) {
      let stmt = cache.get(sql);
      if (stmt) return stmt;
      stmt = sqlite.prepare(sql);
      if (cache.size >= max) cache.delete(cache.keys().next().value!);
      cache.set(sql, stmt);
      return stmt;
    },
  };
}

/**
 * The database file holds BMC credentials (sealed, see secret-box.ts), node history and
 * inventories: its directory is created 0700 and the file (and so its -wal/-shm, which SQLite
 * creates with the database file's mode) 0600.
 */
function prepareSqliteFile(target: string): void {
  const dir = path.dirname(target);
  if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o700 });
  closeSync(openSync(target, 'a', 0o600));
  for (const f of [target, `${target}-wal`, `${target}-shm`]) if (existsSync(f)) chmodSync(f, 0o600);
}

export interface OpenDatabaseOptions {
  poolSize?: number;
  /** SQLite: how long a statement waits for another process's write lock before SQLITE_BUSY. @default 5000 */
  busyTimeoutMs?: number;
  /** Told about errors of PostgreSQL connections, idle or checked out (a dropped connection must not crash the process). */
  onPoolError?: (err: Error) => void;
}

export async function openDatabase(url: string, opts: OpenDatabaseOptions = {}): Promise<OpenedDb> {
  const { dialect, target } = parseDatabaseUrl(url);
  let db: Kysely<Database>;
  if (dialect === 'sqlite') {
    if (target !== ':memory:') prepareSqliteFile(target);
    const sqlite = new SqliteDatabase(target);
    sqlite.pragma('journal_mode = WAL');
    sqlite.pragma('synchronous = NORMAL');
    sqlite.pragma(`busy_timeout = ${Math.max(0, Math.floor(opts.busyTimeoutMs ?? 5000))}`);
    sqlite.pragma('foreign_keys = ON');
    db = new Kysely<Database>({ dialect: new SqliteDialect({ database: withStatementCache(sqlite) }) });
  } else {
    const pool = new pg.Pool({ connectionString: target, max: opts.poolSize ?? 10 });
    // An idle client whose connection dies (server restart, failover, pg_terminate_backend)
    // emits 'error' on the pool; unhandled, that event would end the process. The pool drops the
    // client and the next query opens a new connection.
    pool.on('error', (err) => opts.onPoolError?.(err));
    // A client that is checked out (inside a transaction, between two of its statements) has no
    // pool listener at that moment: its connection dying there emitted an 'error' nobody handled,
    // which ended the process (found by CI killing backends under a running conductor). Every
    // client gets a listener of its own for its whole life; the statement in flight still fails
    // (and is retried or answered 503 by the caller), and the pool discards the dead client on release.
    pool.on('connect', (client) => {
      client.on('error', (err) => opts.onPoolError?.(err));
    });
    db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  }
  const migrator = new Migrator({ db, provider: migrationProvider(dialect) });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    await db.destroy();
    const failed = results?.find((r) => r.status === 'Error')?.migrationName ?? 'unknown';
    throw new Error(`database migration ${failed} failed: ${(error as Error).message ?? String(error)}`, { cause: error });
  }
  return { db, dialect, close: () => db.destroy() };
}
