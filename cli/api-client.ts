/** A small typed client for the ironfleet/Ironic v1 API, used by the CLI, the lab and tests. */
import { request } from 'undici';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code?: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export interface ApiClientOptions {
  url: string;
  token?: string;
  /** Microversion to request. @default 'latest' */
  version?: string;
  /**
   * Gives up on a call after this long (connect, headers and body together), failing with
   * `TimeoutError`. Without it a conductor that accepted the connection and never answered would
   * hold the caller forever. @default no limit
   */
  timeoutMs?: number;
}

export class ApiClient {
  private readonly base: string;
  constructor(private readonly opts: ApiClientOptions) {
    this.base = opts.url.replace(/\/$/, '');
  }

  async call<T = Record<string, unknown>>(method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { 'x-openstack-ironic-api-version': this.opts.version ?? 'latest', accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (this.opts.token) headers['x-auth-token'] = this.opts.token;
    const signal = this.opts.timeoutMs === undefined ? undefined : AbortSignal.timeout(this.opts.timeoutMs);
    const res = await request(`${this.base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal });
    const text = await res.body.text();
    if (res.statusCode >= 400) {
      let message = text;
      let code: string | undefined;
      try {
        const outer = JSON.parse(text) as { error_message?: string };
        const inner = JSON.parse(outer.error_message ?? '{}') as { faultstring?: string; code?: string };
        message = inner.faultstring ?? message;
        code = inner.code;
      } catch {
        /* not an Ironic error body */
      }
      throw new ApiError(res.statusCode, message, code);
    }
    return (text ? JSON.parse(text) : {}) as T;
  }

  get<T = Record<string, unknown>>(path: string) {
    return this.call<T>('GET', path);
  }
  post<T = Record<string, unknown>>(path: string, body: unknown) {
    return this.call<T>('POST', path, body);
  }
  put<T = Record<string, unknown>>(path: string, body: unknown) {
    return this.call<T>('PUT', path, body);
  }
  patch<T = Record<string, unknown>>(path: string, body: unknown) {
    return this.call<T>('PATCH', path, body);
  }
  delete(path: string) {
    return this.call('DELETE', path);
  }

  /** Polls a node until `done(node)` or the deadline; calls `onTick` for progress output. */
  async waitNode(ident: string, done: (n: Record<string, unknown>) => boolean, timeoutMs: number, onTick?: (n: Record<string, unknown>) => void): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const n = await this.get(`/v1/nodes/${encodeURIComponent(ident)}`);
      onTick?.(n);
      if (done(n)) return n;
      if (Date.now() > deadline) throw new Error(`timed out waiting for node ${ident} (provision_state=${n.provision_state}, power_state=${n.power_state})`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}
