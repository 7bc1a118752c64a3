/**
 * Agent entry point: settings come from flags, else from the kernel command line
 * (`ironfleet.conductor=host:port`, `ironfleet.ca=/path`, `ironfleet.firmware_config=/path`), as IPA reads `ipa-api-url`.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { createLogger } from '../shared/logger.js';
import { ConfigError } from '../shared/errors.js';
import { describeZodError } from '../shared/inventory.js';
import { AgentClient } from './client.js';
import { isLoopbackHost } from '../shared/net.js';
import { HostHardware } from './hardware.js';
import { GenericCommandFirmware, loadGenericFirmwareConfig } from './firmware.js';

export const agentOptionsSchema = z.strictObject({
  /** host:port, or several comma-separated (several conductors: tried in turn). */
  conductor: z.string().regex(/^(?:[^\s:,]+:\d{1,5}|\[[0-9a-f:]+\]:\d{1,5})(?:,(?:[^\s:,]+:\d{1,5}|\[[0-9a-f:]+\]:\d{1,5}))*$/i, 'must be host:port (or a comma-separated list of them)'),
  state_dir: z.string().min(1).default('/run/ironfleet-agent'),
  ca_file: z.string().min(1).optional(),
  /** Test/lab agents on a host: regular files under this directory may stand in for disks. */
  file_target_dir: z.string().min(1).optional(),
  /** Accept a plaintext (no TLS) conductor that is not on loopback. @default false */
  insecure: z.boolean().default(false),
  log_level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'silent']).default('info'),
  firmware_config: z.string().min(1).optional(),
  extra_macs: z.array(z.string().regex(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i, 'must be a MAC address')).default([]),
  /** "interface.step" → priority this agent reports for its deploy steps. */
  deploy_step_priorities: z.record(z.string().regex(/^[a-z_]+\.[a-z_]+$/, 'must be interface.step'), z.number().int().min(0).max(1000)).default({}),
});

/** `deploy.erase_devices_metadata:85,raid.apply_configuration:0` (kernel command line form). */
export function parseStepPriorities(s: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const item of s.split(',').filter(Boolean)) {
    const m = item.match(/^([^:=]+)[:=](\d+)$/);
    if (!m) throw new ConfigError(`invalid agent options: deploy_step_priorities: "${item}" is not interface.step:priority`, 'deploy_step_priorities');
    out[m[1]!] = Number(m[2]);
  }
  return out;
}
export type AgentOptions = z.output<typeof agentOptionsSchema>;

export function kernelCmdlineOptions(cmdline: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const tok of cmdline.split(/\s+/)) {
    const m = tok.match(/^ironfleet\.([a-z_]+)=(.*)$/);
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

export function compileAgentOptions(raw: Record<string, unknown>): AgentOptions {
  const r = agentOptionsSchema.safeParse(raw);
  if (!r.success) throw new ConfigError(`invalid agent options: ${describeZodError(r.error)}`, r.error.issues[0]?.path.join('.') ?? '');
  const o = r.data;
  const remote = o.conductor.split(',').find((a) => !isLoopbackHost(a.slice(0, a.lastIndexOf(':'))));
  if (!o.ca_file && !o.insecure && remote) {
    // The agent runs as root and erases/writes disks on the conductor's word: a plaintext stream
    // off this machine can be read and rewritten by anyone on the path.
    throw new ConfigError(
      `invalid agent options: conductor ${remote} is not loopback and no CA is given (ca_file / ironfleet.ca=): refusing a plaintext conductor; pass --insecure (ironfleet.insecure=1) to accept it`,
      'ca_file',
    );
  }
  return o;
}

export async function runAgent(flags: Partial<Record<keyof AgentOptions, unknown>>): Promise<AgentClient> {
  let cmdline = '';
  try {
    cmdline = readFileSync('/proc/cmdline', 'utf8');
  } catch {
    /* not Linux */
  }
  const k = kernelCmdlineOptions(cmdline);
  const raw: Record<string, unknown> = {
    ...(k.conductor ? { conductor: k.conductor } : {}),
    ...(k.ca ? { ca_file: k.ca } : {}),
    ...(k.insecure ? { insecure: ['1', 'true', 'yes'].includes(k.insecure.toLowerCase()) } : {}),
    ...(k.firmware_config ? { firmware_config: k.firmware_config } : {}),
    ...(k.log_level ? { log_level: k.log_level } : {}),
    ...(k.deploy_step_priorities ? { deploy_step_priorities: parseStepPriorities(k.deploy_step_priorities) } : {}),
  };
  for (const [key, v] of Object.entries(flags)) if (v !== undefined) raw[key] = v;
  const opts = compileAgentOptions(raw);
  const log = createLogger({ name: 'ironfleet-agent', level: opts.log_level });
  const client = new AgentClient({
    conductor: opts.conductor,
    hardware: new HostHardware(opts.extra_macs),
    log,
    stateDir: opts.state_dir,
    caPem: opts.ca_file ? readFileSync(opts.ca_file) : undefined,
    insecure: opts.insecure,
    firmwareManagers: opts.firmware_config ? [new GenericCommandFirmware(loadGenericFirmwareConfig(opts.firmware_config))] : [],
    deployStepPriorities: opts.deploy_step_priorities,
    fileTargetDir: opts.file_target_dir,
  });
  await client.start();
  const stop = async (sig: string) => {
    log.info({ signal: sig }, 'agent stopping');
    await client.stop();
    process.exit(0);
  };
  process.once('SIGTERM', () => void stop('SIGTERM'));
  process.once('SIGINT', () => void stop('SIGINT'));
  return client;
}
