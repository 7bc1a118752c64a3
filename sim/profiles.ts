/**
 * BMC behaviour profiles. A profile gives ranges; each BMC draws its own values from them with its
 * seeded RNG, so a fleet is varied but identical across runs with the same seed.
 */
import { z } from 'zod';
import { between, type Rng } from './rng.js';

const range = z.tuple([z.number().min(0), z.number().min(0)]).refine(([a, b]) => a <= b, 'range must be [low, high] with low <= high');
const fraction = z.number().min(0).max(1);

export const profileSchema = z.strictObject({
  name: z.string(),
  /** Per-request latency, ms, by request kind. */
  latency_ms: z.strictObject({ get: range, login: range, action: range }),
  /** Max concurrent sessions per BMC (drawn per BMC). */
  max_sessions: range,
  /** Session idle timeout, seconds (drawn per BMC). */
  session_timeout_s: range,
  /** Max requests in flight per BMC; beyond it: queue (bounded) or 503. */
  max_concurrent: range,
  overload: z.enum(['queue', '503']),
  queue_limit: z.number().int().min(0),
  /** Delay before a power change lands, ms. */
  power_delay_ms: range,
  /** Firmware update task duration, ms. */
  firmware_update_ms: range,
  /** Fractions of the fleet with a standing fault. */
  black_hole_fraction: fraction,
  slow_fraction: fraction,
  slow_factor: z.number().min(1),
  flapping_fraction: fraction,
  /** Flapping BMCs are down for down_s out of every period_s. */
  flap: z.strictObject({ period_s: z.number().positive(), down_s: z.number().min(0) }),
  /** BMCs in a 5xx storm, and the share of their requests that fail. */
  storm_fraction: fraction,
  storm_error_rate: fraction,
  /** Random health changes per BMC per hour. */
  health_changes_per_hour: z.number().min(0),
  /** Whether Basic auth is accepted besides sessions. */
  basic_auth: z.boolean(),
  /**
   * Whether the service has a SessionService. Stock sushy-tools has none: Basic auth on every
   * request, no session to log into (so basic_auth must then be true).
   */
  session_service: z.boolean().default(true),
}).refine((p) => p.session_service || p.basic_auth, { message: 'a profile without a SessionService must accept Basic auth', path: ['basic_auth'] });
export type Profile = z.output<typeof profileSchema>;

export const PROFILES: Record<'ideal' | 'realistic' | 'hostile', Profile> = {
  ideal: {
    name: 'ideal',
    latency_ms: { get: [0, 0], login: [0, 0], action: [0, 0] },
    max_sessions: [1000, 1000],
    session_timeout_s: [3600, 3600],
    max_concurrent: [1000, 1000],
    overload: 'queue',
    queue_limit: 10_000,
    power_delay_ms: [0, 0],
    firmware_update_ms: [2000, 2000],
    black_hole_fraction: 0,
    slow_fraction: 0,
    slow_factor: 1,
    flapping_fraction: 0,
    flap: { period_s: 60, down_s: 0 },
    storm_fraction: 0,
    storm_error_rate: 0,
    health_changes_per_hour: 0,
    basic_auth: true,
    session_service: true,
  },
  // Figures from the field (ironic-facts §8.3, peers.md): 50–300 ms GETs, 1–3 s logins, a session
  // cap of 4–8 (iDRAC can be set as low as 8), power changes landing 1–11 s later (sushy-tools).
  realistic: {
    name: 'realistic',
    latency_ms: { get: [50, 300], login: [1000, 3000], action: [200, 800] },
    max_sessions: [4, 8],
    session_timeout_s: [1800, 1800],
    max_concurrent: [2, 4],
    overload: 'queue',
    queue_limit: 32,
    power_delay_ms: [1000, 11000],
    firmware_update_ms: [20_000, 60_000],
    black_hole_fraction: 0,
    slow_fraction: 0.01,
    slow_factor: 5,
    flapping_fraction: 0.002,
    flap: { period_s: 120, down_s: 20 },
    storm_fraction: 0.005,
    storm_error_rate: 0.2,
    health_changes_per_hour: 0.05,
    basic_auth: true,
    session_service: true,
  },
  hostile: {
    name: 'hostile',
    latency_ms: { get: [200, 2000], login: [2000, 8000], action: [500, 3000] },
    max_sessions: [2, 4],
    session_timeout_s: [120, 300],
    max_concurrent: [1, 2],
    overload: '503',
    queue_limit: 0,
    power_delay_ms: [3000, 30000],
    firmware_update_ms: [60_000, 300_000],
    black_hole_fraction: 0.02,
    slow_fraction: 0.05,
    slow_factor: 10,
    flapping_fraction: 0.03,
    flap: { period_s: 60, down_s: 20 },
    storm_fraction: 0.1,
    storm_error_rate: 0.3,
    health_changes_per_hour: 2,
    basic_auth: false,
    session_service: true,
  },
};

export type ProfileName = keyof typeof PROFILES;

/** Resolve a profile name plus optional JSON overrides (deep for latency/flap). */
export function resolveProfile(name: string, overrides: Record<string, unknown> = {}): Profile {
  const base = PROFILES[name as ProfileName];
  if (!base) throw new Error(`profile: unknown profile "${name}"; expected one of ${Object.keys(PROFILES).join(', ')}`);
  const merged = {
    ...base,
    ...overrides,
    latency_ms: { ...base.latency_ms, ...((overrides.latency_ms as object) ?? {}) },
    flap: { ...base.flap, ...((overrides.flap as object) ?? {}) },
    name: name + (Object.keys(overrides).length ? '+overrides' : ''),
  };
  const r = profileSchema.safeParse(merged);
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw new Error(`profile override ${i.path.join('.')}: ${i.message}`);
  }
  return r.data;
}

/** What one BMC drew from its profile. */
export interface BmcTraits {
  maxSessions: number;
  sessionTimeoutS: number;
  maxConcurrent: number;
  blackHole: boolean;
  slowFactor: number;
  flapping: boolean;
  flapPhaseS: number;
  storm: boolean;
}

export function drawTraits(p: Profile, rng: Rng): BmcTraits {
  return {
    maxSessions: Math.round(between(rng, p.max_sessions)),
    sessionTimeoutS: Math.round(between(rng, p.session_timeout_s)),
    maxConcurrent: Math.max(1, Math.round(between(rng, p.max_concurrent))),
    blackHole: rng() < p.black_hole_fraction,
    slowFactor: rng() < p.slow_fraction ? p.slow_factor : 1,
    flapping: rng() < p.flapping_fraction,
    flapPhaseS: rng() * p.flap.period_s,
    storm: rng() < p.storm_fraction,
  };
}
