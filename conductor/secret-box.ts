/**
 * Secrets at rest: AES-256-GCM over the values that must not sit readable in the database — BMC
 * passwords and every other secret-named field of a node's JSON documents, URL credentials
 * (`https://user:pw@…`, `?temp_url_sig=…`) in image sources and command parameters, and Redfish
 * session tokens. A sealed value is a string `enc:v1:<key id>:<base64(iv ‖ tag ‖ ciphertext)>`,
 * so a document keeps its shape and non-secret fields stay queryable and readable.
 *
 * The key file (`security.secrets_key_file`) holds one key per line, `<id> <base64 32 bytes>`;
 * the first line is the key new values are sealed with, the others only open older values (key
 * rotation: `ironfleet secrets rotate`). It is generated (0600, directory 0700) on first start.
 * Losing it makes the sealed values unreadable: back it up with the database, store it apart.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ConfigError } from '../shared/errors.js';
import { hasUrlCredential, isSecretKey } from '../shared/redact.js';

const PREFIX = 'enc:v1:';
const KEY_ID = /^[A-Za-z0-9_-]{1,32}$/;

export interface SecretKey {
  id: string;
  key: Buffer;
}

export class SecretBoxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SecretBoxError';
  }
}

export function isSealed(s: unknown): s is string {
  return typeof s === 'string' && s.startsWith(PREFIX);
}

export function newSecretKey(): SecretKey {
  return { id: `k${Date.now().toString(36)}${randomBytes(3).toString('hex')}`, key: randomBytes(32) };
}

export function parseKeyFile(text: string, file: string): SecretKey[] {
  const keys: SecretKey[] = [];
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const [id, b64, ...rest] = line.split(/\s+/);
    const key = Buffer.from(b64 ?? '', 'base64');
    if (!id || !KEY_ID.test(id) || key.length !== 32 || rest.length) {
      throw new ConfigError(`security.secrets_key_file: ${file} line ${i + 1} is not "<id> <base64 of 32 bytes>"`, 'security.secrets_key_file');
    }
    keys.push({ id, key });
  }
  if (keys.length === 0) throw new ConfigError(`security.secrets_key_file: ${file} holds no key`, 'security.secrets_key_file');
  return keys;
}

/** Writes the key file atomically, 0600, in a 0700 directory. */
export function writeKeyFile(file: string, keys: SecretKey[]): void {
  const dir = path.dirname(file);
  if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp-${process.pid}`;
  const text = ['# ironfleet secrets keys: the first seals, all open. Keep it 0600, back it up apart from the database.', ...keys.map((k) => `${k.id} ${k.key.toString('base64')}`), ''].join('\n');
  writeFileSync(tmp, text, { mode: 0o600 });
  renameSync(tmp, file);
  chmodSync(file, 0o600);
}

export class SecretBox {
  private keys: SecretKey[];

  constructor(
    keys: SecretKey[],
    private readonly file?: string,
  ) {
    if (keys.length === 0) throw new SecretBoxError('a secret box needs at least one key');
    this.keys = keys;
  }

  /** Loads the key file, creating it with a fresh key when absent (and `create`). */
  static load(file: string, opts: { create?: boolean } = {}): SecretBox {
    if (!existsSync(file)) {
      if (!opts.create) throw new ConfigError(`security.secrets_key_file: ${file} does not exist`, 'security.secrets_key_file');
      writeKeyFile(file, [newSecretKey()]);
    }
    const mode = statSync(file).mode & 0o777;
    if (mode & 0o077) throw new ConfigError(`security.secrets_key_file: ${file} is readable by others (mode ${mode.toString(8)}); chmod 600 it`, 'security.secrets_key_file');
    return new SecretBox(parseKeyFile(readFileSync(file, 'utf8'), file), file);
  }

  get primaryId(): string {
    return this.keys[0]!.id;
  }

  get keyIds(): string[] {
    return this.keys.map((k) => k.id);
  }

  seal(plain: string): string {
    const { id, key } = this.keys[0]!;
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', key, iv);
    c.setAAD(Buffer.from(id));
    const ct = Buffer.concat([c.update(plain, 'utf8'), c.final()]);
    return `${PREFIX}${id}:${Buffer.concat([iv, c.getAuthTag(), ct]).toString('base64')}`;
  }

  open(sealed: string): string {
    const rest = sealed.slice(PREFIX.length);
    const colon = rest.indexOf(':');
    const id = rest.slice(0, colon);
    let k = this.keys.find((x) => x.id === id);
    if (!k && this.file) {
      // Rotated by another process (`ironfleet secrets rotate`): pick up its new keys.
      this.keys = parseKeyFile(readFileSync(this.file, 'utf8'), this.file);
      k = this.keys.find((x) => x.id === id);
    }
    if (!k) throw new SecretBoxError(`a secret was sealed with key "${id}", which is not in the key file`);
    const buf = Buffer.from(rest.slice(colon + 1), 'base64');
    if (buf.length < 28) throw new SecretBoxError('a sealed secret is truncated');
    const d = createDecipheriv('aes-256-gcm', k.key, buf.subarray(0, 12));
    d.setAAD(Buffer.from(id));
    d.setAuthTag(buf.subarray(12, 28));
    try {
      return Buffer.concat([d.update(buf.subarray(28)), d.final()]).toString('utf8');
    } catch {
      throw new SecretBoxError(`a sealed secret (key "${id}") failed authentication: wrong key or tampered data`);
    }
  }

  /** Seals an unsealed value, re-seals one sealed with another key; leaves primary-key values alone. */
  reseal(s: string): string {
    if (!isSealed(s)) return this.seal(s);
    if (s.startsWith(`${PREFIX}${this.primaryId}:`)) return s;
    return this.seal(this.open(s));
  }

  /** Copy of a JSON document with secret-named string values and URL-credential strings sealed. */
  sealDoc<T>(doc: T, force = false): T {
    return this.walk(doc, (s, secretKey) => (secretKey || hasUrlCredential(s) ? (force ? this.reseal(s) : isSealed(s) ? s : this.seal(s)) : s)) as T;
  }

  /** Copy of a JSON document with every sealed string opened. */
  openDoc<T>(doc: T): T {
    return this.walk(doc, (s) => (isSealed(s) ? this.open(s) : s)) as T;
  }

  private walk(v: unknown, fn: (s: string, secretKey: boolean) => string, secretKey = false): unknown {
    if (typeof v === 'string') return fn(v, secretKey);
    if (Array.isArray(v)) return v.map((x) => this.walk(x, fn, secretKey));
    if (v === null || typeof v !== 'object') return v;
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      Object.defineProperty(out, k, { value: this.walk(x, fn, secretKey || isSecretKey(k)), enumerable: true, writable: true, configurable: true });
    }
    return out;
  }
}
