/**
 * A file-descriptor budget for BMC sockets, one per worker thread. A descriptor is a resource like
 * memory: at 20,000 BMCs one kept-alive socket each (plus the API, agents, database and logs) passes
 * the default 20,000-descriptor limit, and then `EMFILE` hits whatever opens next — a flow's
 * Redfish call or an operator's API connection. So BMC sockets never exceed this thread's share of
 *  (limit − reserve): near the budget the most recently idle BMC's keep-alive sockets are
 * closed (its session is kept; the reconnect resumes TLS), and when every socket is busy a new
 * connect waits for one to free — it queues, it never fails.
 */
import type { Socket } from 'node:net';

/** One BMC's sockets, as the budget sees them. */
export interface SocketOwner {
  /** Requests of this BMC in flight (its sockets are busy then and are never closed). */
  readonly busy: number;
  readonly sockets: Set<Socket>;
}

export interface BudgetStats {
  bmc_sockets_open: number;
  bmc_socket_budget: number;
  bmc_socket_evictions: number;
  bmc_socket_waits: number;
}

class SocketBudget {
  private limit = Infinity;
  private open = 0;
  private evictions = 0;
  private waits = 0;
  /**
   * Idle BMCs holding sockets, the most recently idle on top; each at most once (`stacked`), stale
   * entries (busy again, no sockets) skipped when popped. Why a stack and not least-recently-used:
   * a sweep touches every BMC in the same order, and LRU then evicts exactly the sockets the next
   * sweep needs first (every BMC reconnected on every sweep at 20,000 BMCs); evicting the most
   * recently idle keeps a stable majority connected. Why not a scan: with 15,000 busy BMCs at a
   * sweep's start, looking for an idle one per waiting connect cost seconds.
   */
  private readonly idleStack: SocketOwner[] = [];
  private readonly stacked = new WeakSet<SocketOwner>();
  private readonly waiters: Array<() => void> = [];
  /** Sockets destroyed for waiting connects whose 'close' has not come yet (they will free a slot). */
  private closing = 0;
  private readonly evicted = new WeakSet<Socket>();

  configure(limit: number | undefined): void {
    this.limit = limit && limit > 0 ? limit : Infinity;
  }

  /** `o` is closing: it is no candidate any more. */
  forget(o: SocketOwner): void {
    this.stacked.delete(o);
  }

  /** Runs `start` once a descriptor is free for `o` (at once when under the budget). */
  reserve(o: SocketOwner, start: () => void): void {
    if (this.open < this.limit) {
      this.open++;
      start();
      return;
    }
    this.waits++;
    this.waiters.push(() => {
      this.open++;
      start();
    });
    this.evict(o);
  }

  /** A reserved descriptor that never became a socket (connect failed). */
  unreserve(): void {
    this.open--;
    this.wake();
  }

  /** A socket `o` owns: counted until it closes. */
  adopt(o: SocketOwner, s: Socket): void {
    o.sockets.add(s);
    s.once('close', () => {
      o.sockets.delete(s);
      if (this.evicted.has(s)) this.closing--;
      this.open--;
      this.wake();
    });
  }

  /** `o` has no request in flight: its sockets may be closed for a waiting connect. */
  idle(o: SocketOwner): void {
    if (o.sockets.size > 0 && !this.stacked.has(o)) {
      this.stacked.add(o);
      this.idleStack.push(o);
    }
    if (this.waiters.length) this.evict(undefined);
  }

  stats(): BudgetStats {
    return { bmc_sockets_open: this.open, bmc_socket_budget: Number.isFinite(this.limit) ? this.limit : 0, bmc_socket_evictions: this.evictions, bmc_socket_waits: this.waits };
  }

  private wake(): void {
    while (this.waiters.length && this.open < this.limit) this.waiters.shift()!();
  }

  /** Closes idle sockets, most recently idle BMC first, one per waiting connect. */
  private evict(requester: SocketOwner | undefined): void {
    // Sockets already destroyed free their slots when they close: count them, or every idle BMC
    // in between would close more (seen at 20,000 BMCs: thousands of sockets torn down per sweep).
    let need = this.waiters.length - this.closing;
    while (need > 0 && this.idleStack.length) {
      const o = this.idleStack.pop()!;
      if (!this.stacked.has(o)) continue; // closed meanwhile
      this.stacked.delete(o);
      if (o === requester || o.busy > 0 || o.sockets.size === 0) continue;
      for (const s of o.sockets) {
        if (this.evicted.has(s)) continue;
        this.evicted.add(s);
        this.closing++;
        s.destroy();
        this.evictions++;
        need--;
      }
    }
  }
}

/** This thread's budget (each piscina worker is its own thread with its own share). */
export const socketBudget = new SocketBudget();
