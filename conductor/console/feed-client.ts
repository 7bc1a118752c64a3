/**
 * One browser's Server-Sent Events stream. It holds the ids of the nodes this browser has not been
 * sent yet (a set, so a node that changes ten times while the browser is behind is sent once, as
 * it is now) and sends them as its byte budget allows: a token bucket of `bytesPerSecond`, and
 * nothing at all while the socket still holds `maxBufferedBytes` unsent (a slow or stalled client
 * costs the conductor one set of ids, never a growing queue of messages).
 *
 * The event id only moves forward once nothing is outstanding, so a browser that reconnects with
 * its last id is resent everything it may have missed, never less.
 */
import type { AgentProgressMessage } from '../events.js';

/** Where the stream goes (the HTTP response in the API; a buffer in tests). */
export interface SseSink {
  write(chunk: string): void;
  /** Bytes written but not yet taken by the socket. */
  buffered(): number;
  onClose(fn: () => void): void;
  end(): void;
}

export interface FeedClientOptions {
  /** Sustained bytes per second per browser; bursts up to one second's worth. */
  bytesPerSecond: number;
  /** Stop writing while the socket has this much unsent. */
  maxBufferedBytes: number;
}

const KEEPALIVE_MS = 15_000;

export class FeedClient {
  private readonly pending = new Set<number>();
  /** Earliest change time among the pending ids (the lag this browser will see). */
  private pendingSince = Infinity;
  private upTo = 0;
  private tokens: number;
  private last = Date.now();
  private lastWrite = Date.now();
  private closed = false;
  bytesSent = 0;
  eventsSent = 0;

  constructor(
    private readonly sink: SseSink,
    private readonly opts: FeedClientOptions,
    private readonly epoch: string,
    /** Current rows for ids; a number stands for a node that no longer exists. */
    private readonly rowsOf: (ids: number[]) => unknown[],
  ) {
    this.tokens = opts.bytesPerSecond;
    sink.onClose(() => (this.closed = true));
  }

  /** The snapshot this browser holds is unusable (restart, too far behind): reload it. */
  reset(): void {
    this.send('reset', '{}');
    this.sink.end();
  }

  /** Continue at `seq`, first resending the nodes changed since the browser's last id. */
  resumeAt(seq: number, ids: number[]): void {
    this.upTo = seq;
    for (const id of ids) this.pending.add(id);
    if (ids.length) this.pendingSince = Date.now();
    this.send('hello', JSON.stringify({ id: `${this.epoch}-${seq}`, resent: this.pending.size }));
  }

  add(seq: number, ids: number[], since: number): void {
    this.upTo = seq;
    for (const id of ids) this.pending.add(id);
    this.pendingSince = Math.min(this.pendingSince, since);
  }

  flush(now: number, progress: AgentProgressMessage[]): void {
    if (this.closed) return;
    this.tokens = Math.min(this.opts.bytesPerSecond, this.tokens + ((now - this.last) * this.opts.bytesPerSecond) / 1000);
    this.last = now;
    if (this.sink.buffered() > this.opts.maxBufferedBytes) return;
    if (progress.length) this.send('progress', JSON.stringify(progress.map((p) => ({ node: p.nodeId, command: p.commandId, ...p.progress }))));
    if (this.pending.size > 0 && this.tokens > 0) this.sendRows(now);
    else if (now - this.lastWrite > KEEPALIVE_MS) this.sink.write(': keepalive\n\n');
  }

  sendPanel(panel: unknown): void {
    if (!this.closed && this.sink.buffered() <= this.opts.maxBufferedBytes) this.send('panel', JSON.stringify(panel));
  }

  end(): void {
    if (!this.closed) this.sink.end();
  }

  private sendRows(now: number): void {
    const ids: number[] = [];
    const parts: string[] = [];
    let bytes = 0;
    for (const id of this.pending) {
      const [row] = this.rowsOf([id]);
      const text = JSON.stringify(row);
      // At least one row per flush, however small the budget: progress never stops.
      if (ids.length > 0 && bytes + text.length > this.tokens) break;
      ids.push(id);
      parts.push(text);
      bytes += text.length + 1;
    }
    for (const id of ids) this.pending.delete(id);
    const done = this.pending.size === 0;
    const data = `{"t":${now},"c":${Number.isFinite(this.pendingSince) ? this.pendingSince : now},"more":${this.pending.size},"rows":[${parts.join(',')}]}`;
    if (done) this.pendingSince = Infinity;
    this.send('nodes', data, done ? `${this.epoch}-${this.upTo}` : undefined);
  }

  private send(event: string, data: string, id?: string): void {
    const chunk = `${id ? `id: ${id}\n` : ''}event: ${event}\ndata: ${data}\n\n`;
    this.sink.write(chunk);
    this.tokens -= chunk.length;
    this.bytesSent += chunk.length;
    this.eventsSent++;
    this.lastWrite = Date.now();
  }
}
