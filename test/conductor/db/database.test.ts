/**
 * Opening the data layer against a real PostgreSQL server whose backends are killed under it
 * (pg_terminate_backend, as a failover or an operator would): a connection that dies while it is
 * checked out — inside a transaction, between two statements — must fail that transaction, be
 * reported, and leave the process and the pool usable. Unhandled, the client's 'error' event would
 * end the process (vitest reports it as an uncaught error and fails the run).
 */
import { describe, expect, inject, it } from 'vitest';
import pg from 'pg';
import { sql } from 'kysely';
import { openDatabase } from '../../../conductor/db/database.js';
import { freshPgDatabase } from '../../helpers.js';

describe('openDatabase on PostgreSQL', () => {
  it('a backend killed mid-transaction fails that transaction only; the error is reported and the next query works', async () => {
    const url = await freshPgDatabase(inject('pgUrl'));
    const reported: Error[] = [];
    const opened = await openDatabase(url, { onPoolError: (err) => reported.push(err) });
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      const tx = opened.db.transaction().execute(async (trx) => {
        const { rows } = await sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`.execute(trx);
        // Kill this transaction's own backend from outside while the client sits checked out.
        await admin.query('SELECT pg_terminate_backend($1)', [rows[0].pid]);
        await new Promise((r) => setTimeout(r, 300));
        await sql`SELECT 1`.execute(trx);
      });
      await expect(tx).rejects.toThrow();
      // The dead connection was reported as an error event, not thrown at the process.
      expect(reported.length).toBeGreaterThan(0);
      const { rows } = await sql<{ one: number }>`SELECT 1 AS one`.execute(opened.db);
      expect(rows[0].one).toBe(1);
    } finally {
      await admin.end();
      await opened.close();
    }
  });
});
