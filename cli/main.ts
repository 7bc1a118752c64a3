/**
 * `ironfleet` command line: run the conductor, the agent, the lab; talk to the API.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { loadConfig } from '../conductor/config.js';
import { startConductor } from '../conductor/service.js';
import { createLogger } from '../shared/logger.js';
import { IronfleetError, errorMessage } from '../shared/errors.js';
import { parseStepPriorities, runAgent } from '../agent/main.js';
import { ApiClient, ApiError } from './api-client.js';
import { AGENT_VERSION } from '../shared/commands.js';
import { installProcessGuards } from '../shared/process-guard.js';
import { rotateSecretsKey } from './secrets.js';
import { enrollEntries, manifestEntries, redfishEntries, type EnrollEntry } from './enroll.js';

/**
 * The simulator, the lab and the ramdisk builder need development packages (certificate
 * generation, esbuild) that a production install (`npm ci --omit=dev`) leaves out: they are
 * loaded only when asked for, so the conductor and the agent run without them.
 */
async function devTool<T>(load: () => Promise<T>, what: string): Promise<T> {
  try {
    return await load();
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_MODULE_NOT_FOUND') {
      throw new IronfleetError('IRF_CONFIG_INVALID', `"ironfleet ${what}" needs the development packages (npm ci without --omit=dev): ${errorMessage(err)}`);
    }
    throw err;
  }
}

