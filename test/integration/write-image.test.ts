/**
 * deploy.write_image end to end: the conductor sends the command over the stream, a real agent
 * process downloads from a loopback HTTP server and writes a real target, progress and result come
 * back; a wrong checksum fails with CHECKSUM_MISMATCH on the node's last_error.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { ApiClient } from '../../cli/api-client.js';
import { hostMacs } from '../../agent/hardware.js';
import { startAgentProcess, startConductorProcess, tmpDir, waitFor, type ConductorProc, type Proc } from '../helpers.js';

type Cmd = { id: string; command_status: string; command_result: Record<string, unknown> | null; command_error: { code: string } | null };

describe('deploy.write_image through conductor and agent processes', () => {
  const dir = tmpDir('ironfleet-wi-');
  const img = randomBytes(6 * 1024 * 1024);
  const digest = createHash('sha256').update(img).digest('hex');
  const fw = Buffer.from('BIOS payload version 2.0\n');
  const fwDigest = createHash('sha256').update(fw).digest('hex');
  // A stand-in flash tool: the "firmware" is a version file; flashing copies the payload's version.
  const versionFile = path.join(dir, 'bios-version');
  writeFileSync(versionFile, '1.0\n');
  const fwConfig = path.join(dir, 'firmware.json');
  writeFileSync(
    fwConfig,
    JSON.stringify({
      components: {
        bios: { version_command: ['cat', versionFile], update_command: ['sh', '-c', 'grep -q "BIOS payload" "$1" && sed -n "s/.*version //p" "$1" > "$2"', 'flash', '{payload}', versionFile] },
        bmc: { version_command: ['echo', '5.1'], update_command: ['sh', '-c', 'echo "flash tool: device busy" >&2; exit 4', '{payload}'] },
      },
    }),
  );
  let server: http.Server;
  let url = '';
  let conductor: ConductorProc;
  let agent: Proc;
  let api: ApiClient;
  let node = '';

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      if (req.url === '/bios-2.0.bin') {
        res.writeHead(200, { 'content-length': fw.length });
        return res.end(fw);
      }
      if (req.url === '/slow.raw') {
        // 1 MiB per 100 ms: long enough to cancel through the API.
        res.writeHead(200, { 'content-length': img.length });
        let o = 0;
        const tick = () => {
          if (res.destroyed) return;
          if (o >= img.length) return void res.end();
          res.write(img.subarray(o, o + 1024 * 1024));
          o += 1024 * 1024;
          setTimeout(tick, 100);
        };
        return tick();
      }
      res.writeHead(200, { 'content-length': img.length });
      res.end(img);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/disk.raw`;
    conductor = await startConductorProcess({ dir });
    api = new ApiClient({ url: conductor.apiUrl });
    node = (await api.post<{ uuid: string }>('/v1/nodes', { driver: 'fake-hardware', name: 'wi-node' })).uuid;
    for (const mac of hostMacs()) await api.post('/v1/ports', { address: mac, node_uuid: node });
    agent = startAgentProcess({ dir, conductor: conductor.agentAddr, stateDir: path.join(dir, 'state'), extraArgs: ['--firmware-config', fwConfig, '--file-target-dir', dir] });
    await waitFor(async () => (await api.get<{ connected: boolean }>(`/v1/nodes/${node}/agent`)).connected, 30_000, 'agent');
  });
  afterAll(async () => {
    await agent?.kill('SIGTERM');
    await conductor?.kill('SIGTERM');
    await new Promise<void>((r) => server.close(() => r()));
  });

  const run = async (params: Record<string, unknown>, name = 'deploy.write_image') => {
    const c = await api.post<Cmd>(`/v1/nodes/${node}/agent/commands`, { name, params });
    return waitFor(async () => {
      const x = await api.get<Cmd>(`/v1/nodes/${node}/agent/commands/${c.id}`);
      return x.command_status === 'RUNNING' || x.command_status === 'PENDING' ? undefined : x;
    }, 60_000, 'write_image result');
  };

  it('writes the image and reports bytes and checksum', async () => {
    const target = path.join(dir, 'target.img');
    execFileSync('truncate', ['-s', String(8 * 1024 * 1024), target]);
    const r = await run({ url, checksum: digest, target });
    expect(r.command_status).toBe('SUCCEEDED');
    expect(r.command_result).toMatchObject({ bytes_written: img.length, checksum: digest, target });
    expect(readFileSync(target).subarray(0, img.length).equals(img)).toBe(true);
  });

  it('a wrong checksum fails with CHECKSUM_MISMATCH and lands on the node', async () => {
    const target = path.join(dir, 'target2.img');
    execFileSync('truncate', ['-s', String(8 * 1024 * 1024), target]);
    const r = await run({ url, checksum: 'a'.repeat(64), target });
    expect(r.command_status).toBe('FAILED');
    expect(r.command_error?.code).toBe('CHECKSUM_MISMATCH');
    const n = await api.get<{ last_error: string }>(`/v1/nodes/${node}`);
    expect(n.last_error).toMatch(/checksum mismatch/);
    expect(readFileSync(target).subarray(0, 1024 * 1024).every((b) => b === 0)).toBe(true);
  });

  it('clean.erase_devices_metadata and clean.erase_devices run over the stream on the given devices', async () => {
    const target = path.join(dir, 'target.img'); // holds the image from the first test
    const c1 = await api.post<Cmd>(`/v1/nodes/${node}/agent/commands`, { name: 'clean.erase_devices_metadata', params: { devices: [target] } });
    const r1 = await waitFor(async () => {
      const x = await api.get<Cmd>(`/v1/nodes/${node}/agent/commands/${c1.id}`);
      return x.command_status === 'RUNNING' || x.command_status === 'PENDING' ? undefined : x;
    }, 30_000, 'erase metadata');
    expect(r1.command_status).toBe('SUCCEEDED');
    const disk = readFileSync(target);
    expect(disk.subarray(0, 1024 * 1024).every((b) => b === 0)).toBe(true);
    expect(disk.subarray(2 * 1024 * 1024, 3 * 1024 * 1024).equals(img.subarray(2 * 1024 * 1024, 3 * 1024 * 1024))).toBe(true);
    const c2 = await api.post<Cmd>(`/v1/nodes/${node}/agent/commands`, { name: 'clean.erase_devices', params: { devices: [target] } });
    const r2 = await waitFor(async () => {
      const x = await api.get<Cmd>(`/v1/nodes/${node}/agent/commands/${c2.id}`);
      return x.command_status === 'RUNNING' || x.command_status === 'PENDING' ? undefined : x;
    }, 30_000, 'erase devices');
    expect(r2.command_status).toBe('SUCCEEDED');
    expect(readFileSync(target).every((b) => b === 0)).toBe(true);
  });

  it('firmware.update: verified payload, the configured tool runs, versions before/after reported', async () => {
    const r = await run({ component: 'bios', url: url.replace('disk.raw', 'bios-2.0.bin'), checksum: fwDigest }, 'firmware.update');
    expect(r.command_status, JSON.stringify(r.command_error)).toBe('SUCCEEDED');
    expect(r.command_result).toMatchObject({ component: 'bios', manager: 'GenericCommandFirmware', version_before: '1.0', version_after: '2.0', changed: true, payload_bytes: fw.length });
    // A payload that fails verification never reaches the tool.
    writeFileSync(versionFile, '1.0\n');
    const bad = await run({ component: 'bios', url: url.replace('disk.raw', 'bios-2.0.bin'), checksum: 'b'.repeat(64) }, 'firmware.update');
    expect(bad.command_error?.code).toBe('FIRMWARE_PAYLOAD_FAILED');
    expect(readFileSync(versionFile, 'utf8')).toBe('1.0\n');
    // A failing flash tool: its exit status and stderr land on the node.
    const fail = await run({ component: 'bmc', url: url.replace('disk.raw', 'bios-2.0.bin'), checksum: fwDigest }, 'firmware.update');
    expect(fail.command_error?.code).toBe('FIRMWARE_UPDATE_FAILED');
    expect((await api.get<{ last_error: string }>(`/v1/nodes/${node}`)).last_error).toMatch(/exit 4.*device busy/);
    const unknown = await run({ component: 'nic', url: url.replace('disk.raw', 'bios-2.0.bin'), checksum: fwDigest }, 'firmware.update');
    expect(unknown.command_error).toMatchObject({ code: 'FIRMWARE_UNKNOWN_COMPONENT', message: expect.stringMatching(/known: bios, bmc/) });
  });

  it('raid.create_configuration with an impossible config fails naming the field, touching nothing', async () => {
    const r = await run({ target_raid_config: { logical_disks: [{ raid_level: '5', size_gb: 'MAX', controller: 'software' }] } }, 'raid.create_configuration');
    expect(r.command_status).toBe('FAILED');
    expect(r.command_error).toMatchObject({ code: 'INVALID_RAID_CONFIG', message: expect.stringMatching(/logical_disks\.0\.raid_level/) });
  });

  it('cancelling a running write_image through the API: CANCELLED, target wiped', async () => {
    const target = path.join(dir, 'target3.img');
    execFileSync('truncate', ['-s', String(8 * 1024 * 1024), target]);
    const c = await api.post<Cmd>(`/v1/nodes/${node}/agent/commands`, { name: 'deploy.write_image', params: { url: url.replace('disk.raw', 'slow.raw'), checksum: digest, target } });
    await waitFor(async () => (await api.get<Cmd & { progress?: { bytes_done?: number } }>(`/v1/nodes/${node}/agent/commands/${c.id}`)).command_status === 'RUNNING', 20_000, 'running');
    await new Promise((r) => setTimeout(r, 300));
    await api.delete(`/v1/nodes/${node}/agent/commands/${c.id}`);
    const r = await waitFor(async () => {
      const x = await api.get<Cmd>(`/v1/nodes/${node}/agent/commands/${c.id}`);
      return x.command_status === 'RUNNING' || x.command_status === 'PENDING' ? undefined : x;
    }, 20_000, 'cancelled');
    expect(r.command_status).toBe('CANCELLED');
    expect(readFileSync(target).subarray(0, 1024 * 1024).every((b) => b === 0)).toBe(true);
  });

  it('bad parameters are refused by the API naming the field', async () => {
    await expect(api.post(`/v1/nodes/${node}/agent/commands`, { name: 'deploy.write_image', params: { url: 'ftp://x', checksum: digest } })).rejects.toMatchObject({ status: 400, message: /params\.url/ });
    await expect(api.post(`/v1/nodes/${node}/agent/commands`, { name: 'deploy.write_image', params: { url, checksum: digest, target: 'relative' } })).rejects.toMatchObject({ status: 400, message: /params\.target/ });
  });
});
