/**
 * How a Redfish operation rides through a BMC's bad moments (iDRAC/iLO 503 while busy, resets
 * during firmware work, a full session table, a breaker open for a few seconds) — per request
 * kind, inside one deadline per operation:
 *
 * | kind   | retried on                                                   | how                                   |
 * |--------|--------------------------------------------------------------|---------------------------------------|
 * | read   | connect errors, resets, timeouts, 5xx, 503, breaker open,     | Retry-After, else jittered backoff;   |
 * |        | session cap / login 503                                       | breaker: wait for the half-open probe |
 * | action | 503, breaker open, session cap (nothing was applied)          | sent again                            |
 * |        | 500, timeout, connection lost (maybe applied)                 | re-read first; sent again only if the |
 * |        |                                                              | effect is not there (no double reset) |
 * | login  | 503, connect errors (through the read/action loop)            | never on 401/403 (lockout safety)     |
 *
 * Never retried: 401/403 after the client's one re-login, 4xx, TLS, protocol and config errors.
 * Power sync sweeps do not come here: the next sweep is their retry. A failure says what was tried,
 * every answer the BMC gave, and for how long.
 */
import { RedfishError, type RedfishErrorCode } from './errors.js';

/** Retries per error code in this thread (exported in the worker's stats as op_retry_<CODE>). */
export const operationRetries: Record<string, number> = {};

/** Codes after which a read may simply be sent again. */
const READ_RETRY: ReadonlySet<RedfishErrorCode> = new Set(['RF_CONNECT', 'RF_TIMEOUT', 'RF_BUSY', 'RF_HTTP', 'RF_CIRCUIT_OPEN', 'RF_SESSION_CAP']);
/** Codes after which an action was certainly not applied: send it again. */
const ACTION_NOT_APPLIED: ReadonlySet<RedfishErrorCode> = new Set(['RF_BUSY', 'RF_CIRCUIT_OPEN', 'RF_SESSION_CAP']);
/** Codes after which an action may or may not have been applied: look before sending again. */
const ACTION_MAYBE_APPLIED: ReadonlySet<RedfishErrorCode> = new Set(['RF_CONNECT', 'RF_TIMEOUT', 'RF_HTTP']);

function retryable(err: RedfishError, set: ReadonlySet<RedfishErrorCode>): boolean {
  if (!set.has(err.code)) return false;
  // RF_HTTP covers every non-2xx: only server errors are worth another try.
  return err.code !== 'RF_HTTP' || (err.status ?? 500) >= 500;
}

/** One operation's attempts and the BMC's answers, for the error that ends it. */
export class OperationTrace {
  private readonly started = Date.now();
  private readonly answers = new Map<string, number>();
  attempts = 0;

  constructor(
    readonly what: string,
    readonly bmc: string,
    readonly deadline: number,
  ) {}

  note(err: RedfishError): void {
    const key = err.status && err.code !== 'RF_BUSY' ? `${err.code} HTTP ${err.status}` : err.code === 'RF_BUSY' ? 'HTTP 503' : err.code;
    this.answers.set(key, (this.answers.get(key) ?? 0) + 1);
    operationRetries[err.code] = (operationRetries[err.code] ?? 0) + 1;
  }

  get retried(): boolean {
    return this.answers.size > 0;
  }

  /** What a retried operation went through, for node history ("BMC busy, retried …"). */
  summary(): string {
    const story = [...this.answers].map(([k, n]) => `${k} ×${n}`).join(', ');
    return `${this.what}: BMC busy or unreachable, retried (${story}); succeeded after ${((Date.now() - this.started) / 1000).toFixed(1)} s`;
  }

  /** The error that ends the operation: the last one, with the whole story. */
  failure(last: RedfishError): RedfishError {
    if (!this.retried) return last;
    const story = [...this.answers].map(([k, n]) => `${k} ×${n}`).join(', ');
    const secs = ((Date.now() - this.started) / 1000).toFixed(1);
    return new RedfishError(last.code, `${this.what} on BMC ${this.bmc}: tried ${this.attempts} times over ${secs} s (answers: ${story}); last: ${last.message}`, last.status, last.bmc ?? this.bmc);
  }
}

export interface RetryClient {
  waitHintMs(err: RedfishError): number | undefined;
  /** Ends an open breaker's wait now: the next request is its half-open probe. */
  probeEarly(): void;
}

/**
 * Sleep before attempt `n` (1-based) after `err`; undefined when that would pass the deadline.
 * An open breaker is waited out while its rest fits in the backoff step; a longer one (30 s by
 * default — longer than a flapping BMC's outage) is not: after the step the operation asks for
 * an early probe. Why: waiting the breaker out ended operations well before their deadline on
 * BMCs that were back after 20 s ("circuit open for 30 s more" → given up at 33 s of 60).
 */
function delayFor(c: RetryClient, err: RedfishError, n: number, deadline: number): { ms: number; probe: boolean } | undefined {
  const hinted = c.waitHintMs(err);
  const backoff = Math.min(5000, 250 * 2 ** Math.min(n - 1, 5));
  let base = hinted !== undefined ? Math.min(hinted, 60_000) : backoff;
  let probe = false;
  if (err.code === 'RF_CIRCUIT_OPEN' && base > Math.max(backoff, 1000)) {
    base = Math.max(backoff, 1000);
    probe = true;
  }
  const ms = Math.round(base * (0.9 + Math.random() * 0.2));
  return Date.now() + ms < deadline ? { ms, probe } : undefined;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function pause(c: RetryClient, d: { ms: number; probe: boolean }): Promise<void> {
  await sleep(d.ms);
  if (d.probe) c.probeEarly();
}

/** A read (GET): tried again on transient answers until the deadline. */
export async function retryRead<T>(c: RetryClient, trace: OperationTrace, fn: () => Promise<T>): Promise<T> {
  for (;;) {
    trace.attempts++;
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof RedfishError) || !retryable(err, READ_RETRY)) throw err instanceof RedfishError ? trace.failure(err) : err;
      trace.note(err);
      const wait = delayFor(c, err, trace.attempts, trace.deadline);
      if (wait === undefined) throw trace.failure(err);
      await pause(c, wait);
    }
  }
}

/**
 * An action (Reset, boot-device PATCH): sent again when the BMC certainly did not apply it; when it
 * may have (500, timeout, lost connection), `applied()` re-reads the resource first and the action
 * is sent again only if its effect is not there.
 */
export async function retryAction<T>(c: RetryClient, trace: OperationTrace, send: () => Promise<T>, applied: () => Promise<boolean>): Promise<T | 'applied'> {
  for (;;) {
    trace.attempts++;
    let last: RedfishError;
    try {
      return await send();
    } catch (err) {
      if (!(err instanceof RedfishError)) throw err;
      const maybe = retryable(err, ACTION_MAYBE_APPLIED);
      if (!maybe && !retryable(err, ACTION_NOT_APPLIED)) throw trace.failure(err);
      trace.note(err);
      last = err;
      if (maybe && (await retryRead(c, trace, applied))) return 'applied';
    }
    const wait = delayFor(c, last, trace.attempts, trace.deadline);
    if (wait === undefined) throw trace.failure(last);
    await pause(c, wait);
  }
}
