/**
 * Conductor configuration: file (YAML or JSON) + environment, validated once by zod into a
 * compiled, fully-defaulted config. Unknown keys are errors (a typo must not be silently ignored).
 *
 * Environment overrides: IRONFLEET_<SECTION>__<KEY>=value, e.g. IRONFLEET_API__PORT=6385,
 * IRONFLEET_DATABASE__URL=postgres://... Values are parsed as JSON when they parse, else strings.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { z } from 'zod';
import { parse as parseYaml } from 'yaml';
import { ConfigError } from '../shared/errors.js';
import { describeZodError } from '../shared/inventory.js';
import { PROTO_KEYS } from '../shared/safe-json.js';
import { isLoopbackHost } from '../shared/net.js';

const listen = { host: z.string().min(1), port: z.number().int().min(0).max(65535) };

export const configSchema = z.strictObject({
  /** Name of this conductor; recorded as the lock holder. @default os.hostname() */
  host: z.string().min(1).max(255).default(os.hostname()),
  /** @default '' */
  conductor_group: z.string().max(255).regex(/^[a-zA-Z0-9_\-.]*$/).default(''),
  database: z
    .strictObject({
      /** sqlite:///path/to.db, sqlite::memory:, or postgres://user:pass@host:port/db */
      url: z.string().min(1).default('sqlite:///var/lib/ironfleet/ironfleet.db'),
      /** @default 10 */
      pool_size: z.number().int().min(1).max(200).default(10),
      /** SQLite: wait this long for another writer's lock before SQLITE_BUSY (then retried with backoff). @default 5000 */
      busy_timeout_ms: z.number().int().min(0).max(600_000).default(5000),
    })
    .prefault({}),
  api: z
    .strictObject({
      ...listen,
      host: listen.host.default('127.0.0.1'),
      port: listen.port.default(6385),
      /** Public base URL used in links; derived from host:port when empty. */
      public_url: z.string().default(''),
      auth: z
        .strictObject({
          strategy: z.enum(['noauth', 'token', 'http_basic']).default('noauth'),
          tokens: z.array(z.string().min(16)).default([]),
          users: z.record(z.string().min(1), z.string().min(8)).default({}),
        })
        .prefault({}),
      /** noauth on a non-loopback address is refused unless this is set. @default false */
      allow_insecure_noauth: z.boolean().default(false),
      /** /metrics (node names and uuids) needs the API's credentials. @default true unless api.auth.strategy is noauth */
      metrics_auth: z.boolean().optional(),
      /** The web console at /console/ (same auth as the API). @default true */
      console: z.boolean().default(true),
      /** Bytes per second the console's live stream may send one browser (changes beyond it are coalesced, not queued). @default 262144 */
      console_stream_bytes_per_s: z.number().int().min(16_384).max(64 * 1024 * 1024).default(256 * 1024),
    })
    .prefault({}),
  agent: z
    .strictObject({
      host: listen.host.default('127.0.0.1'),
      port: listen.port.default(6388),
      tls: z.strictObject({ cert_file: z.string().min(1), key_file: z.string().min(1) }).optional(),
      /** Serve the agent endpoint in plaintext on a non-loopback address (agents run erase/write as root). @default false */
      allow_insecure: z.boolean().default(false),
      /** @default 10 */
      heartbeat_interval_s: z.number().int().min(1).max(300).default(10),
      /** An agent silent for this long is considered gone. @default 300 */
      heartbeat_timeout_s: z.number().int().min(5).max(3600).default(300),
      /**
       * An agent that drops its stream while running a command a flow waits on has this long to
       * reconnect from the same boot (its journal replays the result) before the flow fails;
       * reconnecting from a new boot fails it at once. @default 60
       */
      command_lost_grace_s: z.number().int().min(1).max(3600).default(60),
      /** Max unacknowledged progress/log messages per stream. @default 64 */
      window: z.number().int().min(1).max(10_000).default(64),
      /** @default 1000 */
      progress_interval_ms: z.number().int().min(50).max(60_000).default(1000),
      /** @default false */
      md5_allowed: z.boolean().default(false),
      /** Agent last-seen timestamps are flushed to the DB in batches this often. @default 5000 */
      liveness_flush_ms: z.number().int().min(100).max(600_000).default(5000),
    })
    .prefault({}),
  conductor: z
    .strictObject({
      /** Retries when a node lock is held by someone else. @default 3 */
      node_locked_retry_attempts: z.number().int().min(0).max(100).default(3),
      /** @default 1000 */
      node_locked_retry_interval_ms: z.number().int().min(10).max(60_000).default(1000),
      /** Finished deferred actions and agent commands are deleted this many days after they ended. @default 14 */
      retention_days: z.number().min(0.001).max(3650).default(14),
      /** Node history entries kept per node. @default 300 */
      node_history_max_entries: z.number().int().min(1).max(100_000).default(300),
      /** Run automated cleaning (the agent's steps with priority > 0) on provide and undeploy. @default true */
      automated_clean: z.boolean().default(true),
      /** Reuse a connected agent instead of rebooting into the ramdisk; keep it under a lease. @default true */
      fast_track: z.boolean().default(true),
      /** Lease of an idle fast-track agent; then power off (active: reboot into the instance). @default 300 */
      fast_track_timeout_s: z.number().int().min(1).max(86_400).default(300),
      /** Wait for the agent to call back / answer a command. @default 1800 */
      deploy_callback_timeout_s: z.number().int().min(1).max(86_400).default(1800),
      /** Wait for a BMC power transition. @default 60 */
      power_state_change_timeout_s: z.number().int().min(1).max(3600).default(60),
      /** Override the agent's erase_devices priority (0 disables it in automated cleaning); null = agent's. @default null */
      erase_devices_priority: z.number().int().min(0).max(1000).nullable().default(null),
      /** Override erase_devices_metadata's priority; null = agent's. @default null */
      erase_devices_metadata_priority: z.number().int().min(0).max(1000).nullable().default(null),
      /** Nodes deploying (deploying, wait call-back, deploy hold) at once; more are refused with 503, as Ironic. @default 250 */
      max_concurrent_deploy: z.number().int().min(1).max(1_000_000).default(250),
      /** Nodes cleaning (cleaning, clean wait, clean hold) at once; more provide/clean/undeploy requests get 503. @default 50 */
      max_concurrent_clean: z.number().int().min(1).max(1_000_000).default(50),
      /** Deferred actions run at once. @default 64 */
      deferred_concurrency: z.number().int().min(1).max(4096).default(64),
      /** SIGTERM: how long in-flight work may take before the process exits. @default 60 */
      graceful_shutdown_timeout_s: z.number().int().min(0).max(86_400).default(60),
      /** SIGUSR2 drain: how long to wait for node locks to be released. @default 1800 */
      drain_shutdown_timeout_s: z.number().int().min(0).max(86_400).default(1800),
      /** Seconds between this conductor's heartbeats in the conductors table. @default 5 */
      heartbeat_interval_s: z.number().min(0.2).max(300).default(5),
      /**
       * A conductor whose heartbeat (on the database's clock) is older than this is offline and its
       * nodes are taken over. Lower = faster takeover; too low and a GC pause or a slow database
       * makes a live conductor look dead (it then stops owning nodes until it heartbeats again).
       * @default 10
       */
      heartbeat_timeout_s: z.number().min(0.5).max(3600).default(10),
    })
    .prefault({}),
  redfish: z
    .strictObject({
      /** BMC worker threads (piscina shards). @default number of CPUs */
      pool_size: z.number().int().min(1).max(64).default(os.availableParallelism()),
      /** Deadline per request phase (headers, body) once the request is on the wire. @default 30000 */
      timeout_ms: z.number().int().min(100).max(300_000).default(30_000),
      /** @default 5000 */
      connect_timeout_ms: z.number().int().min(100).max(120_000).default(5_000),
      /**
       * Connections (and so requests in flight) per BMC. One kept-alive socket per BMC is what a
       * fleet of 20,000 can afford in descriptors and memory; raise it for BMCs that serve parallel
       * requests well. @default 1
       */
      max_inflight_per_bmc: z.number().int().min(1).max(16).default(1),
      /**
       * An idle BMC socket is closed after this many seconds (sooner if the BMC's Keep-Alive says so;
       * bmcweb keeps idle connections 15 min). Above power_sync.interval_s the sweeps reuse the
       * sockets; below it every sweep reconnects. Measured (bench/README.md, scale): a kept-alive TLS
       * socket costs ~50 KiB RSS in Node, but closing them between sweeps freed little of it (the
       * allocator keeps it) while each reconnect, TLS resumed, cost ~1.2 ms of CPU — so the default
       * outlasts the default sweep interval (60 s). @default 90
       */
      keep_alive_s: z.number().min(1).max(3600).default(90),
      /**
       * Power/health reads each BMC thread keeps in flight at once during a sweep (a read slower than
       * 250 ms stops counting, so dead BMCs hold up nobody); 0 = every read at once. A window lets
       * each read's garbage die young instead of surviving the whole sweep into the old generation:
       * see bench/README.md, scale. @default 512
       */
      sweep_window: z.number().int().min(0).max(1_000_000).default(512),
      /** Consecutive unreachable failures that open a BMC's circuit breaker. @default 2 */
      breaker_threshold: z.number().int().min(1).max(100).default(2),
      /** @default 30000 */
      breaker_open_ms: z.number().int().min(100).max(3_600_000).default(30_000),
      /** One deadline per BMC operation (power action, boot device, firmware, a power read for a flow): transient answers are retried until then. */
      operation_deadline_s: z.number().int().min(1).max(3600).default(60),
      /**
       * BMC sockets the conductor may hold, all worker threads together; beyond it the most recently
       * idle BMC's keep-alive sockets are closed and a connect waits rather than fail with EMFILE.
       * 0 = the open-files limit (`ulimit -n`, systemd LimitNOFILE) minus fd_reserve. @default 0
       */
      max_bmc_sockets: z.number().int().min(0).max(10_000_000).default(0),
      /**
       * Descriptors never given to BMC sockets: the API's clients, agent streams, the database, logs.
       * 0 = a quarter of the open-files limit (at least 64). @default 0
       */
      fd_reserve: z.number().int().min(0).max(10_000_000).default(0),
    })
    .prefault({}),
  power_sync: z
    .strictObject({
      /** Seconds between sweeps; 0 disables. @default 60 */
      interval_s: z.number().min(0).max(86_400).default(60),
      /** Consecutive failures before maintenance (fault "power failure"). @default 3 */
      max_retries: z.number().int().min(1).max(100).default(3),
      /** true: push the DB state to the hardware (Ironic's force_power_state_during_sync); false: record the hardware state. @default true */
      force_power_state: z.boolean().default(true),
      /** A sweep never waits longer than this for any BMC (the read goes on in the background). @default 30000 */
      sweep_deadline_ms: z.number().int().min(100).max(600_000).default(30_000),
      /** Read Status.Health in the same GET and record changes. @default true */
      health_monitoring: z.boolean().default(true),
    })
    .prefault({}),
  sensors: z
    .strictObject({
      /** Seconds in which every node's sensors are read once (staggered); 0 disables. @default 0 */
      interval_s: z.number().min(0).max(86_400).default(0),
      /** Read sensors of nodes that are not active too. @default true */
      include_undeployed: z.boolean().default(true),
    })
    .prefault({}),
  firmware: z
    .strictObject({
      /** How often BMC firmware tasks are polled. @default 5000 */
      poll_interval_ms: z.number().int().min(100).max(600_000).default(5000),
    })
    .prefault({}),
  security: z
    .strictObject({
      /**
       * AES-256-GCM keys sealing secrets at rest (BMC passwords, URL credentials, session tokens);
       * generated 0600 on first start when absent. Every conductor sharing a database needs the
       * same file. @default secrets.key next to a SQLite database, else /var/lib/ironfleet/secrets.key
       */
      secrets_key_file: z.string().min(1).optional(),
    })
    .prefault({}),
  logging: z
    .strictObject({
      level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
    })
    .prefault({}),
});

