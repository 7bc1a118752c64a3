/**
 * Secret scrubbing shared by logs and API output.
 *
 * A key is secret when its name matches SECRET_KEY (password, token, secret, authorization,
 * x-auth-token, private key...). Scrubbing is structural (by key, at any depth) so a secret nested
 * anywhere in a driver_info, a config dump or an error's fields never reaches a log line.
 */

export const MASK = '******';

const SECRET_KEY = /(passw(or)?d|token|secret|authorization|x-auth-token|private_?key|credential|cookie|api_?key)/i;

/** Keys that match the pattern but are not secrets (e.g. booleans describing tokens). */
const NOT_SECRET = new Set(['agent_token_required', 'token_issued', 'has_token']);

export function isSecretKey(key: string): boolean {
  return SECRET_KEY.test(key) && !NOT_SECRET.has(key);
}

/** Deep copy of `value` with every secret-named key's value replaced by MASK. */
export function scrubSecrets<T>(value: T, depth = 0): T {
  if (depth > 12 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => scrubSecrets(v, depth + 1)) as T;
  if (value instanceof Error) {
    const out: Record<string, unknown> = { type: value.name, message: value.message };
    for (const [k, v] of Object.entries(value)) out[k] = isSecretKey(k) ? MASK : scrubSecrets(v, depth + 1);
    if (value.stack) out.stack = value.stack;
    return out as T;
  }
  if (Buffer.isBuffer(value)) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    out[k] = isSecretKey(k) && v !== null && v !== undefined && v !== '' ? MASK : scrubSecrets(v, depth + 1);
  }
  return out as T;
}
