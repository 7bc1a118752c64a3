/** The hash ring: deterministic, balanced, and a membership change moves only the keys it must. */
import { describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { HashRing } from '../../../conductor/cluster/hash-ring.js';
import { ownershipKey } from '../../../conductor/cluster/membership.js';

const keys = Array.from({ length: 10_000 }, () => randomUUID());

describe('HashRing', () => {
  it('every conductor computes the same owner, whatever order it lists the members in', () => {
    const a = new HashRing(['c1', 'c2', 'c3']);
    const b = new HashRing(['c3', 'c1', 'c2', 'c1']);
    expect(keys.every((k) => a.ownerOf(k) === b.ownerOf(k))).toBe(true);
    expect(new HashRing([]).ownerOf('x')).toBeUndefined();
  });

  it('shares are balanced (each of 3 within 20–47 %)', () => {
    const r = new HashRing(['c1', 'c2', 'c3']);
    const n = new Map<string, number>();
    for (const k of keys) n.set(r.ownerOf(k)!, (n.get(r.ownerOf(k)!) ?? 0) + 1);
    for (const c of ['c1', 'c2', 'c3']) {
      expect(n.get(c)! / keys.length).toBeGreaterThan(0.2);
      expect(n.get(c)! / keys.length).toBeLessThan(0.47);
    }
  });

  it('a joining member takes keys only for itself; a leaving one gives away only its own', () => {
    const three = new HashRing(['c1', 'c2', 'c3']);
    const four = new HashRing(['c1', 'c2', 'c3', 'c4']);
    const moved = keys.filter((k) => three.ownerOf(k) !== four.ownerOf(k));
    expect(moved.every((k) => four.ownerOf(k) === 'c4')).toBe(true);
    expect(moved.length / keys.length).toBeLessThan(0.4);
    const two = new HashRing(['c1', 'c3']);
    expect(keys.filter((k) => three.ownerOf(k) !== two.ownerOf(k)).every((k) => three.ownerOf(k) === 'c2')).toBe(true);
  });

  it('all systems behind one BMC share one owner (one session per BMC)', () => {
    const node = (uuid: string, id: string) => ({ uuid, conductor_group: '', driver: 'redfish', driver_info: { redfish_address: 'https://10.0.0.1:8000/', redfish_username: 'admin', redfish_system_id: `/redfish/v1/Systems/${id}` } });
    const r = new HashRing(['c1', 'c2', 'c3', 'c4']);
    const owners = new Set(Array.from({ length: 50 }, (_, i) => r.ownerOf(ownershipKey(node(randomUUID(), String(i))))));
    expect(owners.size).toBe(1);
    expect(ownershipKey({ uuid: 'u', conductor_group: '', driver: 'fake-hardware', driver_info: {} })).toBe('u');
  });
});
