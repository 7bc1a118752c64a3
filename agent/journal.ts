/**
 * The agent's durable memory for one boot: its token and every command it accepted, with outcome.
 * Kept in a state directory on tmpfs (/run/ironfleet-agent by default) so it survives an agent
 * process restart but not a reboot — exactly the lifetime of a per-boot token. Writes are atomic
 * (write + rename) and happen before a command starts, so a crash can never lead to a re-run.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';

export const journalEntrySchema = z.object({
  id: z.string(),
  name: z.string(),
  status: z.enum(['RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED']),
  result: z.record(z.string(), z.unknown()).nullable(),
  error: z.object({ code: z.string(), message: z.string(), details: z.string() }).nullable(),
  started_at: z.number(),
  finished_at: z.number().nullable(),
});
export type JournalEntry = z.infer<typeof journalEntrySchema>;

const fileSchema = z.object({
  boot_id: z.string(),
  token: z.string().nullable(),
  node_uuid: z.string().nullable(),
  commands: z.array(journalEntrySchema),
});
type JournalFile = z.infer<typeof fileSchema>;

const MAX_ENTRIES = 200;

export class Journal {
  private data: JournalFile;

  /** @param dir state directory, or undefined for an in-memory journal (simulated agents). */
  constructor(
    private readonly dir: string | undefined,
    bootId: string,
  ) {
    this.data = { boot_id: bootId, token: null, node_uuid: null, commands: [] };
    if (!dir) return;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    try {
      const parsed = fileSchema.safeParse(JSON.parse(readFileSync(this.file, 'utf8')));
      // A journal from another boot is void: its token and commands died with that boot.
      if (parsed.success && parsed.data.boot_id === bootId) this.data = parsed.data;
    } catch {
      /* first start of this boot */
    }
  }

  private get file(): string {
    return path.join(this.dir!, 'journal.json');
  }

  private persist(): void {
    if (!this.dir) return;
    const tmp = `${this.file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(this.data), { mode: 0o600 });
    renameSync(tmp, this.file);
  }

  get token(): string | null {
    return this.data.token;
  }

  setToken(token: string | null, nodeUuid: string | null): void {
    this.data.token = token;
    this.data.node_uuid = nodeUuid;
    this.persist();
  }

  get(id: string): JournalEntry | undefined {
    return this.data.commands.find((c) => c.id === id);
  }

  all(): readonly JournalEntry[] {
    return this.data.commands;
  }

  running(): JournalEntry | undefined {
    return this.data.commands.find((c) => c.status === 'RUNNING');
  }

  start(id: string, name: string): JournalEntry {
    const e: JournalEntry = { id, name, status: 'RUNNING', result: null, error: null, started_at: Date.now(), finished_at: null };
    this.data.commands.push(e);
    if (this.data.commands.length > MAX_ENTRIES) this.data.commands.splice(0, this.data.commands.length - MAX_ENTRIES);
    this.persist();
    return e;
  }

  finish(id: string, outcome: Pick<JournalEntry, 'status' | 'result' | 'error'>): JournalEntry | undefined {
    const e = this.get(id);
    if (!e || e.status !== 'RUNNING') return e;
    Object.assign(e, outcome, { finished_at: Date.now() });
    this.persist();
    return e;
  }

  /**
   * At process start: commands journaled RUNNING were interrupted by our own death. They are
   * reported FAILED (AGENT_RESTARTED), never resumed, so nothing runs twice.
   */
  failInterrupted(): JournalEntry[] {
    const hit = this.data.commands.filter((c) => c.status === 'RUNNING');
    for (const e of hit) {
      Object.assign(e, {
        status: 'FAILED',
        error: { code: 'AGENT_RESTARTED', message: 'the agent process restarted while the command was running; it was not resumed', details: '' },
        finished_at: Date.now(),
      });
    }
    if (hit.length) this.persist();
    return hit;
  }
}
