/**
 * Secrets never at rest in clear, never in a log, never in API output.
 *
 * 1. A lab run (`ironfleet lab`, debug log): BMC passwords from the simulator's manifest, the live
 *    Redfish session tokens (read from the database and opened with the key file mid-run) and the
 *    image server's basic-auth credentials (carried in every node's image URL) are searched for in
 *    the raw database files and the full conductor log after the run.
 * 2. A conductor process with a raw agent: the agent token issued in Welcome and presented on
 *    reconnect, a BMC password and URL credentials given through the API are nowhere in the
 *    database file, the debug log, the API's answers or node history.
 */
import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { BIN, startConductorProcess, tmpDir, waitFor } from '../helpers.js';
import { SecretBox } from '../../conductor/secret-box.js';
import { openDatabase } from '../../conductor/db/database.js';
import { Store } from '../../conductor/db/store.js';
import { hello, raw, rawAgent } from './helpers.js';

/** Every byte the database left on disk (main file, WAL, shared memory). */
function dbBytes(dir: string): Buffer {
  return Buffer.concat(readdirSync(dir).filter((f) => f.startsWith('ironfleet.db')).map((f) => readFileSync(path.join(dir, f))));
}

/**
 * URL userinfo that is not masked: scheme://user:password@, with only the characters RFC 3986
 * allows in userinfo (so printable ASCII, no '|'). Why that strict: the database file is binary,
 * and the BMC session table's key ("https://host:port|user") followed by a row id of 64 (byte '@')
 * in its index matched a looser pattern — a leak that was not one.
 */
const CLEAR_USERINFO = /:\/\/[A-Za-z0-9\-._~%!$&()+,;=]+:[A-Za-z0-9\-._~%!$&()+,;=:]+@/;

/** The first clear userinfo in `text`, with some context (null when there is none). */
function clearUserinfo(text: string): string | null {
  const m = CLEAR_USERINFO.exec(text);
  return m ? JSON.stringify(text.slice(Math.max(0, m.index - 60), m.index + m[0].length + 20)) : null;
}

