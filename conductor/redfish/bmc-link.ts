/**
 * The HTTP/1.1 link to one BMC: up to `connections` kept-alive sockets (one by default), requests
 * queued in order, one in flight per socket, each answer read whole (http1-parser.ts). Why not
 * undici: a power sync sweep is one tiny GET per BMC, and a general-purpose client's per-request
 * machinery (request objects, handler wrappers, timers, stream state) cost about as much CPU as
 * the TLS record itself — measured on this machine, undici's request API took 0.095 ms of CPU per
 * kept-alive HTTPS GET, its dispatch API 0.080, and a bare TLS socket 0.044 (bench/scale, `--cpu-prof`).
 * Sockets are opened inside this thread's descriptor budget and handshake limit (transport.ts),
 * with TLS session resumption, so a socket the budget closed comes back cheaply.
 */
import type { Socket } from 'node:net';
import { RedfishError } from './errors.js';
import { LastOf } from './last-of.js';
import { ResponseParser, type Exchange } from './http1-parser.js';
import { openSocket, type SocketOptions } from './transport.js';
import type { SocketOwner } from './socket-budget.js';

export type { Exchange };

export interface LinkOptions extends SocketOptions {
  connections: number;
  /** Headers, and each gap between body bytes, must come within this (ms). */
  timeoutMs: number;
  /** Idle sockets are closed after this (ms), or earlier when the BMC says so (Keep-Alive: timeout). */
  keepAliveMs: number;
}

interface Pending {
  method: string;
  data: Buffer | string;
  resolve(x: Exchange): void;
  reject(err: unknown): void;
  /** Sent once already on a kept-alive socket the BMC had closed (sent again once on a new one). */
  resent: boolean;
}

const PATH_OK = /^[\x21-\x7e]+$/;
const VALUE_OK = /^[\t\x20-\x7e\x80-\xff]*$/;

/** One socket and the request on it. */
class Conn {
  private socket: Socket | null = null;
  private parser: ResponseParser | null = null;
  private req: Pending | null = null;
  private timer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private reused = false;
  private idleMs: number;
  /** The BMC's last Keep-Alive header (parsed again only when it changes, not per answer). */
  private keepAliveSeen: unknown;

  constructor(private readonly link: BmcLink) {
    this.idleMs = link.o.keepAliveMs;
  }

  get busy(): boolean {
    return this.req !== null;
  }

  run(req: Pending): void {
    this.req = req;
    if (this.socket && !this.socket.destroyed && this.socket.writable) return this.write(true);
    this.socket = null;
    // The answer deadline of the last socket's request must not fire while this one connects (the
    // connect has its own deadline; the answer's starts at write()).
    clearTimeout(this.timer);
    this.timer = undefined;
    openSocket(this.link.o, this.link.owner).then(
      (s) => {
        if (this.link.closed) return void s.destroy();
        this.attach(s);
        if (this.req === req) this.write(false);
      },
      (err) => this.req === req && this.fail(err),
    );
  }

  private attach(s: Socket): void {
    this.socket = s;
    this.idleMs = this.link.o.keepAliveMs;
    this.keepAliveSeen = undefined;
    clearTimeout(this.idleTimer); // armed for an earlier socket, perhaps with the BMC's shorter timeout
    this.idleTimer = undefined;
    s.on('data', (d: Buffer) => this.onData(s, d));
    s.on('error', () => {}); // 'close' follows and says what it means for the request
    s.on('close', () => this.onClose(s));
  }

  private write(reused: boolean): void {
    const req = this.req!;
    this.reused = reused;
    this.parser = new ResponseParser(this.link.o.origin, req.method === 'HEAD');
    this.arm();
    this.socket!.write(req.data);
  }

  /**
   * (Re)starts the answer deadline. One timer per socket, refreshed per request and per arriving
   * chunk rather than a timer per request: a fire with no request in flight is a no-op.
   */
  private arm(): void {
    if (this.timer) this.timer.refresh();
    else this.timer = setTimeout(() => this.timeout(), this.link.o.timeoutMs).unref();
  }

  private timeout(): void {
    if (!this.req) return;
    const s = this.socket;
    this.socket = null;
    this.fail(new RedfishError('RF_TIMEOUT', `BMC ${this.link.o.origin} did not answer within ${this.link.o.timeoutMs} ms`, undefined, this.link.o.origin));
    s?.destroy();
  }

  private onData(s: Socket, d: Buffer): void {
    if (s !== this.socket) return;
    if (!this.req || !this.parser) return void this.drop(); // bytes nobody asked for: the socket is not trusted again
    let out;
    try {
      out = this.parser.feed(d);
    } catch (err) {
      this.drop();
      return this.fail(err);
    }
    if (!out) return this.arm();
    const closeAfter = this.parser.closeAfter || out.rest !== null;
    const keepAlive = out.answer.headers['keep-alive'];
    if (keepAlive !== this.keepAliveSeen) {
      this.keepAliveSeen = keepAlive;
      const ka = /timeout=(\d+)/.exec(String(keepAlive ?? ''));
      const ms = ka ? Math.max(0, Math.min(this.link.o.keepAliveMs, Number(ka[1]) * 1000 - 1000)) : this.idleMs;
      if (ms !== this.idleMs) {
        clearTimeout(this.idleTimer); // armed with the old duration
        this.idleTimer = undefined;
        this.idleMs = ms;
      }
    }
    if (closeAfter || this.idleMs === 0) this.drop();
    else if (this.idleTimer) this.idleTimer.refresh();
    else this.idleTimer = setTimeout(() => !this.req && this.drop(), this.idleMs).unref();
    this.finish(out.answer);
  }

