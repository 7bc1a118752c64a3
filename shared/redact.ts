/**
 * Secret scrubbing shared by logs, API output, node history and error messages.
 *
 * Two kinds of secret are recognised:
 * - by key: a value whose key matches SECRET_KEY (password, token, secret, authorization,
 *   x-auth-token, private key...) is replaced by MASK, at any depth (cycle-safe, no depth cutoff);
 * - inside strings: credentials embedded in URLs — userinfo (`https://user:pw@host`) and
 *   credential-like query parameters (`?token=…`, `X-Amz-Signature=…`, `temp_url_sig=…`) — are
 *   masked wherever a URL appears in free text (an error message quoting an image URL, a log line).
 */

export const MASK = '******';

const SECRET_KEY = /(passw(or)?d|token|secret|authorization|x-auth-token|private_?key|credential|cookie|api_?key)/i;

/** Keys that match the pattern but are not secrets (e.g. booleans describing tokens). */
const NOT_SECRET = new Set(['agent_token_required', 'token_issued', 'has_token']);

export function isSecretKey(key: string): boolean {
  return SECRET_KEY.test(key) && !NOT_SECRET.has(key);
}

/** scheme://userinfo@ — userinfo up to the first '@' before any '/', '?', '#' or whitespace. */
const URL_USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)[^\s/?#@"'<>]+@/gi;
/** Query parameters that carry credentials (object-store signatures, tokens, passwords, keys). */
const CREDENTIAL_PARAM = /([?&](?:[a-z0-9_.-]*(?:token|passw(?:or)?d|secret|signature|credential|api_?key|access_?key)|sig|temp_url_sig|x-amz-security-token|auth|key)=)[^&#\s"'<>]*/gi;

/** True when `s` holds a URL credential that redactUrl would mask. */
export function hasUrlCredential(s: string): boolean {
  if (!s.includes('://') && !s.includes('=')) return false;
  URL_USERINFO.lastIndex = 0;
  CREDENTIAL_PARAM.lastIndex = 0;
  const found = URL_USERINFO.test(s) || CREDENTIAL_PARAM.test(s);
  URL_USERINFO.lastIndex = 0;
  CREDENTIAL_PARAM.lastIndex = 0;
  return found;
}

/** Masks URL userinfo and credential-like query parameters anywhere in `s`. */
export function redactUrl(s: string): string {
  if (!s.includes('://') && !s.includes('=')) return s;
  return s.replace(URL_USERINFO, `$1${MASK}@`).replace(CREDENTIAL_PARAM, `$1${MASK}`);
}

/** Free text (messages, last_error, history events): URL credentials masked. */
export const scrubText = redactUrl;

/** Deep copy of `value` with every secret-named key's value and every URL credential masked. */
export function scrubSecrets<T>(value: T): T {
  return scrub(value, new WeakMap()) as T;
}

function scrub(value: unknown, seen: WeakMap<object, unknown>): unknown {
  if (typeof value === 'string') return redactUrl(value);
  if (value === null || typeof value !== 'object') return value;
  if (Buffer.isBuffer(value) || ArrayBuffer.isView(value)) return value;
  const prior = seen.get(value);
  if (prior !== undefined) return prior;
  if (Array.isArray(value)) {
    const out: unknown[] = [];
    seen.set(value, out);
    for (const v of value) out.push(scrub(v, seen));
    return out;
  }
  const out: Record<string, unknown> = {};
  seen.set(value, out);
  if (value instanceof Error) {
    out.type = value.name;
    out.message = redactUrl(value.message);
    if (value.stack) out.stack = redactUrl(value.stack);
  }
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    if (value instanceof Error && (k === 'message' || k === 'stack')) continue;
    const masked = isSecretKey(k) && v !== null && v !== undefined && v !== '' && typeof v !== 'boolean';
    Object.defineProperty(out, k, { value: masked ? MASK : scrub(v, seen), enumerable: true, writable: true, configurable: true });
  }
  return out;
}
