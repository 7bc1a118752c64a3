/**
 * The BMC threads' batch runner: the window bounds reads in flight, a slow read leaves it, the
 * deadline reports late nodes, errors before the start take no place in the window, and outcomes
 * the caller does not keep are left out.
 */
import { describe, expect, it } from 'vitest';
import { runBatch } from '../../../conductor/redfish/batch-run.js';
import type { OpError } from '../../../conductor/redfish/errors.js';

const nodes = (n: number) => Array.from({ length: n }, (_, i) => ({ uuid: `n${i}` }));
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const errorOf = (e: unknown): OpError => ({ code: 'RF_INTERNAL', message: (e as Error).message });
const late = (): OpError => ({ code: 'RF_TIMEOUT', message: 'late' });

describe('runBatch', () => {
  it('keeps at most `window` operations in flight and answers every node, ms from its own start', async () => {
    let inFlight = 0;
    let most = 0;
    const t0 = performance.now();
    const out = await runBatch(nodes(20), { deadlineMs: 10_000, window: 3, slowMs: 5_000 }, async (i) => {
      most = Math.max(most, ++inFlight);
      await sleep(15);
      inFlight--;
      return i * 2;
    }, errorOf, late);
    expect(most).toBe(3);
    expect(out.map((o) => o.value)).toEqual(Array.from({ length: 20 }, (_, i) => i * 2));
    expect(out.every((o) => o.ok && o.uuid.startsWith('n'))).toBe(true);
    // 20 operations 3 at a time take ≥ 7 rounds; a node's time is its own, not the batch's so far.
    const batchMs = performance.now() - t0;
    expect(out[19]!.ms).toBeLessThan(batchMs / 2);
  });

  it('an operation slower than slowMs leaves the window; one still running at the deadline reports late', async () => {
    const started: number[] = [];
    const out = await runBatch(nodes(6), { deadlineMs: 600, window: 1, slowMs: 40 }, (i) => {
      started.push(i);
      return i === 0 ? sleep(5_000).then(() => 'never') : sleep(5).then(() => 'ok');
    }, errorOf, late);
    expect(started).toEqual([0, 1, 2, 3, 4, 5]);
    expect(out[0]).toMatchObject({ uuid: 'n0', ok: false, error: { code: 'RF_TIMEOUT' }, ms: 600 });
    expect(out.slice(1).every((o) => o.ok && o.value === 'ok')).toBe(true);
  });

  it('an error before the start (no target, a throw) settles at once and takes no place in the window', async () => {
    const out = await runBatch(nodes(10_000), { deadlineMs: 5_000, window: 1, slowMs: 1_000 }, (i) => {
      if (i === 5) throw new Error('boom');
      if (i % 2) return { code: 'RF_NO_TARGET', message: `no target ${i}` };
      return Promise.resolve(i);
    }, errorOf, late);
    expect(out[1]).toMatchObject({ ok: false, error: { code: 'RF_NO_TARGET' } });
    expect(out[5]).toMatchObject({ ok: false, error: { code: 'RF_INTERNAL', message: 'boom' } });
    expect(out.filter((o) => o.ok)).toHaveLength(5_000);
  });

  it('outcomes `keep` refuses are counted by it and left out; the rest, late ones included, come in node order', async () => {
    const seen: number[] = [];
    const out = await runBatch(nodes(8), {
      deadlineMs: 400, window: 2, slowMs: 50,
      // Like a sweep: a read equal to the recorded state (here: an even value) is only counted.
      keep: (i, ok, value) => (seen.push(i), !ok || (value as number) % 2 === 1),
    }, (i) => (i === 7 ? sleep(5_000).then(() => 7) : i === 3 ? Promise.reject(new Error('down')) : sleep(5).then(() => i)), errorOf, late);
    expect(seen.sort()).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(out.map((o) => [o.uuid, o.ok])).toEqual([['n1', true], ['n3', false], ['n5', true], ['n7', false]]);
    expect(out[3]!.error!.code).toBe('RF_TIMEOUT');
  });

  it('a rejected operation is an error outcome; an empty batch answers at once', async () => {
    const out = await runBatch(nodes(2), { deadlineMs: 1_000, window: 8, slowMs: 100 }, (i) => (i ? Promise.reject(new Error('refused')) : Promise.resolve('fine')), errorOf, late);
    expect(out).toMatchObject([{ ok: true, value: 'fine' }, { ok: false, error: { message: 'refused' } }]);
    expect(await runBatch([], { deadlineMs: 1_000, window: 8, slowMs: 100 }, () => Promise.resolve(0), errorOf, late)).toEqual([]);
  });
});
