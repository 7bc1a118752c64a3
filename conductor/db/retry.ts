/**
 * Transient database errors and the retry every background writer uses for them.
 *
 * SQLite answers SQLITE_BUSY when another process holds the write lock past busy_timeout;
 * PostgreSQL drops connections on a restart, a failover or pg_terminate_backend. Neither is a
 * reason for a background loop to die (or for the process to exit on an unhandled rejection):
 * the write is retried with backoff, and only a persistent failure surfaces to the caller.
 */
import type { Logger } from 'pino';
import { Backoff, sleep } from '../../shared/backoff.js';

const SQLITE_TRANSIENT = new Set(['SQLITE_BUSY', 'SQLITE_BUSY_SNAPSHOT', 'SQLITE_BUSY_TIMEOUT', 'SQLITE_LOCKED', 'SQLITE_LOCKED_SHAREDCACHE', 'SQLITE_PROTOCOL']);
/** PostgreSQL SQLSTATEs: connection exceptions (08*), admin/crash shutdown (57P01-57P03), serialization/deadlock. */
const PG_TRANSIENT = /^(08\d\d\d|57P0[123]|40001|40P01|53300)$/;
const NET_TRANSIENT = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH']);

export function isTransientDbError(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown } | null;
  if (!e || typeof e !== 'object') return false;
  const code = typeof e.code === 'string' ? e.code : '';
  if (SQLITE_TRANSIENT.has(code) || PG_TRANSIENT.test(code) || NET_TRANSIENT.has(code)) return true;
  const msg = typeof e.message === 'string' ? e.message : '';
  return /Connection terminated|connection (is )?closed|Client has encountered a connection error|database is locked|timeout exceeded when trying to connect/i.test(msg);
}

export interface DbRetryOptions {
  /** What is being written, for the log line. */
  what: string;
  log?: Logger;
  /** Attempts in all (the first included). @default 8 */
  attempts?: number;
  /** @default 100 */
  initialMs?: number;
  /** @default 5000 */
  maxMs?: number;
}

/** Runs `fn`; a transient DB error is retried with jittered backoff, anything else throws at once. */
export async function withDbRetry<T>(fn: () => Promise<T>, o: DbRetryOptions): Promise<T> {
  const backoff = new Backoff({ initialMs: o.initialMs ?? 100, maxMs: o.maxMs ?? 5000 });
  const attempts = o.attempts ?? 8;
  for (let i = 1; ; i++) {
    try {
      return await fn();
    } catch (err) {
      if (i >= attempts || !isTransientDbError(err)) throw err;
      const delay = backoff.next();
      o.log?.warn({ err, what: o.what, attempt: i, retry_in_ms: delay }, 'database busy or unavailable; retrying');
      await sleep(delay);
    }
  }
}
