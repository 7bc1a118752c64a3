/**
 * Consistent hashing of nodes onto conductors (Ironic's hash ring): every conductor puts a fixed
 * number of points on a 2^48 circle (sha256 of "host:i"); a node belongs to the conductor owning
 * the first point at or after the hash of its uuid. The ring is a pure function of the member
 * set — every conductor computes the same owner from the same membership, with no coordination —
 * and when one member joins or leaves only the nodes on its arcs move (≈ 1/N of the fleet).
 */
import { createHash } from 'node:crypto';

/** Points per conductor: 64 keeps the largest share within ~±20 % of 1/N for a handful of members. */
export const POINTS_PER_MEMBER = 64;

function position(key: string): number {
  // 48 bits: exact as a double, plenty of room for 64 points × a few hundred members.
  return createHash('sha256').update(key).digest().readUIntBE(0, 6);
}

export class HashRing {
  private readonly points: Float64Array;
  private readonly owners: string[];
  readonly members: readonly string[];

  constructor(members: Iterable<string>, pointsPerMember = POINTS_PER_MEMBER) {
    this.members = [...new Set(members)].sort();
    const all: Array<[number, string]> = [];
    for (const m of this.members) for (let i = 0; i < pointsPerMember; i++) all.push([position(`${m}:${i}`), m]);
    // Ties (astronomically rare) break by member name, so every conductor agrees.
    all.sort((a, b) => a[0] - b[0] || (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
    this.points = Float64Array.from(all, (p) => p[0]);
    this.owners = all.map((p) => p[1]);
  }

  /**
   * Owners already looked up: a ring never changes (a membership change builds a new one), and
   * every sweep asks for every BMC — a hash digest each time, measurable at 10,000 nodes.
   */
  private readonly memo = new Map<string, string | undefined>();

  /** The member owning `key` (a node uuid), or undefined on an empty ring. */
  ownerOf(key: string): string | undefined {
    let owner = this.memo.get(key);
    if (owner === undefined && !this.memo.has(key)) {
      owner = this.lookUp(key);
      if (this.memo.size >= 250_000) this.memo.clear(); // keys of deleted nodes do not pile up for good
      this.memo.set(key, owner);
    }
    return owner;
  }

  private lookUp(key: string): string | undefined {
    if (this.owners.length === 0) return undefined;
    const h = position(key);
    let lo = 0;
    let hi = this.points.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.points[mid]! < h) lo = mid + 1;
      else hi = mid;
    }
    return this.owners[lo === this.points.length ? 0 : lo];
  }
}
