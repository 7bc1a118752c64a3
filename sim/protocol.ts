/** IPC messages between the simulator's controller and its worker processes. */
import { z } from 'zod';
import type { Profile } from './profiles.js';

export const faultRequestSchema = z.strictObject({
  index: z.number().int().min(0),
  /** Accept requests and never answer. */
  black_hole: z.boolean().optional(),
  /** Reset every connection (BMC unreachable). */
  down: z.boolean().optional(),
  /** Multiply latency. */
  slow_factor: z.number().min(1).max(1000).optional(),
  /** Answer this share of requests with 500/503 for duration_s. */
  storm: z.strictObject({ error_rate: z.number().min(0).max(1), duration_s: z.number().min(0).max(86_400) }).optional(),
  /** Drop every session now (clients get 401 on next use). */
  expire_sessions: z.boolean().optional(),
  health: z.enum(['OK', 'Warning', 'Critical']).optional(),
  /** Kill the machine's ramdisk agent (process crash: power stays on, the stream drops). */
  agent_crash: z.boolean().optional(),
  /** Lower (or raise) the BMC's session table size (a BMC whose other users hold sessions). */
  max_sessions: z.number().int().min(1).max(1000).optional(),
  /** Flip power out of band (someone pressed the button). */
  power: z.enum(['on', 'off']).optional(),
  /**
   * Scripted answers for the next matching requests (replaces any script left): the first rule
   * whose method and path match answers instead of the BMC, `times` times. `after_apply`: the
   * request takes effect first and then the answer is lost or an error (a reset that landed, then
   * HTTP 500). `reset`: the connection is destroyed instead of answered; `body_bytes` and
   * `truncate` answer with a malformed body instead.
   */
  script: z
    .array(
      z.strictObject({
        method: z.enum(['GET', 'POST', 'PATCH', 'DELETE']).optional(),
        /** A substring of the request path (e.g. "ComputerSystem.Reset", "SessionService/Sessions"). */
        path: z.string().min(1).max(200).optional(),
        status: z.number().int().min(400).max(599).optional(),
        retry_after_s: z.number().int().min(0).max(3600).optional(),
        reset: z.boolean().optional(),
        /** Answer 200 with a JSON document of this many bytes (a BMC that sends far too much). */
        body_bytes: z.number().int().min(2).max(64 << 20).optional(),
        /** Promise a body in Content-Length, send half of it, then close the connection. */
        truncate: z.boolean().optional(),
        /** Send the answer in chunked transfer coding, a few bytes per chunk, then close the connection. */
        chunked: z.boolean().optional(),
        after_apply: z.boolean().optional(),
        times: z.number().int().min(1).max(10_000).default(1),
      }),
    )
    .max(32)
    .optional(),
});
export type FaultRequest = z.infer<typeof faultRequestSchema>;

export type ParentMessage =
  | {
      type: 'init';
      id: number;
      seed: string;
      profile: Profile;
      indexes: number[];
      port: number;
      single?: { host: string; port: number };
      tls?: { cert: string; key: string };
      initialPower: 'on' | 'off' | 'mixed';
      /** Simulated ramdisk agents booted by power-on. */
      agents?: { conductor: string; bootDelayMs: number; diskDir: string; diskBytes: number; deployStepPriorities: Record<string, number> };
      /** Machines boot a qemu VM running the built deploy ramdisk instead of an in-process agent. */
      qemu?: { kernel: string; initramfs: string; diskDir: string; disks: number; diskBytes: number; memoryMiB: number; forwardPorts: number[]; append?: string };
    }
  | { type: 'stats'; id: number }
  /** One counter of every BMC of the shard, as [index, value] pairs (fleet-wide views without N calls). */
  | { type: 'counter'; id: number; field: string }
  | { type: 'bmc'; id: number; index: number }
  | { type: 'fault'; id: number; fault: FaultRequest }
  | { type: 'reset-counters'; id: number }
  | { type: 'stop'; id: number };

export type WorkerMessage = { type: 'reply'; id: number; ok: true; result: unknown } | { type: 'reply'; id: number; ok: false; error: string };
