/**
 * The real OpenStack client (Debian's python3-ironicclient, `baremetal`) against a real conductor
 * process: the API must be shaped like Ironic's for existing tooling to work.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import { startConductorProcess, tmpDir, waitFor, type ConductorProc } from '../helpers.js';

const run = promisify(execFile);
const BAREMETAL = '/usr/bin/baremetal';

describe('baremetal (python3-ironicclient) against the API', () => {
  let conductor: ConductorProc;
  const bm = async (...args: string[]) => {
    const { stdout } = await run(BAREMETAL, ['--os-endpoint', conductor.apiUrl, '--os-auth-type', 'none', ...args], { env: { ...process.env, PATH: `/usr/bin:${process.env.PATH}` }, timeout: 60_000 });
    return stdout;
  };

  beforeAll(async () => {
    expect(existsSync(BAREMETAL), 'python3-ironicclient must be installed (scripts/setup.sh does it)').toBe(true);
    conductor = await startConductorProcess({ dir: tmpDir('ironfleet-bm-') });
  });
  afterAll(async () => conductor?.kill('SIGTERM'));

  it('creates, lists and shows nodes', async () => {
    const created = JSON.parse(await bm('node', 'create', '--driver', 'fake-hardware', '--name', 'bm-node-1', '--driver-info', 'redfish_password=s3cr3t-bmc', '-f', 'json'));
    expect(created.name).toBe('bm-node-1');
    expect(created.provision_state).toBe('enroll');
    expect(created.driver_info.redfish_password).toBe('******');
    await bm('node', 'create', '--driver', 'fake-hardware', '--name', 'bm-node-2');
    const list = JSON.parse(await bm('node', 'list', '-f', 'json')) as Array<Record<string, unknown>>;
    expect(list.map((n) => n.Name).sort()).toEqual(['bm-node-1', 'bm-node-2']);
    expect(list[0]).toHaveProperty('Provisioning State', 'enroll');
    const shown = JSON.parse(await bm('node', 'show', 'bm-node-1', '-f', 'json'));
    expect(shown.uuid).toBe(created.uuid);
    expect(shown.driver).toBe('fake-hardware');
  });

  it('powers a node on and walks provisioning with the standard verbs', async () => {
    await bm('node', 'power', 'on', 'bm-node-1');
    await waitFor(async () => JSON.parse(await bm('node', 'show', 'bm-node-1', '-f', 'json')).power_state === 'power on', 20_000, 'power on');
    await bm('node', 'manage', 'bm-node-1', '--wait', '30');
    await bm('node', 'provide', 'bm-node-1', '--wait', '30');
    await bm('node', 'deploy', 'bm-node-1', '--wait', '30');
    expect(JSON.parse(await bm('node', 'show', 'bm-node-1', '-f', 'json')).provision_state).toBe('active');
    const hist = await bm('node', 'history', 'list', 'bm-node-1', '-f', 'json');
    expect(JSON.parse(hist).length).toBeGreaterThan(3);
  });

  it('ports, JSON patch via `node set`, and errors reach the user', async () => {
    const uuid2 = JSON.parse(await bm('node', 'show', 'bm-node-2', '-f', 'json')).uuid;
    // Like Ironic, port creation takes the node's UUID, and says so when given a name.
    const byName = await bm('port', 'create', '52:54:00:00:be:ef', '--node', 'bm-node-2').catch((e: { stderr: string }) => e.stderr);
    expect(byName).toMatch(/node_uuid/);
    await bm('port', 'create', '52:54:00:00:be:ef', '--node', uuid2);
    const ports = JSON.parse(await bm('port', 'list', '--node', 'bm-node-2', '-f', 'json'));
    expect(ports[0].Address).toBe('52:54:00:00:be:ef');
    await bm('node', 'set', 'bm-node-2', '--property', 'cpu_arch=x86_64', '--extra', 'rack=r12');
    const n2 = JSON.parse(await bm('node', 'show', 'bm-node-2', '-f', 'json'));
    expect(n2.properties.cpu_arch).toBe('x86_64');
    expect(n2.extra.rack).toBe('r12');
    const err = await bm('node', 'deploy', 'bm-node-2').catch((e: { stderr: string }) => e.stderr);
    expect(err).toMatch(/enroll/);
    await bm('node', 'delete', 'bm-node-2');
    expect(JSON.parse(await bm('node', 'list', '-f', 'json'))).toHaveLength(1);
  });
});
