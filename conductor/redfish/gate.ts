/**
 * The gate in front of one BMC: an adaptive concurrency limit (halved on 503/timeouts, raised by
 * one per success up to the configured ceiling — AIMD) and a circuit breaker (open after N
 * consecutive unreachable failures, then one half-open probe). A dead BMC costs one deadline per
 * breaker period instead of stalling every caller behind it.
 */
import { RedfishError, isUnreachable, type RedfishErrorCode } from './errors.js';

export class BmcGate {
  private inflight = 0;
  private limit: number;
  private readonly waiters: Array<() => void> = [];
  private failures = 0;
  private openUntil = 0;
  private probing = false;

  constructor(
    private readonly origin: string,
    private readonly maxInflight: number,
    private readonly breakerThreshold: number,
    private readonly breakerOpenMs: number,
  ) {
    this.limit = maxInflight;
  }

  get open(): boolean {
    return this.openUntil > Date.now();
  }

  /** Milliseconds until the half-open probe may go (0 when closed). */
  get openRemainingMs(): number {
    return Math.max(0, this.openUntil - Date.now());
  }

  /**
   * Admits one request or throws RF_CIRCUIT_OPEN. Returns whether it is the half-open probe (pass
   * it to `exit`). Call `enter` before taking a slot so a rejected request never queues.
   */
  enter(): boolean {
    const now = Date.now();
    if (this.openUntil > now) throw new RedfishError('RF_CIRCUIT_OPEN', `BMC ${this.origin} is unreachable; circuit open for ${Math.ceil((this.openUntil - now) / 1000)} s more`, undefined, this.origin);
    // Half-open: after the open period, let exactly one probe through.
    const halfOpen = this.failures >= this.breakerThreshold;
    if (halfOpen) {
      if (this.probing) throw new RedfishError('RF_CIRCUIT_OPEN', `BMC ${this.origin} is being probed`, undefined, this.origin);
      this.probing = true;
    }
    return halfOpen;
  }

  /** An operation that would otherwise give up asks for the half-open probe now (retry-policy.ts). */
  probeEarly(): void {
    if (this.openUntil > Date.now()) this.openUntil = Date.now();
  }

  exit(probe: boolean): void {
    if (probe) this.probing = false;
  }

  /**
   * Takes a slot under the current limit: null when one was free (no promise: the common case of a
   * sweep, thousands per second), else a promise that resolves once one is.
   */
  acquire(): Promise<void> | null {
    if (this.inflight < this.limit) {
      this.inflight++;
      return null;
    }
    return new Promise<void>((r) =>
      this.waiters.push(() => {
        this.inflight++;
        r();
      }),
    );
  }

  release(): void {
    this.inflight--;
    if (this.inflight < this.limit) this.waiters.shift()?.();
  }

  onSuccess(): void {
    this.failures = 0;
    this.openUntil = 0;
    // Additive increase back to the configured ceiling.
    if (this.limit < this.maxInflight) {
      this.limit++;
      this.waiters.shift()?.();
    }
  }

  onFailure(code: RedfishErrorCode): void {
    if (code === 'RF_BUSY' || code === 'RF_TIMEOUT') this.limit = Math.max(1, Math.floor(this.limit / 2));
    if (isUnreachable(code)) {
      this.failures++;
      // Jittered (±20 %): with a fixed period the half-open probes of a BMC that flaps on a fixed
      // cycle (down 20 s of every 60) landed on the same phase of it every time — always in the
      // outage — and the node never left power-failure maintenance.
      if (this.failures >= this.breakerThreshold) this.openUntil = Date.now() + Math.round(this.breakerOpenMs * (0.8 + Math.random() * 0.4));
    }
  }
}
