/**
 * One HTTP exchange with a BMC, read whole: status, headers (lower-case names) and the body as text,
 * through undici's `dispatch` with a small handler. Why not `Dispatcher.request`: it builds a
 * Readable body stream, an async resource and a promise chain for every request, and a power sync
 * sweep is thousands of tiny JSON answers read whole anyway — at 10,000 BMCs the stream machinery
 * and its garbage were a large part of the BMC workers' CPU (`--cpu-prof`, bench/scale).
 * A body larger than `maxBodyBytes` aborts the exchange: a BMC cannot make the conductor buffer
 * without bound.
 */
import type { Dispatcher } from 'undici';
import { RedfishError } from './errors.js';

export interface Exchange {
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** Redfish documents are kilobytes; a firmware inventory with many members stays far below this. */
export const MAX_BODY_BYTES = 16 << 20;

class ExchangeHandler implements Dispatcher.DispatchHandler {
  private statusCode = 0;
  private headers: Record<string, string | string[] | undefined> = {};
  private chunks: Buffer[] | undefined;
  private first: Buffer | undefined;
  private bytes = 0;
  private abort: ((err?: Error) => void) | undefined;

  constructor(
    private readonly origin: string,
    private readonly resolve: (x: Exchange) => void,
    private readonly reject: (err: unknown) => void,
  ) {}

  onConnect(abort: (err?: Error) => void): void {
    this.abort = abort;
  }

  onHeaders(statusCode: number, raw: Buffer[] | string[] | null): boolean {
    this.statusCode = statusCode;
    if (raw) {
      for (let i = 0; i + 1 < raw.length; i += 2) {
        const k = raw[i]!.toString('latin1').toLowerCase();
        const v = raw[i + 1]!.toString('latin1');
        const had = this.headers[k];
        this.headers[k] = had === undefined ? v : Array.isArray(had) ? [...had, v] : [had, v];
      }
    }
    return true;
  }

  onData(chunk: Buffer): boolean {
    this.bytes += chunk.length;
    if (this.bytes > MAX_BODY_BYTES) {
      this.abort?.(new RedfishError('RF_PROTOCOL', `BMC ${this.origin} sent an answer larger than ${MAX_BODY_BYTES} bytes; not read`, undefined, this.origin));
      return false;
    }
    if (!this.first) this.first = chunk;
    else (this.chunks ??= [this.first]).push(chunk);
    return true;
  }

  onComplete(): void {
    const body = this.chunks ? Buffer.concat(this.chunks).toString('utf8') : this.first ? this.first.toString('utf8') : '';
    this.resolve({ statusCode: this.statusCode, headers: this.headers, body });
  }

  onError(err: Error): void {
    this.reject(err);
  }
}

/** Sends one request on `d` and reads its answer whole (transport errors reject as undici's). */
export function exchange(d: Dispatcher, origin: string, opts: Dispatcher.DispatchOptions): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    try {
      d.dispatch(opts, new ExchangeHandler(origin, resolve, reject));
    } catch (err) {
      reject(err);
    }
  });
}
