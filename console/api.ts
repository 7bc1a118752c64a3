/**
 * The console's HTTP client: the ordinary Ironic v1 API with the user's own credentials (the
 * browser's HTTP basic cache, or a token kept for this tab only), the latest microversion, and
 * Ironic's error envelope turned into one readable message.
 */
const TOKEN_KEY = 'ironfleet.token';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code?: string,
  ) {
    super(message);
  }
}

export function authHeaders(): Record<string, string> {
  const t = sessionStorage.getItem(TOKEN_KEY);
  return t ? { 'x-auth-token': t } : {};
}

export function setToken(token: string | null): void {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** Set by the app: asked to show the token form after a 401 under token auth. */
export const onUnauthorized: { fn: (scheme: string) => void } = { fn: () => undefined };

export async function api<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(path, {
    method,
    credentials: 'same-origin',
    headers: { 'x-openstack-ironic-api-version': 'latest', ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...authHeaders() },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) {
    if (res.status === 401) onUnauthorized.fn(res.headers.get('www-authenticate') ?? '');
    throw new ApiError(res.status, errorText(text, res.status), errorCode(text));
  }
  return (text ? JSON.parse(text) : undefined) as T;
}

function parseEnvelope(text: string): { faultstring?: string; code?: string } | undefined {
  try {
    const outer = JSON.parse(text) as { error_message?: string };
    return outer.error_message ? (JSON.parse(outer.error_message) as { faultstring?: string; code?: string }) : undefined;
  } catch {
    return undefined;
  }
}

function errorText(text: string, status: number): string {
  return parseEnvelope(text)?.faultstring ?? `HTTP ${status}`;
}

function errorCode(text: string): string | undefined {
  return parseEnvelope(text)?.code;
}
