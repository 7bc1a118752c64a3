import { describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import { scrubSecrets, MASK } from '../../shared/redact.js';
import { createLogger } from '../../shared/logger.js';

describe('secret scrubbing', () => {
  it('masks secret-named keys at any depth and leaves the rest', () => {
    const input = {
      driver_info: { redfish_address: 'https://10.0.0.1', redfish_password: 'hunter2', nested: { ipmi_password: 'x', list: [{ api_key: 'k' }] } },
      agent_token: 'tok',
      headers: { Authorization: 'Basic abc', 'X-Auth-Token': 'sess' },
      agent_token_required: true,
    };
    const out = scrubSecrets(input);
    expect(out.driver_info.redfish_password).toBe(MASK);
    expect(out.driver_info.nested.ipmi_password).toBe(MASK);
    expect(out.driver_info.nested.list[0]!.api_key).toBe(MASK);
    expect(out.driver_info.redfish_address).toBe('https://10.0.0.1');
    expect(out.agent_token).toBe(MASK);
    expect(out.headers.Authorization).toBe(MASK);
    expect(out.headers['X-Auth-Token']).toBe(MASK);
    expect(out.agent_token_required).toBe(true);
    expect(input.driver_info.redfish_password).toBe('hunter2'); // input untouched
  });

  it('pino logger never writes a secret field, however nested, including in errors', async () => {
    const chunks: string[] = [];
    const sink = new Writable({
      write(c, _e, cb) {
        chunks.push(c.toString());
        cb();
      },
    });
    const log = createLogger({ destination: sink, level: 'debug' });
    const err = Object.assign(new Error('boom'), { session_token: 'S3SSION-abc' });
    log.info({ node: { driver_info: { redfish_password: 'P4ss-w0rd-xyz' } }, agent_token: 'T0KEN-123' }, 'hello');
    log.error({ err }, 'failed');
    log.info({ req: { headers: { authorization: 'Basic c2VjcmV0' } } }, 'req');
    await new Promise((r) => setImmediate(r));
    const text = chunks.join('');
    expect(text).toContain('hello');
    expect(text).toContain('boom');
    for (const secret of ['P4ss-w0rd-xyz', 'T0KEN-123', 'S3SSION-abc', 'c2VjcmV0']) expect(text).not.toContain(secret);
  });
});
