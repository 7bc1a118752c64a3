/** The shapes a Redfish client is configured with and reports: options, sessions, counters, session events. */

export interface RedfishClientOptions {
  /** Whole-request deadline (connect + response). @default 10000 */
  timeoutMs?: number;
  /** @default 5000 */
  connectTimeoutMs?: number;
  /** Max requests in flight to this BMC, and its connections (the adaptive limit never exceeds it). @default 1 */
  maxInflight?: number;
  /** Retries for idempotent GETs on 5xx / connection errors. @default 2 */
  getRetries?: number;
  /** Consecutive unreachable failures that open the breaker. @default 2 */
  breakerThreshold?: number;
  /** How long the breaker stays open before one probe. @default 30000 */
  breakerOpenMs?: number;
  /** The worker's deadline per operation (retry-policy.ts); the client itself does not read it. @default 60000 */
  operationDeadlineMs?: number;
  /** An idle BMC socket is closed after this (ms), or earlier when the BMC says so. @default 90000 */
  keepAliveMs?: number;
  /** BMC sockets this worker thread may hold (socket-budget.ts); 0 = no budget. @default 0 */
  socketBudget?: number;
  /** Sweep reads this worker thread keeps young in flight (batch-run.ts); 0 = all at once. @default 0 */
  sweepWindow?: number;
}

/** Per thread, not per client: the descriptor budget and the sweep window. */
export type CompiledClientOptions = Required<Omit<RedfishClientOptions, 'socketBudget' | 'sweepWindow'>>;

const compiled = new WeakMap<RedfishClientOptions, CompiledClientOptions>();

/** Defaults applied once per options object (a thread's clients share one), not once per BMC client. */
export function compileClientOptions(opts: RedfishClientOptions): CompiledClientOptions {
  let o = compiled.get(opts);
  if (!o) {
    o = Object.freeze({
      timeoutMs: opts.timeoutMs ?? 10_000,
      connectTimeoutMs: opts.connectTimeoutMs ?? 5_000,
      maxInflight: opts.maxInflight ?? 1,
      getRetries: opts.getRetries ?? 2,
      breakerThreshold: opts.breakerThreshold ?? 2,
      breakerOpenMs: opts.breakerOpenMs ?? 30_000,
      operationDeadlineMs: opts.operationDeadlineMs ?? 60_000,
      keepAliveMs: opts.keepAliveMs ?? 90_000,
    });
    compiled.set(opts, o);
  }
  return o;
}

export interface SessionRecord {
  key: string;
  uri: string;
  token: string;
  createdAt: number;
}

export interface ClientStats {
  requests: number;
  errors: number;
  logins: number;
  logins_failed: number;
  relogins: number;
  not_modified: number;
  retries: number;
  breaker_rejections: number;
}

export type SessionEvent = { op: 'created'; session: SessionRecord } | { op: 'deleted'; key: string; uri: string };