  private onClose(s: Socket): void {
    if (s !== this.socket) return;
    this.socket = null;
    if (!this.req) return;
    const answer = this.parser?.end();
    if (answer) return this.finish(answer);
    const req = this.req;
    // A kept-alive socket the BMC closed as we reused it: nothing of the answer came, so the
    // request never reached it. A GET is sent again once on a new socket (what browsers do).
    if (this.reused && !this.parser?.started && !req.resent && req.method === 'GET') {
      req.resent = true;
      return this.run(req);
    }
    const what = this.parser?.started ? 'closed the connection before its answer was complete' : 'closed the connection without answering';
    this.fail(new RedfishError('RF_CONNECT', `cannot reach BMC ${this.link.o.origin}: it ${what}`, undefined, this.link.o.origin));
  }

  stopTimers(): void {
    clearTimeout(this.timer);
    clearTimeout(this.idleTimer);
    this.timer = this.idleTimer = undefined;
  }

  /** Closes the socket (idle timeout, protocol error, Connection: close, link closed). */
  drop(): void {
    const s = this.socket;
    this.socket = null;
    s?.destroy();
  }

  private finish(answer: Exchange): void {
    const req = this.req!;
    this.req = null;
    this.parser = null;
    req.resolve(answer);
    this.link.next();
  }

  fail(err: unknown): void {
    const req = this.req;
    this.req = null;
    this.parser = null;
    req?.reject(err);
    this.link.next();
  }
}

/** Header lines for exchange(); a value holding a line break (header injection) is refused. */
export function headerLines(h: Record<string, string>): string {
  let out = '';
  for (const k in h) {
    const v = h[k]!;
    if (!VALUE_OK.test(v) || !PATH_OK.test(k)) throw new RedfishError('RF_PROTOCOL', `header ${k.replace(/[^\x21-\x7e]/g, '?')} holds a line break or control character; not sent`);
    out += `${k}: ${v}\r\n`;
  }
  return out;
}

export class BmcLink {
  private readonly conns: Conn[] = [];
  private readonly queue: Pending[] = [];
  private readonly host: string;
  /** The last GET's bytes (a sweep sends a BMC the same request each time: see last-of.ts). */
  private readonly lastGet = new LastOf((path: string, lines: string) => `${this.head('GET', path, lines)}\r\n`);
  closed = false;

  constructor(
    readonly o: LinkOptions,
    readonly owner: SocketOwner,
  ) {
    const u = new URL(o.origin);
    this.host = u.host;
  }

  /**
   * One request; resolves with the whole answer, rejects with a RedfishError. `lines`: header
   * lines as headerLines() made them (built once per session by the client, not per request).
   */
  exchange(method: string, path: string, lines: string, body?: string): Promise<Exchange> {
    if (this.closed) return Promise.reject(new RedfishError('RF_CONNECT', `the link to BMC ${this.o.origin} is closed`, undefined, this.o.origin));
    if (!PATH_OK.test(path)) return Promise.reject(new RedfishError('RF_PROTOCOL', `refusing to send a request path with spaces or control characters to BMC ${this.o.origin}`, undefined, this.o.origin));
    let data: Buffer | string;
    if (method === 'GET' && body === undefined) data = this.lastGet.get(path, lines);
    else if (body === undefined) data = `${this.head(method, path, lines)}\r\n`;
    else {
      const b = Buffer.from(body, 'utf8');
      data = Buffer.concat([Buffer.from(`${this.head(method, path, lines)}Content-Length: ${b.length}\r\n\r\n`, 'latin1'), b]);
    }
    return new Promise((resolve, reject) => {
      this.queue.push({ method, data, resolve, reject, resent: false });
      this.next();
    });
  }

  /** Request line, Host and the given header lines (the blank line ending the head not included). */
  private head(method: string, path: string, lines: string): string {
    return `${method} ${path} HTTP/1.1\r\nHost: ${this.host}\r\n${lines}`;
  }

  /** Hands queued requests to free sockets (a new socket while under `connections`). */
  next(): void {
    while (this.queue.length) {
      let c = this.conns.find((x) => !x.busy);
      if (!c && this.conns.length < Math.max(1, this.o.connections)) this.conns.push((c = new Conn(this)));
      if (!c) return;
      c.run(this.queue.shift()!);
    }
  }

  /** Closes every socket; queued and in-flight requests fail. */
  async close(): Promise<void> {
    this.closed = true;
    const gone = new RedfishError('RF_CONNECT', `the link to BMC ${this.o.origin} was closed`, undefined, this.o.origin);
    for (const q of this.queue.splice(0)) q.reject(gone);
    for (const c of this.conns) {
      c.drop();
      if (c.busy) c.fail(gone);
      c.stopTimers();
    }
  }
}
