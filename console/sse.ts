/**
 * The live stream: Server-Sent Events read with fetch (EventSource cannot send the token header),
 * resumed with Last-Event-ID after any break, reconnecting with jittered backoff so a restarted
 * conductor is not met by every browser in the same second.
 */
import { authHeaders } from './api.js';

export interface StreamHandlers {
  event(name: string, data: string): void;
  state(s: 'live' | 'reconnecting'): void;
  /** The server cannot continue from our id: reload the snapshot, then reconnect from its id. */
  reset(): Promise<string>;
}

export function openStream(firstId: string, h: StreamHandlers): { close(): void; bytes(): number } {
  let lastId = firstId;
  let closed = false;
  let attempt = 0;
  let bytes = 0;
  let ctrl: AbortController | undefined;

  const run = async (): Promise<void> => {
    while (!closed) {
      ctrl = new AbortController();
      let reset = false;
      try {
        const res = await fetch('/console/api/events', { headers: { 'last-event-id': lastId, ...authHeaders() }, credentials: 'same-origin', signal: ctrl.signal });
        if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          bytes += value.length;
          buf += value;
          let cut: number;
          while ((cut = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, cut);
            buf = buf.slice(cut + 2);
            let name = 'message';
            let data = '';
            for (const line of block.split('\n')) {
              if (line.startsWith('id: ')) lastId = line.slice(4);
              else if (line.startsWith('event: ')) name = line.slice(7);
              else if (line.startsWith('data: ')) data += line.slice(6);
            }
            if (name === 'reset') reset = true;
            else if (data) {
              if (name === 'hello') {
                attempt = 0;
                h.state('live');
              }
              h.event(name, data);
            }
          }
        }
      } catch {
        // dropped: reconnect below
      }
      if (closed) return;
      if (reset) {
        lastId = await h.reset().catch(() => lastId);
        continue;
      }
      h.state('reconnecting');
      attempt++;
      const base = Math.min(10_000, 500 * 2 ** Math.min(attempt, 5));
      await new Promise((r) => setTimeout(r, base / 2 + Math.random() * base));
    }
  };
  void run();
  return {
    close() {
      closed = true;
      ctrl?.abort();
    },
    bytes: () => bytes,
  };
}