describe('secrets at rest and in logs', () => {
  it('a lab run: no BMC password, session token or image URL credential in the database or the debug log', async () => {
    const dir = tmpDir('ironfleet-sec-lab-');
    const port = 30_000 + Math.floor(Math.random() * 9_000);
    const lab = spawn(
      process.execPath,
      // The test stops the lab itself once it has looked mid-run; --duration is only the backstop.
      [BIN, 'lab', '--nodes', '6', '--no-qemu', '--duration', '150', '--dir', dir, '--log-level', 'debug', '--api-port', String(port), '--agent-port', String(port + 1), '--bmc-port', String(port + 2), '--sim-admin-port', String(port + 3)],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    lab.stdout!.on('data', (d) => (out += d));
    lab.stderr!.on('data', (d) => (out += d));
    const exited = new Promise<number | null>((r) => lab.once('exit', r));
    try {
      const api = `http://127.0.0.1:${port}`;
      // Alone the lab deploys at about 22 s; a loaded 2-core CI box can take several times that.
      const t0 = Date.now();
      await waitFor(() => /nodes deployed/.test(out) || lab.exitCode !== null, 120_000, 'lab deploys').catch((err: Error) => {
        throw new Error(`${err.message} (${Math.round((Date.now() - t0) / 1000)} s; lab ${lab.exitCode === null ? 'still running' : `exited ${lab.exitCode}`}); its output:\n${out}`);
      });
      expect(out, 'the lab exited before deploying').toMatch(/nodes deployed/);
      // Mid-run: the sessions the conductor holds, opened with its key (the test plays the operator).
      const box = SecretBox.load(path.join(dir, 'secrets.key'));
      const db = new Database(path.join(dir, 'ironfleet.db'), { readonly: true, fileMustExist: true });
      const sealed = db.prepare('SELECT token FROM bmc_sessions').all() as Array<{ token: string }>;
      db.close();
      expect(sealed.length).toBeGreaterThan(0);
      for (const s of sealed) expect(s.token).toMatch(/^enc:v1:/);
      const tokens = sealed.map((s) => box.open(s.token));
      // The API shows masked values only.
      const nodes = await raw(api, 'GET', '/v1/nodes/detail');
      expect(nodes.status).toBe(200);
      expect(nodes.text).toContain('******');
      expect(nodes.text).not.toMatch(CLEAR_USERINFO);
      const manifest = JSON.parse(readFileSync(path.join(dir, 'fleet.json'), 'utf8')) as { bmcs: Array<{ password: string }> };
      const passwords = manifest.bmcs.map((b) => b.password);
      for (const p of passwords) expect(nodes.text).not.toContain(p);

      lab.kill('SIGTERM'); // the lab logs out of every BMC, stops its children and exits 0
      expect(await exited).toBe(0);
      const log = readFileSync(path.join(dir, 'conductor.log'), 'utf8');
      const bytes = dbBytes(dir);
      expect(log.split('\n').filter((l) => l.includes('"level":20')).length).toBeGreaterThan(10); // it really is a debug log
      expect(log).toContain('******@'); // image URLs were logged — masked
      for (const secret of [...passwords, ...tokens]) {
        expect(log.includes(secret), `log holds ${secret.slice(0, 4)}…`).toBe(false);
        expect(bytes.includes(Buffer.from(secret)), `database holds ${secret.slice(0, 4)}…`).toBe(false);
      }
      expect(clearUserinfo(log)).toBeNull();
      expect(clearUserinfo(bytes.toString('latin1'))).toBeNull();
      // The key file and the database are private to the conductor's user.
      expect(statSync(path.join(dir, 'secrets.key')).mode & 0o077).toBe(0);
      expect(statSync(path.join(dir, 'ironfleet.db')).mode & 0o077).toBe(0);
    } finally {
      if (lab.exitCode === null) lab.kill('SIGTERM');
      await exited;
    }
  }, 200_000);

  it('agent token, BMC password and URL credentials given through the API and the agent endpoint', async () => {
    const dir = tmpDir('ironfleet-sec-secrets-');
    const c = await startConductorProcess({ dir, env: { IRONFLEET_LOGGING__LEVEL: 'debug' } });
    try {
      const password = 'Bmc-Passw0rd-9f3a';
      const imagePw = 'img-S3cret-77';
      const sig = 'sig-0a1b2c3d4e5f';
      const n = await raw(c.apiUrl, 'POST', '/v1/nodes', {
        body: {
          driver: 'fake-hardware',
          name: 'sec-1',
          driver_info: { redfish_address: `https://root:${password}@127.0.0.1:1`, redfish_username: 'root', redfish_password: password },
          instance_info: { image_source: `https://deploy:${imagePw}@images.example/img.raw?temp_url_sig=${sig}&temp_url_expires=1`, image_checksum: 'a'.repeat(64) },
        },
      });
      expect(n.status, n.text).toBe(201);
      const uuid = (n.json as { uuid: string }).uuid;
      await raw(c.apiUrl, 'POST', '/v1/ports', { body: { address: '52:54:00:cc:00:01', node_uuid: uuid } });
      const patched = await raw(c.apiUrl, 'PATCH', `/v1/nodes/${uuid}`, { body: [{ op: 'add', path: '/extra/mirror', value: `http://u:${imagePw}@mirror.example/` }] });
      const bad = await raw(c.apiUrl, 'PATCH', `/v1/nodes/${uuid}`, { body: [{ op: 'replace', path: '/driver', value: `https://x:${password}@nope` }] });
      expect(bad.status).toBe(400);

      // The agent: lookup issues a token; reconnecting presents it in metadata.
      const a = rawAgent(c.agentAddr);
      a.call.write(hello(['52:54:00:cc:00:01'], 'boot-sec'));
      const w = await a.welcome();
      const token = w.body?.$case === 'welcome' ? w.body.value.agentToken : '';
      expect(token.length).toBe(43);
      a.close();
      const b = rawAgent(c.agentAddr, token);
      b.call.write(hello(['52:54:00:cc:00:01'], 'boot-sec'));
      await b.welcome();
      b.close();

      const answers = [n.text, patched.text, bad.text, (await raw(c.apiUrl, 'GET', `/v1/nodes/${uuid}`)).text, (await raw(c.apiUrl, 'GET', `/v1/nodes/${uuid}/history?detail=true`)).text, (await raw(c.apiUrl, 'GET', '/v1/nodes/detail')).text];
      await c.kill('SIGTERM');
      const log = c.logs();
      expect(log).toContain('agent hello'); // the debug line with the metadata was written
      const bytes = dbBytes(dir);
      for (const secret of [password, imagePw, sig, token]) {
        for (const a2 of answers) expect(a2).not.toContain(secret);
        expect(log.includes(secret), `log holds ${secret.slice(0, 6)}`).toBe(false);
        expect(bytes.includes(Buffer.from(secret)), `database holds ${secret.slice(0, 6)}`).toBe(false);
      }
      // With the key, the conductor's data layer still reads the real values.
      const store = new Store(await openDatabase(`sqlite://${path.join(dir, 'ironfleet.db')}`), SecretBox.load(path.join(dir, 'secrets.key')));
      const node = await store.getNodeByUuid(uuid);
      await store.close();
      expect(node!.driver_info.redfish_password).toBe(password);
      expect(String(node!.instance_info.image_source)).toContain(`deploy:${imagePw}@`);
    } finally {
      await c.kill('SIGTERM');
    }
  }, 90_000);

  it('ironfleet secrets rotate: every value re-sealed with a new key, old keys dropped on request, the conductor reads on', async () => {
    const dir = tmpDir('ironfleet-sec-rotate-');
    const keyFile = path.join(dir, 'secrets.key');
    const db = `sqlite://${path.join(dir, 'ironfleet.db')}`;
    const c = await startConductorProcess({ dir });
    const n = await raw(c.apiUrl, 'POST', '/v1/nodes', { body: { driver: 'fake-hardware', name: 'rot-1', driver_info: { redfish_password: 'Rotate-Me-1234' } } });
    expect(n.status).toBe(201);
    await c.kill('SIGTERM');
    const firstKey = readFileSync(keyFile, 'utf8').split('\n').find((l) => /^k/.test(l))!.split(' ')[0]!;
    const rotate = (...extra: string[]) =>
      new Promise<string>((resolve, reject) => {
        const p = spawn(process.execPath, [BIN, 'secrets', 'rotate', '--database', db, ...extra], { env: { ...process.env, IRONFLEET_SECURITY__SECRETS_KEY_FILE: keyFile } });
        let o = '';
        p.stdout.on('data', (d) => (o += d));
        p.stderr.on('data', (d) => (o += d));
        p.on('exit', (code) => (code === 0 ? resolve(o) : reject(new Error(o))));
      });
    const out = await rotate();
    expect(out).toMatch(/sealed [1-9]\d* row\(s\) with new key k/);
    const keys = () => readFileSync(keyFile, 'utf8').split('\n').filter((l) => /^k/.test(l)).map((l) => l.split(' ')[0]!);
    expect(keys()).toHaveLength(2);
    expect(keys()[1]).toBe(firstKey);
    const sealedWith = () => {
      const d = new Database(path.join(dir, 'ironfleet.db'), { readonly: true });
      const row = d.prepare("SELECT driver_info FROM nodes WHERE name = 'rot-1'").get() as { driver_info: string };
      d.close();
      return (JSON.parse(row.driver_info) as { redfish_password: string }).redfish_password.split(':')[2];
    };
    expect(sealedWith()).toBe(keys()[0]);
    expect(await rotate('--drop-old')).toMatch(/dropped keys/);
    expect(keys()).toHaveLength(1);
    expect(keys()).not.toContain(firstKey);
    expect(sealedWith()).toBe(keys()[0]);
    expect(statSync(keyFile).mode & 0o077).toBe(0);
    const store = new Store(await openDatabase(db), SecretBox.load(keyFile));
    expect((await store.findNode('rot-1'))!.driver_info.redfish_password).toBe('Rotate-Me-1234');
    await store.close();
    const c2 = await startConductorProcess({ dir, name: 'after-rotate' });
    expect((await raw(c2.apiUrl, 'GET', '/v1/nodes/rot-1')).status).toBe(200);
    await c2.kill('SIGTERM');
  }, 60_000);
});
