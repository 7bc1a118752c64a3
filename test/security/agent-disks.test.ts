/**
 * What a conductor (or whoever speaks for it) may point the root agent at: a real agent process
 * on this host, commands through the API. Only the machine's own disks — or, for a host test
 * agent, regular files under its --file-target-dir — are accepted as `target`/`devices`; system
 * files, files elsewhere and symlinks out of the directory are refused before anything is opened.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { hostMacs } from '../../agent/hardware.js';
import { startAgentProcess, startConductorProcess, tmpDir, waitFor, type ConductorProc, type Proc } from '../helpers.js';
import { raw } from './helpers.js';

type Cmd = { id: string; command_status: string; command_error: { code: string; message: string } | null };

describe('agent: targets must be its own disks', () => {
  const dir = tmpDir('ironfleet-sec-disks-');
  const disks = path.join(dir, 'disks');
  const outside = tmpDir('ironfleet-sec-outside-');
  const img = randomBytes(256 * 1024);
  const digest = createHash('sha256').update(img).digest('hex');
  let server: http.Server;
  let url = '';
  let c: ConductorProc;
  let agent: Proc;
  let node = '';

  beforeAll(async () => {
    mkdirSync(disks);
    server = http.createServer((_req, res) => res.end(img));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/x.raw`;
    c = await startConductorProcess({ dir });
    node = ((await raw(c.apiUrl, 'POST', '/v1/nodes', { body: { driver: 'fake-hardware', name: 'disks-1' } })).json as { uuid: string }).uuid;
    for (const mac of hostMacs()) await raw(c.apiUrl, 'POST', '/v1/ports', { body: { address: mac, node_uuid: node } });
    agent = startAgentProcess({ dir, conductor: c.agentAddr, stateDir: path.join(dir, 'state'), extraArgs: ['--file-target-dir', disks] });
    await waitFor(async () => ((await raw(c.apiUrl, 'GET', `/v1/nodes/${node}/agent`)).json as { connected: boolean }).connected, 30_000, 'agent');
  });
  afterAll(async () => {
    await agent?.kill('SIGTERM');
    await c?.kill('SIGTERM');
    await new Promise<void>((r) => server.close(() => r()));
  });

  const run = async (name: string, params: Record<string, unknown>): Promise<Cmd> => {
    const r = await raw(c.apiUrl, 'POST', `/v1/nodes/${node}/agent/commands`, { body: { name, params } });
    expect(r.status, r.text).toBe(202);
    const id = (r.json as Cmd).id;
    return waitFor(async () => {
      const x = (await raw(c.apiUrl, 'GET', `/v1/nodes/${node}/agent/commands/${id}`)).json as Cmd;
      return x.command_status !== 'PENDING' && x.command_status !== 'RUNNING' ? x : undefined;
    }, 30_000, name);
  };

  it('write_image onto a system file, a file elsewhere or a symlink out of the directory is refused; nothing is touched', async () => {
    const victim = path.join(outside, 'precious.bin');
    writeFileSync(victim, 'do not overwrite');
    const link = path.join(disks, 'sneaky.img');
    symlinkSync(victim, link);
    for (const target of ['/etc/hostname', victim, link, path.join(disks, '..', 'x.img')]) {
      const r = await run('deploy.write_image', { url, checksum: digest, target });
      expect(r.command_status, target).toBe('FAILED');
      expect(r.command_error?.code).toBe('INVALID_PARAMS');
      expect(r.command_error?.message).toMatch(/target: .* is not a disk of this machine/);
    }
    expect(readFileSync(victim, 'utf8')).toBe('do not overwrite');
  });

  it('erase on files outside the directory is refused; a stand-in disk inside it is erased', async () => {
    const victim = path.join(outside, 'data.bin');
    writeFileSync(victim, randomBytes(64 * 1024));
    const before = readFileSync(victim);
    const r = await run('clean.erase_devices_metadata', { devices: [victim] });
    expect(r.command_status).toBe('FAILED');
    expect(r.command_error?.message).toMatch(/devices\.0: .* is not a disk of this machine/);
    expect(readFileSync(victim).equals(before)).toBe(true);
    const disk = path.join(disks, 'disk0.img');
    writeFileSync(disk, randomBytes(3 * 1024 * 1024));
    const ok = await run('clean.erase_devices_metadata', { devices: [disk] });
    expect(ok.command_status).toBe('SUCCEEDED');
    expect(readFileSync(disk).subarray(0, 1024 * 1024).every((b) => b === 0)).toBe(true);
    const w = await run('deploy.write_image', { url, checksum: digest, target: disk });
    expect(w.command_status).toBe('SUCCEEDED');
  });
});
