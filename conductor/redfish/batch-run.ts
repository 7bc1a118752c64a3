/**
 * Runs one operation per node of a batch (a sweep: one GET per BMC) inside a BMC thread, under one
 * deadline for the whole batch and with at most `window` requests young in flight.
 *
 * Why a window: a batch started all at once keeps every request's objects (promises, parser,
 * answer, result) alive for the whole sweep, so they survive the thread's scavenges, get promoted,
 * and the old generation's collector (V8's helper threads, on the conductor's CPU) pays for them;
 * at 10,000 BMCs that collector was a third of the conductor's CPU. Through a window they die
 * young. Why "young": a request older than `slowMs` stops counting against the window, so BMCs
 * that hang until their timeout never hold up the rest of the fleet. One timer for the deadline and
 * one for ageing per batch, not a timer per node.
 */
import type { OpError } from './errors.js';

export interface BatchRunOptions<T = unknown> {
  /** Past this (ms from the start of the batch), nodes still waiting report `lateError`. */
  deadlineMs: number;
  /** Requests started and younger than slowMs, at most. */
  window: number;
  /** A request this old (ms) leaves the window (it goes on; another starts). */
  slowMs: number;
  /**
   * Whether a node's outcome is kept for the result (default: all). A sweep drops reads that match
   * the recorded state as they come, so they die young instead of living until the batch ends.
   */
  keep?: (i: number, ok: boolean, value: T | undefined) => boolean;
}

export interface BatchOutcome<T> {
  uuid: string;
  ok: boolean;
  value?: T;
  error?: OpError;
  /** From this node's start (not the batch's): queueing in the window is not the BMC's latency. */
  ms: number;
}

/**
 * `start(i)` returns the node's operation, or the error that stops it before it starts (no target).
 * A node still running at the deadline reports `lateError(i)`; its operation goes on in the
 * background and its outcome is dropped (the client's breaker still hears of it). The result holds
 * the kept outcomes in node order.
 */
export function runBatch<T>(
  nodes: ReadonlyArray<{ uuid: string }>,
  o: BatchRunOptions<T>,
  start: (i: number) => Promise<T> | OpError,
  errorOf: (err: unknown) => OpError,
  lateError: (i: number) => OpError,
): Promise<Array<BatchOutcome<T>>> {
  const n = nodes.length;
  const out: Array<BatchOutcome<T>> = new Array(n);
  if (!n) return Promise.resolve(out);
  /** 1 once a node's outcome is in (kept or not): a late or second answer is ignored. */
  const recorded = new Uint8Array(n);
  const keep = o.keep;
  const window = Math.max(1, o.window);
  const begun = new Float64Array(n);
  /** 1 while a started node still counts against the window. */
  const counted = new Uint8Array(n);
  /** Started nodes in start order (hence oldest first); `head` is the next one to age out. */
  const started = new Int32Array(n);
  let startedCount = 0;
  let head = 0;
  let inWindow = 0;
  let next = 0;
  let pending = n;
  let done = false;
  return new Promise((resolve) => {
    const finish = (): void => {
      done = true;
      clearTimeout(deadline);
      clearInterval(ager);
      resolve(keep ? out.filter((x) => x !== undefined) : out);
    };
    const deadline = setTimeout(() => {
      for (let i = 0; i < n; i++) if (!recorded[i]) out[i] = { uuid: nodes[i]!.uuid, ok: false, error: lateError(i), ms: o.deadlineMs };
      finish();
    }, o.deadlineMs);
    // Only needed when the window can fill up; with everything started, nothing is left to start.
    const ager = setInterval(() => {
      const old = performance.now() - o.slowMs;
      while (head < startedCount && begun[started[head]!]! <= old) {
        const i = started[head++]!;
        if (counted[i]) {
          counted[i] = 0;
          inWindow--;
        }
      }
      fill();
    }, Math.max(10, o.slowMs / 2));
    /** Records a node's outcome; true once the batch is complete. */
    const record = (i: number, ok: boolean, value: T | undefined, error: OpError | undefined): boolean => {
      if (done || recorded[i]) return done;
      recorded[i] = 1;
      if (!keep || keep(i, ok, value)) out[i] = { uuid: nodes[i]!.uuid, ok, value, error, ms: performance.now() - begun[i]! };
      if (--pending === 0) finish();
      return done;
    };
    const settle = (i: number, ok: boolean, value: T | undefined, error: OpError | undefined): void => {
      if (counted[i]) {
        counted[i] = 0;
        inWindow--;
      }
      if (!record(i, ok, value, error)) fill();
    };
    const fill = (): void => {
      while (inWindow < window && next < n && !done) {
        const i = next++;
        begun[i] = performance.now();
        let p: Promise<T> | OpError;
        try {
          p = start(i);
        } catch (err) {
          p = errorOf(err);
        }
        if (!(p instanceof Promise)) {
          record(i, false, undefined, p);
          continue;
        }
        counted[i] = 1;
        inWindow++;
        started[startedCount++] = i;
        p.then(
          (value) => settle(i, true, value, undefined),
          (err) => settle(i, false, undefined, errorOf(err)),
        );
      }
      if (next >= n) clearInterval(ager);
    };
    fill();
  });
}
