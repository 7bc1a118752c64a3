import { describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Journal } from '../../agent/journal.js';
import { tmpDir } from '../helpers.js';

describe('agent journal', () => {
  it('persists token and commands across a process restart within one boot', () => {
    const dir = tmpDir();
    const j = new Journal(dir, 'boot-1');
    j.setToken('t'.repeat(43), 'node-1');
    j.start('c1', 'standby.sync');
    j.finish('c1', { status: 'SUCCEEDED', result: { ok: true }, error: null });
    const again = new Journal(dir, 'boot-1');
    expect(again.token).toBe('t'.repeat(43));
    expect(again.get('c1')).toMatchObject({ status: 'SUCCEEDED', result: { ok: true } });
  });

  it('a journal from another boot is void (token and commands died with it)', () => {
    const dir = tmpDir();
    const j = new Journal(dir, 'boot-1');
    j.setToken('t'.repeat(43), 'node-1');
    j.start('c1', 'standby.sync');
    const next = new Journal(dir, 'boot-2');
    expect(next.token).toBeNull();
    expect(next.all()).toHaveLength(0);
  });

  it('commands left RUNNING by a dead process become FAILED/AGENT_RESTARTED, never resumed', () => {
    const dir = tmpDir();
    new Journal(dir, 'b').start('c9', 'clean.burnin_cpu');
    const j = new Journal(dir, 'b');
    const hit = j.failInterrupted();
    expect(hit.map((e) => e.id)).toEqual(['c9']);
    expect(j.get('c9')).toMatchObject({ status: 'FAILED', error: { code: 'AGENT_RESTARTED' } });
    expect(j.running()).toBeUndefined();
    expect(new Journal(dir, 'b').get('c9')!.status).toBe('FAILED');
  });

  it('a finished command never changes; a corrupt file is ignored, not fatal', () => {
    const dir = tmpDir();
    const j = new Journal(dir, 'b');
    j.start('c1', 'standby.sync');
    j.finish('c1', { status: 'FAILED', result: null, error: { code: 'X', message: 'm', details: '' } });
    j.finish('c1', { status: 'SUCCEEDED', result: {}, error: null });
    expect(j.get('c1')!.status).toBe('FAILED');
    writeFileSync(path.join(dir, 'journal.json'), '{not json');
    expect(new Journal(dir, 'b').all()).toHaveLength(0);
    expect(readFileSync(path.join(dir, 'journal.json'), 'utf8')).toBe('{not json');
  });
});
