/**
 * The header lines and paths a Redfish client sends, built from constants once: base headers, JSON
 * bodies, the session token or Basic credentials, and a GET's `$select` path and lines (memoised per client, last-of.ts).
 */
import { headerLines } from './bmc-link.js';
import { BASE_HEADERS } from './transport.js';

export const BASE_LINES = headerLines(BASE_HEADERS);
export const JSON_LINES = headerLines({ ...BASE_HEADERS, 'Content-Type': 'application/json' });
export const tokenLines = (token: string): string => headerLines({ 'X-Auth-Token': token });
export const basicLines = (user: string, password: string): string => headerLines({ Authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` });
export const withSelect = (path: string, select: readonly string[]): string => `${path}${path.includes('?') ? '&' : '?'}$select=${select.join(',')}`;
/** A GET's header lines: the base, the session's auth line, and If-None-Match when an ETag is cached. */
export const getLines = (auth: string, ifNoneMatch: string): string => BASE_LINES + auth + ifNoneMatch;
