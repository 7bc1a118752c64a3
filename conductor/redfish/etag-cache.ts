/**
 * The documents a BMC client read with an ETag, per path: the next GET sends If-None-Match and a
 * 304 answers from here (no body, no JSON parse). The header line is built and checked once per
 * document, not once per request — a sweep revalidates every node's system document every time.
 */
import { headerLines } from './bmc-link.js';

export interface CachedDoc {
  etag: string;
  doc: Record<string, unknown>;
  /** The If-None-Match header line for it. */
  line: string;
}

export class EtagCache {
  private readonly docs = new Map<string, CachedDoc>();

  get(path: string): CachedDoc | undefined {
    return this.docs.get(path);
  }

  /** Keeps `doc` under `etag`; an ETag no header may carry (control characters) is not kept. */
  remember(path: string, etag: string, doc: Record<string, unknown>): void {
    let line: string;
    try {
      line = headerLines({ 'If-None-Match': etag });
    } catch {
      return;
    }
    this.docs.set(path, { etag, doc, line });
  }
}
