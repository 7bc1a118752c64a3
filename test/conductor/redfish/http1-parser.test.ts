/**
 * The HTTP/1.1 response reader (conductor/redfish/http1-parser.ts) on byte streams as BMC web
 * servers send them — split at every possible boundary, chunked with extensions and trailers,
 * interim 100 answers, bodiless 304s, close-framed bodies — and on the malformed ones it must refuse.
 */
import { describe, expect, it } from 'vitest';
import { MAX_BODY_BYTES, ResponseParser, type Exchange } from '../../../conductor/redfish/http1-parser.js';

const ORIGIN = 'https://bmc.example:443';

/** Feeds `wire` in pieces of `step` bytes; the answer and leftover bytes once complete. */
function read(wire: string, step: number, head = false): { answer: Exchange | null; rest: string | null; p: ResponseParser } {
  const p = new ResponseParser(ORIGIN, head);
  const bytes = Buffer.from(wire, 'latin1');
  for (let i = 0; i < bytes.length; i += step) {
    const out = p.feed(bytes.subarray(i, i + step));
    if (out) return { answer: out.answer, rest: out.rest ? Buffer.concat([out.rest, bytes.subarray(i + step)]).toString('latin1') : bytes.length > i + step ? bytes.subarray(i + step).toString('latin1') : null, p };
  }
  return { answer: null, rest: null, p };
}

const json = '{"PowerState":"On","Status":{"Health":"OK"}}';

describe('HTTP/1.1 response reader', () => {
  it('Content-Length bodies, whatever the split', () => {
    const wire = `HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nETag: W/"1"\r\nContent-Length: ${json.length}\r\n\r\n${json}`;
    for (let step = 1; step <= wire.length; step++) {
      const { answer, rest, p } = read(wire, step);
      expect(answer, `step ${step}`).toEqual({ statusCode: 200, headers: { 'content-type': 'application/json', etag: 'W/"1"', 'content-length': String(json.length) }, body: json });
      expect(rest).toBeNull();
      expect(p.closeAfter).toBe(false);
    }
  });

  it('chunked bodies with chunk extensions and trailers, whatever the split', () => {
    const wire = `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\n{"Pow\r\n${(json.length - 5).toString(16)}\r\n${json.slice(5)}\r\n0\r\nX-Trailer: t\r\n\r\n`;
    for (let step = 1; step <= wire.length; step++) {
      const { answer } = read(wire, step);
      expect(answer?.body, `step ${step}`).toBe(json);
    }
  });

  it('skips a 100 Continue, reads a 304 and an answer to HEAD without a body', () => {
    expect(read(`HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nLocation: /s/1\r\nContent-Length: 2\r\n\r\n{}`, 7).answer).toMatchObject({ statusCode: 201, headers: { location: '/s/1' }, body: '{}' });
    expect(read(`HTTP/1.1 304 Not Modified\r\nETag: W/"1"\r\n\r\n`, 1000).answer).toEqual({ statusCode: 304, headers: { etag: 'W/"1"' }, body: '' });
    expect(read(`HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n`, 1000, true).answer?.body).toBe('');
  });

  it('bytes past the answer are handed back (the link then closes the socket)', () => {
    const { rest } = read(`HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}HTTP/1.1 200 OK\r\n`, 1000);
    expect(rest).toBe('HTTP/1.1 200 OK\r\n');
  });

  it('no framing: the body runs to the end of the connection, and the socket is not reused', () => {
    const p = new ResponseParser(ORIGIN);
    expect(p.feed(Buffer.from(`HTTP/1.0 200 OK\r\n\r\n{"a":`))).toBeNull();
    expect(p.feed(Buffer.from('1}'))).toBeNull();
    expect(p.closeAfter).toBe(true);
    expect(p.end()).toEqual({ statusCode: 200, headers: {}, body: '{"a":1}' });
  });

  it('Connection: close and HTTP/1.0 without keep-alive end the socket after the answer', () => {
    expect(read(`HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`, 1000).p.closeAfter).toBe(true);
    expect(read(`HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n`, 1000).p.closeAfter).toBe(true);
    expect(read(`HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n`, 1000).p.closeAfter).toBe(false);
  });

  it('a cut-off Content-Length body is no answer at the end of the connection', () => {
    const p = new ResponseParser(ORIGIN);
    expect(p.feed(Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}`))).toBeNull();
    expect(p.started).toBe(true);
    expect(p.end()).toBeNull();
  });

  it.each([
    ['a bad status line', 'HTTP/2 200\r\n\r\n', /bad status line/],
    ['a header line without a colon', 'HTTP/1.1 200 OK\r\nnonsense\r\n\r\n', /bad header line/],
    ['conflicting Content-Lengths', 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n', /bad Content-Length/],
    ['a negative Content-Length', 'HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n', /bad Content-Length/],
    ['a bad chunk size', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n', /bad chunk size/],
    ['a chunk without its CRLF', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}XX', /not followed by CRLF/],
    ['a Content-Length past the cap', `HTTP/1.1 200 OK\r\nContent-Length: ${MAX_BODY_BYTES + 1}\r\n\r\n`, /larger than/],
  ])('refuses %s (RF_PROTOCOL, naming the BMC)', (_what, wire, msg) => {
    const p = new ResponseParser(ORIGIN);
    let err: { code?: string; message?: string } | undefined;
    try {
      p.feed(Buffer.from(wire, 'latin1'));
    } catch (e) {
      err = e as typeof err;
    }
    expect(err?.code).toBe('RF_PROTOCOL');
    expect(err?.message).toMatch(msg);
    expect(err?.message).toContain(ORIGIN);
  });

  it('refuses a head that never ends and a chunked body past the cap', () => {
    const p = new ResponseParser(ORIGIN);
    expect(() => {
      for (let i = 0; i < 100; i++) p.feed(Buffer.from(`X-Long-${i}: ${'v'.repeat(1000)}\r\n`));
    }).toThrow(/response head longer than/);
    const q = new ResponseParser(ORIGIN);
    q.feed(Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n'));
    const chunk = Buffer.concat([Buffer.from(`${(1 << 20).toString(16)}\r\n`), Buffer.alloc(1 << 20, 0x20), Buffer.from('\r\n')]);
    expect(() => {
      for (let i = 0; i < 17; i++) q.feed(chunk);
    }).toThrow(/larger than/);
  });
});
