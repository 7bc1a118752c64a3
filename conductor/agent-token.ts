/**
 * Per-boot agent tokens: 32 random bytes, base64url (43 chars, as Ironic's token_urlsafe). Only a
 * SHA-256 hash is stored; comparison is constant time.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

export function newAgentToken(): string {
  return randomBytes(32).toString('base64url');
}

export function hashAgentToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

export function agentTokenMatches(token: string | undefined, storedHash: string | null): boolean {
  if (!token || !storedHash) return false;
  const a = Buffer.from(hashAgentToken(token), 'hex');
  const b = Buffer.from(storedHash, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}