export type ConductorConfig = z.output<typeof configSchema>;
export type ConductorConfigInput = z.input<typeof configSchema>;

const ENV_PREFIX = 'IRONFLEET_';

function envOverrides(env: NodeJS.ProcessEnv): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || raw === undefined) continue;
    const path = name.slice(ENV_PREFIX.length).toLowerCase().split('__');
    if (path.some((p) => p === '')) continue;
    if (path.some((p) => PROTO_KEYS.has(p))) throw new ConfigError(`environment variable ${name}: "${path.find((p) => PROTO_KEYS.has(p))}" is not a configuration key`, name);
    let value: unknown = raw;
    try {
      value = JSON.parse(raw);
    } catch {
      /* keep as string */
    }
    let cursor = out;
    for (const seg of path.slice(0, -1)) {
      cursor[seg] = typeof cursor[seg] === 'object' && cursor[seg] !== null ? cursor[seg] : {};
      cursor = cursor[seg] as Record<string, unknown>;
    }
    cursor[path[path.length - 1]!] = value;
  }
  return out;
}

function deepMerge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (PROTO_KEYS.has(k)) throw new ConfigError(`invalid configuration: "${k}" is not a configuration key`, k);
    const b = out[k];
    out[k] =
      v && typeof v === 'object' && !Array.isArray(v) && b && typeof b === 'object' && !Array.isArray(b)
        ? deepMerge(b as Record<string, unknown>, v as Record<string, unknown>)
        : v;
  }
  return out;
}