function int(name: string, min = 0, max = Number.MAX_SAFE_INTEGER) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be an integer in [${min}, ${max}]`);
    return n;
  };
}

function api(opts: { url: string; token?: string }): ApiClient {
  return new ApiClient({ url: opts.url, token: opts.token });
}

function table(rows: Array<Record<string, unknown>>, cols: string[]): string {
  const cell = (v: unknown) => (v === null || v === undefined ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v));
  const widths = cols.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (vals: string[]) => '| ' + vals.map((v, i) => v.padEnd(widths[i]!)).join(' | ') + ' |';
  const sep = '+' + widths.map((w) => '-'.repeat(w + 2)).join('+') + '+';
  return [sep, line(cols), sep, ...rows.map((r) => line(cols.map((c) => cell(r[c])))), sep].join('\n');
}

function showNode(n: Record<string, unknown>): string {
  return table(
    Object.keys(n)
      .filter((k) => k !== 'links' && k !== 'ports' && k !== 'states')
      .sort()
      .map((k) => ({ Field: k, Value: n[k] })),
    ['Field', 'Value'],
  );
}

function progressLine(text: string): void {
  if (process.stdout.isTTY) process.stdout.write(`\r\x1b[K${text}`);
  else process.stdout.write(`${text}\n`);
}

export function buildCli(): Command {
  const program = new Command('ironfleet').version(AGENT_VERSION).description('Bare-metal provisioning for large fleets');

  program
    .command('conductor')
    .description('run the conductor (API + agent endpoint + database)')
    .option('-c, --config <file>', 'config file (YAML or JSON)')
    .option('--api-port <port>', 'override api.port', int('api-port', 0, 65535))
    .option('--agent-port <port>', 'override agent.port', int('agent-port', 0, 65535))
    .option('--database <url>', 'override database.url')
    .action(async (o) => {
      const overrides: Record<string, unknown> = {};
      if (o.apiPort !== undefined) overrides.api = { port: o.apiPort };
      if (o.agentPort !== undefined) overrides.agent = { port: o.agentPort };
      if (o.database) overrides.database = { url: o.database };
      const cfg = loadConfig({ file: o.config, overrides });
      const log = createLogger({ name: 'ironfleet-conductor', level: cfg.logging.level });
      installProcessGuards(log);
      const running = await startConductor(cfg, log);
      // SIGTERM/SIGINT: graceful stop bounded by conductor.graceful_shutdown_timeout_s. SIGUSR2:
      // drain — take no new work, wait (bounded by drain_shutdown_timeout_s) until this conductor
      // holds no node locks and runs no deferred action, then stop.
      let stopping = false;
      const stop = async (sig: string) => {
        if (stopping) return;
        stopping = true;
        log.info({ signal: sig }, sig === 'SIGUSR2' ? 'draining' : 'shutting down');
        if (sig === 'SIGUSR2') {
          const drained = await running.conductor.drain();
          log.info({ drained }, drained ? 'drained: no node locks held' : 'drain timed out; stopping anyway');
        }
        await running.stop();
        process.exit(0);
      };
      process.once('SIGTERM', () => void stop('SIGTERM'));
      process.once('SIGINT', () => void stop('SIGINT'));
      process.once('SIGUSR2', () => void stop('SIGUSR2'));
      // Machine-readable readiness line for supervisors and tests — only once the handlers above
      // are installed: until then the OS default for SIGTERM/SIGUSR2 is to kill the process, and a
      // supervisor that signals right after reading this line would do exactly that.
      process.stdout.write(`${JSON.stringify({ ready: true, api_port: running.apiPort, agent_port: running.agentPort })}\n`);
    });

  const secrets = program.command('secrets').description('secrets at rest (security.secrets_key_file)');
  secrets
    .command('rotate')
    .description('seal every stored secret with a new key (old keys kept for reading unless --drop-old)')
    .option('-c, --config <file>', 'conductor config file (YAML or JSON)')
    .option('--database <url>', 'override database.url')
    .option('--drop-old', 'remove the old keys from the key file once every value is re-sealed')
    .action(async (o) => {
      const cfg = loadConfig({ file: o.config, overrides: o.database ? { database: { url: o.database } } : {} });
      const r = await rotateSecretsKey(cfg, { dropOld: Boolean(o.dropOld) });
      console.log(`sealed ${r.rows} row(s) with new key ${r.key} (${r.file})${r.dropped.length ? `; dropped keys ${r.dropped.join(', ')}` : ''}`);
    });

  program
    .command('agent')
    .description('run the ramdisk agent on this machine')
    .option('--conductor <host:port>', 'conductor agent endpoint (default: ironfleet.conductor= on the kernel command line)')
    .option('--state-dir <dir>', 'journal/token directory (tmpfs)', '/run/ironfleet-agent')
    .option('--ca-file <file>', 'CA bundle to verify the conductor (enables TLS)')
    .option('--file-target-dir <dir>', 'tests/labs on a host: regular files under <dir> may stand in for disks as target/devices')
    .option('--insecure', 'accept a plaintext conductor that is not on loopback (ironfleet.insecure=1)')
    .option('--log-level <level>', 'log level', 'info')
    .option('--extra-mac <mac...>', 'additional MAC addresses to look up with')
    .option('--firmware-config <file>', 'JSON: in-band firmware components and their version/update commands')
    .option('--deploy-step-priorities <list>', 'priorities of this agent\'s deploy steps, e.g. deploy.erase_devices_metadata:85 (default: all 0)')
    .action(async (o) => {
      await runAgent({ conductor: o.conductor, state_dir: o.stateDir, ca_file: o.caFile, insecure: o.insecure, file_target_dir: o.fileTargetDir, log_level: o.logLevel, extra_macs: o.extraMac, firmware_config: o.firmwareConfig, deploy_step_priorities: o.deployStepPriorities === undefined ? undefined : parseStepPriorities(o.deployStepPriorities) });
    });

  program
    .command('sim-agents')
    .description('run N simulated agents (synthetic hardware) against a conductor, for labs and benchmarks')
    .requiredOption('--conductor <host:port>', 'conductor agent endpoint')
    .option('--count <n>', 'number of agents', int('count', 1, 100_000), 10)
    .option('--seed <seed>', 'fleet seed (MACs derive from it)', 'lab')
    .option('--first <index>', 'index of the first machine', int('first', 0), 0)
    .option('--log-level <level>', 'log level', 'warn')
    .action(async (o) => {
      const { runSimAgents } = await devTool(() => import('./sim-agents.js'), 'sim-agents');
      await runSimAgents({ conductor: o.conductor, count: o.count, seed: o.seed, first: o.first, logLevel: o.logLevel });
    });

  program
    .command('lab')
    .description('the self-contained lab: conductor on SQLite, simulated fleet enrolled, agents connected, actions running')
    .option('--nodes <n>', 'simulated machines (BMC + agent each)', int('nodes', 1, 20_000), 100)
    .option('--profile <name>', 'BMC behaviour: ideal | realistic | hostile', 'realistic')
    .option('--api-port <port>', 'API port', int('api-port', 0, 65535), 6385)
    .option('--agent-port <port>', 'agent endpoint port', int('agent-port', 0, 65535), 6388)
    .option('--bmc-port <port>', 'port of every simulated BMC', int('bmc-port', 1, 65535), 8443)
    .option('--sim-admin-port <port>', 'simulator admin API port', int('sim-admin-port', 0, 65535), 9400)
    .option('--dir <dir>', 'working directory (database, manifest, logs)', 'var/lab')
    .option('--duration <s>', 'stop by itself after this many seconds (0 = until Ctrl-C)', int('duration', 0), 3600)
    .option('--log-level <level>', 'conductor log level (its log file): trace | debug | info | warn | error', (v: string) => {
      if (!['trace', 'debug', 'info', 'warn', 'error'].includes(v)) throw new InvalidArgumentError('--log-level must be one of trace, debug, info, warn, error');
      return v;
    }, 'info')
    .option('--no-qemu', 'leave out the qemu VM machine (one machine booting the real deploy ramdisk, deployed onto mdadm RAID-1)')
    .option('--conductors <n>', 'several conductor processes on an embedded PostgreSQL (1 = one conductor on SQLite)', int('conductors', 1, 9), 1)
    .option('--kill-every <s>', 'with --conductors > 1: SIGKILL one conductor this often and restart it 20 s later (0 = never)', int('kill-every', 0), 90)
    .action(async (o) => {
      if (o.conductors > 1) {
        const { runClusterLab } = await devTool(() => import('./lab-cluster.js'), 'lab');
        await runClusterLab({ conductors: o.conductors, nodes: o.nodes, profile: o.profile, apiPort: o.apiPort, agentPort: o.agentPort, bmcPort: o.bmcPort, simAdminPort: o.simAdminPort, dir: o.dir, durationS: o.duration, killEveryS: o.killEvery });
        return;
      }
      const { runLab } = await devTool(() => import('./lab.js'), 'lab');
      await runLab({ nodes: o.nodes, profile: o.profile, apiPort: o.apiPort, agentPort: o.agentPort, bmcPort: o.bmcPort, simAdminPort: o.simAdminPort, dir: o.dir, durationS: o.duration, qemu: Boolean(o.qemu), logLevel: o.logLevel });
    });

  program
    .command('sim')
    .description('run a fleet of simulated Redfish BMCs (fault-injecting, seeded) and write its manifest')
    .requiredOption('--bmcs <n>', 'number of BMCs (1..20000)', int('bmcs', 1, 20_000))
    .option('--profile <name>', 'ideal | realistic | hostile', 'realistic')
    .option('--profile-override <json>', 'JSON overrides of profile fields, e.g. \'{"max_sessions":[2,2]}\'')
    .option('--manifest <file>', 'where to write the fleet manifest', 'var/sim/manifest.json')
    .option('--seed <seed>', 'fleet seed (addresses, passwords, MACs, behaviour)', 'ironfleet')
    .option('--port <port>', 'port of every BMC', int('port', 1, 65535), 8443)
    .option('--single-address <host:port>', 'serve all systems behind one address (sushy-tools style)')
    .option('--http', 'plain HTTP instead of HTTPS')
    .option('--workers <n>', 'worker processes (default: one per core, more for big fleets)', int('workers', 1, 64))
    .option('--admin-port <port>', 'admin API port on 127.0.0.1', int('admin-port', 0, 65535), 9400)
    .option('--initial-power <state>', 'on | off | mixed', 'off')
    .option('--duration <s>', 'stop by itself after this many seconds (0 = until Ctrl-C)', int('duration', 0), 0)
    .option('--agents <host:port>', 'boot a simulated ramdisk agent on every power-on, connecting to this conductor')
    .option('--boot-delay-ms <ms>', 'simulated boot time of the ramdisk', int('boot-delay-ms', 0, 600_000), 3000)
    .option('--disk-dir <dir>', 'where the simulated machines\' disks (sparse files) live', 'var/sim/disks')
    .option('--agent-deploy-step-priorities <list>', 'deploy step priorities the simulated agents report, e.g. deploy.erase_devices_metadata:85')
    .option('--qemu-ramdisk <dir>', 'with --agents: boot the deploy ramdisk built in <dir> (ironfleet ramdisk build) in a qemu VM per machine')
    .option('--qemu-disks <n>', 'virtio disks per VM', int('qemu-disks', 1, 8), 3)
    .option('--qemu-disk-mib <n>', 'size of each VM disk (MiB)', int('qemu-disk-mib', 64, 1 << 20), 1024)
    .option('--qemu-memory-mib <n>', 'VM memory (MiB)', int('qemu-memory-mib', 256, 16_384), 1536)
    .option('--qemu-forward <ports>', 'more host loopback ports the VM may reach at 10.0.2.100 (comma-separated)', '')
    .option('--qemu-append <args>', 'extra kernel command line for the VM')
    .action(async (o) => {
      let overrides: Record<string, unknown> = {};
      if (o.profileOverride) {
        try {
          overrides = JSON.parse(o.profileOverride);
        } catch {
          throw new InvalidArgumentError('--profile-override must be a JSON object');
        }
      }
      const { startFleet } = await devTool(() => import('../sim/fleet.js'), 'sim');
      const fleet = await startFleet({
        bmcs: o.bmcs,
        profile: o.profile,
        profile_overrides: overrides,
        manifest: o.manifest,
        seed: o.seed,
        port: o.port,
        single_address: o.singleAddress,
        tls: !o.http,
        workers: o.workers,
        admin_port: o.adminPort,
        initial_power: o.initialPower,
        ...(o.agents ? { agents: { conductor: o.agents, boot_delay_ms: o.bootDelayMs, disk_dir: path.resolve(o.diskDir), ...(o.agentDeployStepPriorities ? { deploy_step_priorities: parseStepPriorities(o.agentDeployStepPriorities) } : {}) } } : {}),
        ...(o.qemuRamdisk ? { qemu: qemuOptions(o) } : {}),
      });
      const first = fleet.manifest.bmcs[0]!;
      const stop = async () => {
        await fleet.stop();
        process.exit(0);
      };
      // Handlers before the ready line (see the conductor command).
      process.once('SIGINT', () => void stop());
      process.once('SIGTERM', () => void stop());
      if (o.duration > 0) setTimeout(() => void stop(), o.duration * 1000);
      console.log(`${JSON.stringify({ ready: true, bmcs: o.bmcs, workers: fleet.workers, startup_ms: fleet.startupMs, manifest: fleet.manifestPath, admin: fleet.adminUrl })}`);
      console.error(`sim: ${o.bmcs} BMCs (${fleet.profile.name}) on ${fleet.workers} worker(s) in ${fleet.startupMs} ms; manifest ${fleet.manifestPath}; admin ${fleet.adminUrl}/stats`);
      console.error(`sim: first BMC ${first.address}/redfish/v1 (user ${first.username}, password in the manifest)`);
    });

  program
    .command('ramdisk')
    .description('the deploy ramdisk (kernel + initramfs with Node, the agent, busybox, mdadm, disk tools)')
    .command('build')
    .description('build it from Debian packages and this project (cached: redone only when an input changed)')
    .option('--out <dir>', 'output directory', 'var/ramdisk')
    .option('--force', 'rebuild even when up to date')
    .action(async (o) => {
      const { buildRamdisk } = await devTool(() => import('../agent/ramdisk/build.js'), 'ramdisk build');
      const m = await buildRamdisk({ outDir: o.out, force: o.force, log: (l) => console.error(`ramdisk: ${l}`) });
      const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
      console.error(`ramdisk: ${m.cached ? 'up to date' : `built in ${(m.build_ms / 1000).toFixed(1)} s`}: kernel ${m.kernel_version} (${mib(m.kernel_bytes)}), initramfs ${mib(m.initramfs_bytes)} (${mib(m.initramfs_unpacked_bytes)} unpacked, agent bundle ${mib(m.agent_bundle_bytes)}), ${m.modules.length} modules`);
      console.log(JSON.stringify(m));
    });

  program
    .command('bench-fleet')
    .description('measure a fresh conductor process on a fleet: enrol, manage, K steady power-sync sweeps; CPU per node per sweep, RSS per BMC, sessions, API latency')
    .option('--manifest <file>', 'a fleet manifest (ironfleet sim)')
    .option('--redfish <url>', 'or walk this Redfish service (sushy-tools: every system behind one address)')
    .option('--username <user>', 'BMC user (with --redfish)')
    .option('--password <password>', 'BMC password (with --redfish; or IRONFLEET_BMC_PASSWORD)', process.env.IRONFLEET_BMC_PASSWORD)
    .option('--verify-ca <path|true|false>', 'TLS verification with --redfish', 'true')
    .option('--database <url>', 'an empty postgres://… database (default: SQLite in a temporary directory)')
    .option('--sweeps <k>', 'steady sweeps measured', int('sweeps', 1, 100), 4)
    .option('--interval-s <s>', 'power sync interval', int('interval-s', 1, 3600), 15)
    .option('--pool-size <n>', 'BMC worker threads (default: CPUs)', int('pool-size', 1, 64))
    .option('--json <file>', 'also write the result here')
    .action(async (o) => {
      if (Boolean(o.manifest) === Boolean(o.redfish)) throw new IronfleetError('IRF_INVALID_INPUT', 'bench-fleet: give exactly one of --manifest <file> or --redfish <url>');
      if (o.redfish && (!o.username || !o.password)) throw new IronfleetError('IRF_INVALID_INPUT', 'bench-fleet --redfish: --username and --password are required');
      const { benchFleet, benchFleetTable, writeBenchFleet } = await import('./bench-fleet.js');
      const verifyCa = o.verifyCa === 'true' ? true : o.verifyCa === 'false' ? false : String(o.verifyCa);
      const r = await benchFleet({
        manifest: o.manifest,
        redfish: o.redfish ? { url: o.redfish, username: o.username, password: o.password, verifyCa } : undefined,
        database: o.database,
        sweeps: o.sweeps,
        intervalS: o.intervalS,
        poolSize: o.poolSize,
        progress: progressLine,
      });
      process.stdout.write('\n');
      console.log(benchFleetTable(r));
      if (o.json) writeBenchFleet(o.json, r);
    });

  const node = program.command('node').description('manage nodes through the API');
  const common = (c: Command) =>
    c.option('--url <url>', 'API endpoint', process.env.IRONFLEET_URL ?? 'http://127.0.0.1:6385').option('--token <token>', 'API token (X-Auth-Token)', process.env.IRONFLEET_TOKEN);

  common(node.command('list').description('list nodes'))
    .option('--provision-state <state>')
    .action(async (o) => {
      const q = o.provisionState ? `&provision_state=${encodeURIComponent(o.provisionState)}` : '';
      const res = await api(o).get<{ nodes: Array<Record<string, unknown>> }>(`/v1/nodes?fields=uuid,name,power_state,provision_state,maintenance,last_error${q}`);
      console.log(table(res.nodes, ['uuid', 'name', 'power_state', 'provision_state', 'maintenance', 'last_error']));
    });

  common(node.command('show <node>').description('show one node')).action(async (ident, o) => {
    console.log(showNode(await api(o).get(`/v1/nodes/${encodeURIComponent(ident)}`)));
  });

  common(node.command('create').description('create a node'))
    .requiredOption('--driver <driver>')
    .option('--name <name>')
    .option('--driver-info <json>', 'driver_info as JSON')
    .option('--mac <mac...>', 'create ports with these MACs')
    .action(async (o) => {
      const c = api(o);
      const n = await c.post<Record<string, unknown>>('/v1/nodes', {
        driver: o.driver,
        ...(o.name ? { name: o.name } : {}),
        ...(o.driverInfo ? { driver_info: JSON.parse(o.driverInfo) } : {}),
      });
      for (const mac of o.mac ?? []) await c.post('/v1/ports', { address: mac, node_uuid: n.uuid });
      console.log(showNode(n));
    });

  common(node.command('enroll').description('enroll nodes (idempotent): from a fleet manifest ({"bmcs": [...]}, as written by `ironfleet sim`) or from a Redfish service\'s Systems'))
    .option('--from <file>', 'fleet manifest')
    .option('--redfish <url>', 'walk this Redfish service: one node per member of /redfish/v1/Systems, ports from its EthernetInterfaces')
    .option('--username <user>', 'BMC user (with --redfish)')
    .option('--password <password>', 'BMC password (with --redfish; or IRONFLEET_BMC_PASSWORD)', process.env.IRONFLEET_BMC_PASSWORD)
    .option('--verify-ca <path|true|false>', 'TLS verification with --redfish: a CA bundle, true (system CAs) or false', 'true')
    .option('--address-template <tpl>', 'each node\'s BMC address; {url}, {id} (system Id) and {index} are replaced', '{url}')
    .option('--driver <driver>', 'hardware type', 'redfish')
    .action(async (o) => {
      if (Boolean(o.from) === Boolean(o.redfish)) throw new IronfleetError('IRF_INVALID_INPUT', 'node enroll: give exactly one of --from <manifest> or --redfish <url>');
      let entries: EnrollEntry[];
      if (o.from) {
        const doc = JSON.parse(readFileSync(o.from, 'utf8')) as { bmcs: Array<Record<string, unknown>> };
        if (!Array.isArray(doc.bmcs)) throw new IronfleetError('IRF_INVALID_INPUT', `${o.from}: "bmcs" must be an array`);
        entries = manifestEntries(doc);
      } else {
        if (!o.username || !o.password) throw new IronfleetError('IRF_INVALID_INPUT', 'node enroll --redfish: --username and --password (or IRONFLEET_BMC_PASSWORD) are required');
        const verifyCa = o.verifyCa === 'true' ? true : o.verifyCa === 'false' ? false : String(o.verifyCa);
        entries = await redfishEntries({ url: o.redfish, username: o.username, password: o.password, verifyCa, addressTemplate: o.addressTemplate, progress: progressLine });
        process.stdout.write('\n');
      }
      const report = await enrollEntries(api(o), o.driver, entries, progressLine);
      process.stdout.write('\n');
      console.log(JSON.stringify(report));
    });

  common(node.command('power <node> <action>').description('power on|off|reboot|soft-off|soft-reboot'))
    .option('--wait', 'wait for the transition to finish')
    .action(async (ident, action, o) => {
      const targets: Record<string, string> = { on: 'power on', off: 'power off', reboot: 'rebooting', 'soft-off': 'soft power off', 'soft-reboot': 'soft rebooting' };
      const target = targets[action];
      if (!target) throw new InvalidArgumentError(`action must be one of ${Object.keys(targets).join(', ')}`);
      const c = api(o);
      await c.put(`/v1/nodes/${encodeURIComponent(ident)}/states/power`, { target });
      if (o.wait) {
        const n = await c.waitNode(ident, (x) => !x.target_power_state, 300_000, (x) => progressLine(`power: ${x.power_state} -> ${x.target_power_state ?? 'done'}`));
        process.stdout.write('\n');
        if (n.last_error) throw new Error(String(n.last_error));
      }
    });

  common(node.command('provision <node> <verb>').description('provision action: manage, provide, inspect, deploy, rebuild, undeploy, abort ...'))
    .option('--wait', 'wait until the node reaches a stable state')
    .action(async (ident, verb, o) => {
      const c = api(o);
      await c.put(`/v1/nodes/${encodeURIComponent(ident)}/states/provision`, { target: verb === 'deploy' ? 'active' : verb === 'undeploy' ? 'deleted' : verb });
      if (o.wait) {
        const n = await c.waitNode(ident, (x) => !x.target_provision_state && !x.reservation, 3_600_000, (x) =>
          progressLine(`${x.provision_state}${x.target_provision_state ? ` -> ${x.target_provision_state}` : ''}`),
        );
        process.stdout.write('\n');
        if (n.last_error) throw new Error(String(n.last_error));
      }
    });

  common(node.command('delete <node>').description('delete a node')).action(async (ident, o) => {
    await api(o).delete(`/v1/nodes/${encodeURIComponent(ident)}`);
  });

  common(node.command('agent-command <node> <name>').description('run an agent command (e.g. clean.burnin_cpu) and follow its progress'))
    .option('--params <json>', 'parameters as JSON', '{}')
    .option('--no-wait', 'return once accepted')
    .action(async (ident, name, o) => {
      const c = api(o);
      const cmd = await c.post<Record<string, unknown>>(`/v1/nodes/${encodeURIComponent(ident)}/agent/commands`, { name, params: JSON.parse(o.params) });
      if (!o.wait) return console.log(cmd.id);
      for (;;) {
        const cur = await c.get<Record<string, unknown>>(`/v1/nodes/${encodeURIComponent(ident)}/agent/commands/${cmd.id}`);
        const p = (cur.progress ?? {}) as { percent?: number; stage?: string; eta_s?: number };
        progressLine(`${name} ${cur.command_status} ${p.percent !== undefined ? `${p.percent.toFixed(0)}%` : ''} ${p.stage ?? ''} ${p.eta_s ? `eta ${p.eta_s.toFixed(0)}s` : ''}`);
        if (cur.command_status !== 'PENDING' && cur.command_status !== 'RUNNING') {
          process.stdout.write('\n');
          console.log(JSON.stringify(cur.command_result ?? cur.command_error, null, 2));
          if (cur.command_status !== 'SUCCEEDED') process.exitCode = 1;
          return;
        }
        await new Promise((r) => setTimeout(r, 500));
      }
    });

  return program;
}

export async function main(argv: string[]): Promise<void> {
  try {
    await buildCli().parseAsync(argv);
  } catch (err) {
    if (err instanceof ApiError) console.error(`error: HTTP ${err.status}: ${err.message}`);
    else if (err instanceof IronfleetError) console.error(`error: ${err.message}`);
    else console.error(`error: ${errorMessage(err)}`);
    process.exit(2);
  }
}

/** `ironfleet sim --qemu-*` flags → the simulator's qemu options (kernel/initramfs from the build manifest). */
function qemuOptions(o: { qemuRamdisk: string; qemuDisks: number; qemuDiskMib: number; qemuMemoryMib: number; qemuForward: string; qemuAppend?: string; diskDir: string }) {
  const manifestFile = path.resolve(o.qemuRamdisk, 'manifest.json');
  let m: { kernel: string; initramfs: string };
  try {
    m = JSON.parse(readFileSync(manifestFile, 'utf8'));
  } catch (err) {
    throw new InvalidArgumentError(`--qemu-ramdisk: cannot read ${manifestFile} (run ironfleet ramdisk build): ${(err as Error).message}`);
  }
  const ports = o.qemuForward.split(',').filter(Boolean).map((p) => {
    const n = Number(p);
    if (!Number.isInteger(n) || n < 1 || n > 65535) throw new InvalidArgumentError(`--qemu-forward: ${p} is not a port`);
    return n;
  });
  return { kernel: m.kernel, initramfs: m.initramfs, disk_dir: path.resolve(o.diskDir), disks: o.qemuDisks, disk_bytes: o.qemuDiskMib * 2 ** 20, memory_mib: o.qemuMemoryMib, forward_ports: ports, append: o.qemuAppend };
}
