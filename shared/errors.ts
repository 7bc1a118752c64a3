/**
 * Typed errors with stable codes.
 *
 * Every error ironfleet raises on purpose is an IronfleetError carrying a stable string `code`
 * (never reworded once released), typed fields, an optional HTTP status for the API layer, and a
 * `cause`. `instanceof` works across duplicate module copies through Symbol.for markers: every
 * class has its own `kind`, and an instance carries one marker per class in its chain, so
 * `err instanceof NodeLockedError` is true only for a NodeLockedError (or a subclass), never for
 * an arbitrary IronfleetError. Structured clone still drops the class, so across piscina use
 * `toErrorResult()` / `fromErrorResult()`.
 */

const markerOf = (kind: string): symbol => Symbol.for(`ironfleet.error:${kind}`);

export type ErrorCode =
  | 'IRF_CONFIG_INVALID'
  | 'IRF_INVALID_INPUT'
  | 'IRF_NOT_FOUND'
  | 'IRF_CONFLICT'
  | 'IRF_NODE_LOCKED'
  | 'IRF_INVALID_STATE'
  | 'IRF_UNAUTHORIZED'
  | 'IRF_NOT_ACCEPTABLE'
  | 'IRF_AGENT_NOT_CONNECTED'
  | 'IRF_AGENT_BUSY'
  | 'IRF_AGENT_PROTOCOL'
  | 'IRF_DRIVER'
  | 'IRF_CONCURRENT_ACTION_LIMIT'
  | 'IRF_DB_UNAVAILABLE'
  | 'IRF_CONSOLE_NOT_BUILT'
  | 'IRF_CONDUCTOR_UNAVAILABLE'
  /** A Redfish service walked for enrolment refused the credentials or kept failing. */
  | 'IRF_REDFISH_SERVICE'
  | 'IRF_INTERNAL';

export interface ErrorFields {
  [key: string]: string | number | boolean | null | undefined;
}

export class IronfleetError extends Error {
  /** Stable class identity for `instanceof` (class names do not survive bundling). */
  static readonly kind: string = 'IronfleetError';
  readonly code: ErrorCode;
  readonly httpStatus: number;
  readonly fields: ErrorFields;

  constructor(code: ErrorCode, message: string, opts: { httpStatus?: number; fields?: ErrorFields; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'IronfleetError';
    this.code = code;
    this.httpStatus = opts.httpStatus ?? 500;
    this.fields = opts.fields ?? {};
    // One marker per class from the concrete one up to IronfleetError.
    for (let c = new.target as unknown as { kind?: string } | null; c && c !== (Error as unknown); c = Object.getPrototypeOf(c)) {
      if (Object.hasOwn(c, 'kind')) Object.defineProperty(this, markerOf(c.kind!), { value: true });
    }
  }

  /** `this` is the class on the right of `instanceof`: each class checks its own marker. */
  static override [Symbol.hasInstance](this: { kind: string }, obj: unknown): boolean {
    return typeof obj === 'object' && obj !== null && (obj as Record<symbol, unknown>)[markerOf(this.kind)] === true;
  }
}

export class ConfigError extends IronfleetError {
  static override readonly kind: string = 'ConfigError';
  constructor(message: string, readonly key: string) {
    super('IRF_CONFIG_INVALID', message, { fields: { key } });
    this.name = 'ConfigError';
  }
}

export class InvalidInputError extends IronfleetError {
  static override readonly kind: string = 'InvalidInputError';
  constructor(message: string, readonly field?: string) {
    super('IRF_INVALID_INPUT', message, { httpStatus: 400, fields: { field } });
    this.name = 'InvalidInputError';
  }
}

export class NotFoundError extends IronfleetError {
  static override readonly kind: string = 'NotFoundError';
  constructor(kind: string, ident: string) {
    super('IRF_NOT_FOUND', `${kind} ${ident} could not be found.`, { httpStatus: 404, fields: { kind, ident } });
    this.name = 'NotFoundError';
  }
}

export class ConflictError extends IronfleetError {
  static override readonly kind: string = 'ConflictError';
  constructor(message: string, fields: ErrorFields = {}) {
    super('IRF_CONFLICT', message, { httpStatus: 409, fields });
    this.name = 'ConflictError';
  }
}

export class NodeLockedError extends IronfleetError {
  static override readonly kind: string = 'NodeLockedError';
  constructor(readonly nodeUuid: string, readonly holder: string) {
    super('IRF_NODE_LOCKED', `Node ${nodeUuid} is locked by host ${holder}, please retry after the current operation is completed.`, {
      httpStatus: 409,
      fields: { nodeUuid, holder },
    });
    this.name = 'NodeLockedError';
  }
}

export class InvalidStateError extends IronfleetError {
  static override readonly kind: string = 'InvalidStateError';
  constructor(message: string, readonly nodeUuid: string, readonly state: string) {
    super('IRF_INVALID_STATE', message, { httpStatus: 400, fields: { nodeUuid, state } });
    this.name = 'InvalidStateError';
  }
}

export class UnauthorizedError extends IronfleetError {
  static override readonly kind: string = 'UnauthorizedError';
  constructor(message = 'Authentication required') {
    super('IRF_UNAUTHORIZED', message, { httpStatus: 401 });
    this.name = 'UnauthorizedError';
  }
}

export class AgentNotConnectedError extends IronfleetError {
  static override readonly kind: string = 'AgentNotConnectedError';
  constructor(readonly nodeUuid: string) {
    super('IRF_AGENT_NOT_CONNECTED', `No agent is connected for node ${nodeUuid}.`, { httpStatus: 409, fields: { nodeUuid } });
    this.name = 'AgentNotConnectedError';
  }
}

export class AgentBusyError extends IronfleetError {
  static override readonly kind: string = 'AgentBusyError';
  constructor(readonly nodeUuid: string, readonly runningCommandId: string) {
    super('IRF_AGENT_BUSY', `Agent of node ${nodeUuid} is busy with command ${runningCommandId}.`, {
      httpStatus: 409,
      fields: { nodeUuid, runningCommandId },
    });
    this.name = 'AgentBusyError';
  }
}

/** Ironic's ConcurrentActionLimit: too many nodes deploying / cleaning already; retry later (503). */
export class ConcurrentActionLimitError extends IronfleetError {
  static override readonly kind: string = 'ConcurrentActionLimitError';
  constructor(action: 'deploy' | 'clean', count: number, limit: number) {
    super('IRF_CONCURRENT_ACTION_LIMIT', `Unable to process request at this time. The concurrent action limit for ${action} has been reached: ${count} nodes are in ${action} states, the limit (conductor.max_concurrent_${action}) is ${limit}. Retry later.`, {
      httpStatus: 503,
      fields: { action, count, limit },
    });
    this.name = 'ConcurrentActionLimitError';
  }
}

export class DriverError extends IronfleetError {
  static override readonly kind: string = 'DriverError';
  constructor(message: string, fields: ErrorFields = {}, cause?: unknown) {
    super('IRF_DRIVER', message, { httpStatus: 400, fields, cause });
    this.name = 'DriverError';
  }
}

/** Plain-data form for crossing worker/process boundaries. */
export interface ErrorResult {
  ok: false;
  code: string;
  message: string;
  fields?: ErrorFields;
}

export function toErrorResult(err: unknown): ErrorResult {
  if (err instanceof IronfleetError) return { ok: false, code: err.code, message: err.message, fields: err.fields };
  return { ok: false, code: 'IRF_INTERNAL', message: errorMessage(err) };
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
