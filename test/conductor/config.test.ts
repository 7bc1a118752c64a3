import { describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { compileConfig, loadConfig } from '../../conductor/config.js';
import { ConfigError } from '../../shared/errors.js';
import { tmpDir } from '../helpers.js';

function keyOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).key;
  }
  throw new Error('expected a ConfigError');
}

describe('conductor config', () => {
  it('fills every default', () => {
    const c = compileConfig({});
    expect(c.api.port).toBe(6385);
    expect(c.api.host).toBe('127.0.0.1');
    expect(c.agent.heartbeat_timeout_s).toBe(300);
    expect(c.agent.md5_allowed).toBe(false);
    expect(c.database.url).toMatch(/^sqlite:/);
    // BMC sockets outlive the default sweep interval (60 s), so sweeps reuse them.
    expect(c.redfish.keep_alive_s).toBeGreaterThan(c.power_sync.interval_s);
  });

  it('names the bad key: wrong type, out of range, unknown key', () => {
    expect(keyOf(() => compileConfig({ api: { port: 'x' } }))).toBe('api.port');
    expect(keyOf(() => compileConfig({ agent: { window: 0 } }))).toBe('agent.window');
    expect(keyOf(() => compileConfig({ api: { prot: 1 } }))).toBe('api.prot');
    expect(keyOf(() => compileConfig({ bogus: true }))).toBe('bogus');
    expect(keyOf(() => compileConfig({ redfish: { keep_alive_s: 0 } }))).toBe('redfish.keep_alive_s');
    expect(keyOf(() => compileConfig({ redfish: { sweep_window: -1 } }))).toBe('redfish.sweep_window');
    expect(keyOf(() => compileConfig({ redfish: { sweep_window: 2.5 } }))).toBe('redfish.sweep_window');
    expect(compileConfig({ redfish: { sweep_window: 0 } }).redfish.sweep_window).toBe(0); // 0: every read at once
    expect(() => compileConfig({ api: { prot: 1 } })).toThrow(/prot/);
  });

  it('refuses noauth on a non-loopback address unless explicitly allowed', () => {
    expect(keyOf(() => compileConfig({ api: { host: '0.0.0.0' } }))).toBe('api.auth.strategy');
    expect(compileConfig({ api: { host: '0.0.0.0', allow_insecure_noauth: true } }).api.host).toBe('0.0.0.0');
    expect(compileConfig({ api: { host: '0.0.0.0', auth: { strategy: 'token', tokens: ['0123456789abcdef0'] } } }).api.auth.strategy).toBe('token');
    expect(keyOf(() => compileConfig({ api: { auth: { strategy: 'token' } } }))).toBe('api.auth.tokens');
  });

  it('reads YAML files and applies IRONFLEET_ env overrides on top', () => {
    const dir = tmpDir();
    const f = path.join(dir, 'c.yaml');
    writeFileSync(f, 'api:\n  port: 7000\nagent:\n  window: 32\n');
    const c = loadConfig({ file: f, env: { IRONFLEET_API__PORT: '7001', IRONFLEET_LOGGING__LEVEL: 'debug', IRONFLEET_AGENT__MD5_ALLOWED: 'true' } });
    expect(c.api.port).toBe(7001);
    expect(c.agent.window).toBe(32);
    expect(c.logging.level).toBe('debug');
    expect(c.agent.md5_allowed).toBe(true);
  });

  it('reports unreadable and malformed files clearly', () => {
    const dir = tmpDir();
    expect(() => loadConfig({ file: path.join(dir, 'missing.yaml'), env: {} })).toThrow(/cannot read config file/);
    const bad = path.join(dir, 'bad.yaml');
    writeFileSync(bad, 'api: [unclosed\n');
    expect(() => loadConfig({ file: bad, env: {} })).toThrow(/not valid YAML/);
    const list = path.join(dir, 'list.yaml');
    writeFileSync(list, '- a\n- b\n');
    expect(() => loadConfig({ file: list, env: {} })).toThrow(/mapping/);
    expect(keyOf(() => loadConfig({ env: { IRONFLEET_API__PORT: '99999' } }))).toBe('api.port');
  });
});
