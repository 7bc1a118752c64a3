/**
 * An incremental HTTP/1.1 response reader for BMC connections (bmc-link.ts): status line, headers
 * (names lower-cased), and the body framed by Content-Length, chunked transfer coding, or the end
 * of the connection; 1xx interim answers are skipped; 204/304 and answers to HEAD have no body.
 * Bounded: a head past 64 KiB or a body past MAX_BODY_BYTES is a protocol error, so a broken or
 * hostile BMC cannot make the conductor buffer without limit. Pure: bytes in, answers out.
 */
import { RedfishError } from './errors.js';

export interface Exchange {
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** Redfish documents are kilobytes; a firmware inventory with many members stays far below this. */
export const MAX_BODY_BYTES = 16 << 20;
const MAX_HEAD_BYTES = 64 << 10;
const CRLF = Buffer.from('\r\n');
const HEAD_END = Buffer.from('\r\n\r\n');

type Framing = { kind: 'length'; left: number } | { kind: 'chunked'; left: number; trailers: boolean } | { kind: 'close' } | { kind: 'none' };

export class ResponseParser {
  private buf: Buffer | null = null;
  private statusCode = 0;
  private headers: Record<string, string | string[] | undefined> = {};
  private framing: Framing | null = null;
  private parts: Buffer[] = [];
  private bytes = 0;
  /** The connection cannot carry another request after this answer. */
  closeAfter = false;

  constructor(
    private readonly origin: string,
    private readonly headRequest = false,
  ) {}

  /** True once any byte of the answer arrived (a request that saw none may be sent again). */
  get started(): boolean {
    return this.buf !== null || this.framing !== null;
  }

  /** Feeds bytes; returns the answer once complete (bytes past it: `rest`), else null. */
  feed(chunk: Buffer): { answer: Exchange; rest: Buffer | null } | null {
    this.buf = this.buf?.length ? Buffer.concat([this.buf, chunk]) : chunk;
    for (;;) {
      if (!this.framing) {
        const end = this.buf.indexOf(HEAD_END);
        if (end < 0) {
          if (this.buf.length > MAX_HEAD_BYTES) throw this.protocol(`a response head longer than ${MAX_HEAD_BYTES} bytes`);
          return null;
        }
        const interim = this.readHead(this.buf.toString('latin1', 0, end));
        this.buf = this.buf.subarray(end + 4);
        if (interim) continue;
      }
      const f = this.framing!;
      if (f.kind === 'none') return this.done();
      if (f.kind === 'close') {
        this.take(this.buf.length);
        return null;
      }
      if (f.kind === 'length') {
        const n = Math.min(f.left, this.buf.length);
        this.take(n);
        f.left -= n;
        return f.left === 0 ? this.done() : null;
      }
      // chunked: size line, data, CRLF ... 0-size chunk, trailers, empty line
      if (f.left > 0) {
        const n = Math.min(f.left, this.buf.length);
        this.take(n);
        f.left -= n;
        if (f.left > 0) return null;
        f.left = -2; // its CRLF is next
      }
      if (f.left === -2) {
        if (this.buf.length < 2) return null;
        if (this.buf[0] !== 13 || this.buf[1] !== 10) throw this.protocol('a chunk not followed by CRLF');
        this.buf = this.buf.subarray(2);
        f.left = 0;
      }
      const eol = this.buf.indexOf(CRLF);
      if (eol < 0) {
        if (this.buf.length > 1024) throw this.protocol('an overlong chunk-size line');
        return null;
      }
      const line = this.buf.toString('latin1', 0, eol);
      this.buf = this.buf.subarray(eol + 2);
      if (f.trailers) {
        if (line === '') return this.done();
        continue;
      }
      const size = /^[0-9a-fA-F]{1,8}/.exec(line);
      if (!size) throw this.protocol(`a bad chunk size "${line.slice(0, 20)}"`);
      const n = parseInt(size[0], 16);
      if (n === 0) f.trailers = true;
      else f.left = n;
    }
  }

  /** The connection ended: an answer framed by its end is complete; any other is cut off. */
  end(): Exchange | null {
    if (this.framing?.kind === 'close') return this.done()!.answer;
    return null;
  }

  private readHead(head: string): boolean {
    const lines = head.split('\r\n');
    const m = /^HTTP\/1\.([01]) (\d{3})/.exec(lines[0]!);
    if (!m) throw this.protocol(`a bad status line "${lines[0]!.slice(0, 40)}"`);
    const status = Number(m[2]);
    if (status >= 100 && status < 200) return true; // interim (100 Continue, 102, 103): the answer follows
    const h: Record<string, string | string[] | undefined> = {};
    for (let i = 1; i < lines.length; i++) {
      const l = lines[i]!;
      const c = l.indexOf(':');
      if (c <= 0) throw this.protocol(`a bad header line "${l.slice(0, 40)}"`);
      const k = l.slice(0, c).trim().toLowerCase();
      const v = l.slice(c + 1).trim();
      const had = h[k];
      h[k] = had === undefined ? v : Array.isArray(had) ? [...had, v] : [had, v];
    }
    this.statusCode = status;
    this.headers = h;
    const conn = String(h.connection ?? '').toLowerCase();
    this.closeAfter = conn.includes('close') || (m[1] === '0' && !conn.includes('keep-alive'));
    const te = String(h['transfer-encoding'] ?? '').toLowerCase();
    if (this.headRequest || status === 204 || status === 304) this.framing = { kind: 'none' };
    else if (te.includes('chunked')) {
      this.framing = { kind: 'chunked', left: 0, trailers: false };
      if (h['content-length'] !== undefined) this.closeAfter = true; // both framings: trust neither again
    } else if (h['content-length'] !== undefined) {
      const raw = Array.isArray(h['content-length']) ? [...new Set(h['content-length'])] : [h['content-length']];
      if (raw.length !== 1 || !/^\d{1,10}$/.test(raw[0]!)) throw this.protocol('a bad Content-Length');
      const n = Number(raw[0]);
      if (n > MAX_BODY_BYTES) throw this.tooLarge();
      this.framing = { kind: 'length', left: n };
    } else {
      this.framing = { kind: 'close' };
      this.closeAfter = true;
    }
    return false;
  }

  private take(n: number): void {
    if (n === 0) return;
    this.bytes += n;
    if (this.bytes > MAX_BODY_BYTES) throw this.tooLarge();
    this.parts.push(this.buf!.subarray(0, n));
    this.buf = this.buf!.subarray(n);
  }

  private done(): { answer: Exchange; rest: Buffer | null } {
    const body = this.parts.length === 0 ? '' : this.parts.length === 1 ? this.parts[0]!.toString('utf8') : Buffer.concat(this.parts).toString('utf8');
    const rest = this.buf?.length ? this.buf : null;
    return { answer: { statusCode: this.statusCode, headers: this.headers, body }, rest };
  }

  private tooLarge(): RedfishError {
    return new RedfishError('RF_PROTOCOL', `BMC ${this.origin} sent an answer larger than ${MAX_BODY_BYTES} bytes; not read`, undefined, this.origin);
  }

  private protocol(what: string): RedfishError {
    return new RedfishError('RF_PROTOCOL', `BMC ${this.origin} sent ${what}`, undefined, this.origin);
  }
}