/** Validate a raw config object (already merged) into the compiled config. */
export function compileConfig(raw: unknown): ConductorConfig {
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const keys = issue.code === 'unrecognized_keys' ? [...issue.path, ...issue.keys] : issue.path;
    const key = keys.map(String).join('.') || '(root)';
    throw new ConfigError(`invalid configuration: ${describeZodError(parsed.error)}`, key);
  }
  const cfg = parsed.data;
  const loopback = isLoopbackHost(cfg.api.host);
  if (cfg.api.auth.strategy === 'noauth' && !loopback && !cfg.api.allow_insecure_noauth) {
    throw new ConfigError(
      `invalid configuration: api.auth.strategy is noauth but api.host ${cfg.api.host} is not loopback; set api.auth or api.allow_insecure_noauth`,
      'api.auth.strategy',
    );
  }
  if (!cfg.agent.tls && !isLoopbackHost(cfg.agent.host) && !cfg.agent.allow_insecure) {
    throw new ConfigError(
      `invalid configuration: agent.host ${cfg.agent.host} is not loopback and agent.tls is not set: agents would receive erase/write commands in plaintext; set agent.tls (cert_file, key_file) or agent.allow_insecure`,
      'agent.tls',
    );
  }
  cfg.api.metrics_auth ??= cfg.api.auth.strategy !== 'noauth';
  if (cfg.api.metrics_auth && cfg.api.auth.strategy === 'noauth') {
    throw new ConfigError('invalid configuration: api.metrics_auth needs an api.auth.strategy other than noauth', 'api.metrics_auth');
  }
  if (cfg.conductor.heartbeat_timeout_s < 2 * cfg.conductor.heartbeat_interval_s) {
    throw new ConfigError('invalid configuration: conductor.heartbeat_timeout_s must be at least twice conductor.heartbeat_interval_s (one late heartbeat must not look like a death)', 'conductor.heartbeat_timeout_s');
  }
  if (cfg.api.auth.strategy === 'token' && cfg.api.auth.tokens.length === 0) {
    throw new ConfigError('invalid configuration: api.auth.tokens must list at least one token for strategy token', 'api.auth.tokens');
  }
  if (cfg.api.auth.strategy === 'http_basic' && Object.keys(cfg.api.auth.users).length === 0) {
    throw new ConfigError('invalid configuration: api.auth.users must list at least one user for strategy http_basic', 'api.auth.users');
  }
  return cfg;
}

/** Load config from an optional file, then apply environment overrides and `overrides`. */
export function loadConfig(opts: { file?: string; env?: NodeJS.ProcessEnv; overrides?: Record<string, unknown> } = {}): ConductorConfig {
  let fromFile: Record<string, unknown> = {};
  if (opts.file) {
    let text: string;
    try {
      text = readFileSync(opts.file, 'utf8');
    } catch (err) {
      throw new ConfigError(`cannot read config file ${opts.file}: ${(err as Error).message}`, '(file)');
    }
    let doc: unknown;
    try {
      doc = parseYaml(text);
    } catch (err) {
      throw new ConfigError(`config file ${opts.file} is not valid YAML/JSON: ${(err as Error).message}`, '(file)');
    }
    if (doc !== null && doc !== undefined && (typeof doc !== 'object' || Array.isArray(doc))) {
      throw new ConfigError(`config file ${opts.file} must hold a mapping at the top level`, '(root)');
    }
    fromFile = (doc ?? {}) as Record<string, unknown>;
  }
  const merged = deepMerge(deepMerge(fromFile, envOverrides(opts.env ?? process.env)), opts.overrides ?? {});
  return compileConfig(merged);
}
