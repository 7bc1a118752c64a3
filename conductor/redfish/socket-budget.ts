/**
 * A file-descriptor budget for BMC sockets, one per worker thread. A descriptor is a resource like
 * memory: at 20,000 BMCs one kept-alive socket each (plus the API, agents, database and logs) passes
 * the default 20,000-descriptor limit, and then `EMFILE` hits whatever opens next — a flow's
 * Redfish call or an operator's API connection. So BMC sockets never exceed this thread's share of
 * (limit − reserve): near the budget the least-recently-used idle BMC's keep-alive sockets are
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
  /** Owners by last use, oldest first (re-inserted on use). */
  private readonly lru = new Map<SocketOwner, true>();
  private readonly waiters: Array<() => void> = [];

  configure(limit: number | undefined): void {
    this.limit = limit && limit > 0 ? limit : Infinity;
  }

  touch(o: SocketOwner): void {
    this.lru.delete(o);
    this.lru.set(o, true);
  }

  forget(o: SocketOwner): void {
    this.lru.delete(o);
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
    this.evictFor(o);
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
      this.open--;
      this.wake();
    });
  }

  /** A BMC went idle: a connect waiting for a descriptor may now take one of its sockets. */
  idle(): void {
    if (this.waiters.length) this.evictFor(undefined);
  }

  stats(): BudgetStats {
    return { bmc_sockets_open: this.open, bmc_socket_budget: Number.isFinite(this.limit) ? this.limit : 0, bmc_socket_evictions: this.evictions, bmc_socket_waits: this.waits };
  }

  private wake(): void {
    while (this.waiters.length && this.open < this.limit) this.waiters.shift()!();
  }

  /** Closes idle sockets of the least-recently-used BMCs, one per waiting connect. */
  private evictFor(requester: SocketOwner | undefined): void {
    let need = this.waiters.length;
    for (const o of this.lru.keys()) {
      if (need <= 0) break;
      if (o === requester || o.busy > 0 || o.sockets.size === 0) continue;
      for (const s of o.sockets) {
        s.destroy();
        this.evictions++;
        need--;
      }
    }
  }
}

/** This thread's budget (each piscina worker is its own thread with its own share). */
export const socketBudget = new SocketBudget();
