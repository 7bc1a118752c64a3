/**
 * In-band firmware updates. A FirmwareManager is the plugin point a vendor flash tool hooks into
 * (IPA's hardware managers play this role): it names the components it handles, reads their
 * versions and applies a payload. The payload itself is always downloaded and checksum-verified
 * here first (same rules as images: sha256/sha512, md5 only when allowed), so no plugin ever sees
 * an unverified file.
 *
 * One generic manager ships: operator-configured commands per component (`version_command`,
 * `update_command` with `{payload}` substituted), loaded from a JSON file given to the agent
 * (`--firmware-config` / `ironfleet.firmware_config=`), zod-validated.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { ConfigError } from '../shared/errors.js';
import { describeZodError } from '../shared/inventory.js';
import { writeImage, ImageWriteError } from './image-writer.js';

export class FirmwareError extends Error {
  constructor(
    readonly code: 'UNKNOWN_COMPONENT' | 'VERSION_FAILED' | 'UPDATE_FAILED' | 'PAYLOAD_FAILED' | 'CANCELLED',
    message: string,
  ) {
    super(message);
    this.name = 'FirmwareError';
  }
}

export interface FirmwareManager {
  readonly name: string;
  components(): string[];
  version(component: string, signal?: AbortSignal): Promise<string>;
  apply(component: string, payload: string, signal?: AbortSignal): Promise<void>;
}

const argv = z.array(z.string().min(1)).min(1);
export const genericFirmwareConfigSchema = z.strictObject({
  components: z.record(
    z.string().regex(/^[a-z0-9_.-]+$/i, 'component names are letters, digits, _ . -'),
    z.strictObject({
      version_command: argv,
      update_command: argv.refine((a) => a.some((x) => x.includes('{payload}')), 'must contain {payload}'),
      timeout_s: z.number().int().min(1).max(7200).default(1800),
    }),
  ),
});
export type GenericFirmwareConfig = z.output<typeof genericFirmwareConfigSchema>;

export function loadGenericFirmwareConfig(file: string): GenericFirmwareConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ConfigError(`cannot read firmware config ${file}: ${(err as Error).message}`, 'firmware_config');
  }
  const r = genericFirmwareConfigSchema.safeParse(raw);
  if (!r.success) throw new ConfigError(`invalid firmware config ${file}: ${describeZodError(r.error)}`, 'firmware_config');
  return r.data;
}

function run(cmd: string[], timeoutS: number, signal?: AbortSignal): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd[0]!, cmd.slice(1), { timeout: timeoutS * 1000, signal, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      if (!err) return resolve(stdout);
      const e = err as NodeJS.ErrnoException & { killed?: boolean };
      if (signal?.aborted) return reject(new FirmwareError('CANCELLED', `${cmd[0]} cancelled`));
      const why = e.code === 'ENOENT' ? 'not found' : e.killed ? `timed out after ${timeoutS}s` : `exit ${String(e.code)}`;
      const tail = String(stderr || stdout).trim().split('\n').slice(-3).join(' / ');
      reject(new Error(`${cmd.join(' ')} failed (${why})${tail ? `: ${tail}` : ''}`));
    });
  });
}

/** Runs operator-configured commands; the first line of version_command's output is the version. */
export class GenericCommandFirmware implements FirmwareManager {
  readonly name = 'GenericCommandFirmware';
  constructor(private readonly config: GenericFirmwareConfig) {}
  components(): string[] {
    return Object.keys(this.config.components);
  }
  async version(component: string, signal?: AbortSignal): Promise<string> {
    const c = this.config.components[component]!;
    try {
      return (await run(c.version_command, 60, signal)).trim().split('\n')[0]!.trim();
    } catch (err) {
      if (err instanceof FirmwareError) throw err;
      throw new FirmwareError('VERSION_FAILED', `reading the ${component} version: ${(err as Error).message}`);
    }
  }
  async apply(component: string, payload: string, signal?: AbortSignal): Promise<void> {
    const c = this.config.components[component]!;
    try {
      await run(c.update_command.map((a) => a.replaceAll('{payload}', payload)), c.timeout_s, signal);
    } catch (err) {
      if (err instanceof FirmwareError) throw err;
      throw new FirmwareError('UPDATE_FAILED', `updating ${component}: ${(err as Error).message}`);
    }
  }
}

export interface FirmwareUpdateRequest {
  component: string;
  url: string;
  checksum: string;
  checksum_algo?: 'sha256' | 'sha512' | 'md5';
}

export interface FirmwareUpdateResult {
  component: string;
  manager: string;
  version_before: string;
  version_after: string;
  changed: boolean;
  payload_bytes: number;
  payload_checksum: string;
}

/** Download + verify the payload, then hand it to the manager that owns the component. */
export async function updateFirmware(
  managers: FirmwareManager[],
  req: FirmwareUpdateRequest,
  o: { md5Allowed?: boolean; signal?: AbortSignal; scratchDir?: string; log?: (m: string) => void } = {},
): Promise<FirmwareUpdateResult> {
  const mgr = managers.find((m) => m.components().includes(req.component));
  if (!mgr) {
    const known = managers.flatMap((m) => m.components());
    throw new FirmwareError('UNKNOWN_COMPONENT', `no firmware manager handles component "${req.component}" (known: ${known.join(', ') || 'none configured'})`);
  }
  const dir = await mkdtemp(path.join(o.scratchDir ?? os.tmpdir(), 'ironfleet-fw-'));
  const payload = path.join(dir, 'payload.bin');
  try {
    await writeFile(payload, '');
    let written;
    try {
      written = await writeImage({ url: req.url, checksum: req.checksum, checksum_algo: req.checksum_algo, disk_format: 'raw' }, { target: payload, md5Allowed: o.md5Allowed, signal: o.signal });
    } catch (err) {
      if (err instanceof ImageWriteError) throw new FirmwareError(err.code === 'CANCELLED' ? 'CANCELLED' : 'PAYLOAD_FAILED', `firmware payload: ${err.message}`);
      throw err;
    }
    const before = await mgr.version(req.component, o.signal);
    o.log?.(`firmware ${req.component}: ${before} → applying ${path.basename(new URL(req.url).pathname)} (${written.bytes_written} bytes) with ${mgr.name}`);
    await mgr.apply(req.component, payload, o.signal);
    const after = await mgr.version(req.component, o.signal);
    return { component: req.component, manager: mgr.name, version_before: before, version_after: after, changed: before !== after, payload_bytes: written.bytes_written, payload_checksum: written.checksum };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
