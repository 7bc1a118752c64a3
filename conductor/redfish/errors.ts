/** Redfish client errors with stable codes (undici style), plain-data across worker threads. */
const MARK = Symbol.for('ironfleet.redfish.error');

export type RedfishErrorCode =
  | 'RF_TIMEOUT'
  | 'RF_CONNECT'
  | 'RF_TLS'
  | 'RF_AUTH'
  | 'RF_SESSION_CAP'
  | 'RF_BUSY'
  | 'RF_HTTP'
  | 'RF_PROTOCOL'
  | 'RF_CIRCUIT_OPEN'
  | 'RF_CONFIG';

export class RedfishError extends Error {
  constructor(
    readonly code: RedfishErrorCode,
    message: string,
    readonly status?: number,
    readonly bmc?: string,
    /** How long the BMC asked us to wait (Retry-After), or until a breaker/login block ends. */
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = 'RedfishError';
    Object.defineProperty(this, MARK, { value: true });
  }

  static override [Symbol.hasInstance](obj: unknown): boolean {
    return typeof obj === 'object' && obj !== null && (obj as Record<symbol, unknown>)[MARK] === true;
  }

  toJSON(): { code: RedfishErrorCode; message: string; status?: number } {
    return { code: this.code, message: this.message, status: this.status };
  }
}

/** Failures that say "this BMC is not answering" (they count towards the circuit breaker). */
export function isUnreachable(code: RedfishErrorCode): boolean {
  return code === 'RF_TIMEOUT' || code === 'RF_CONNECT' || code === 'RF_TLS';
}

/** A batch's answer for a node whose target the worker thread does not have (it restarted): the pool sends it again in full. */
export const NO_TARGET = 'RF_NO_TARGET';

/** A failure as it crosses from a BMC thread to the main thread: plain data, code stable. */
export type OpError = { code: string; message: string; status?: number };
