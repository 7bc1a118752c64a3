/** Firmware plugin configuration: bad files are refused naming the field. */
import { describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { GenericCommandFirmware, loadGenericFirmwareConfig, updateFirmware } from '../../agent/firmware.js';
import { tmpDir } from '../helpers.js';

const write = (v: unknown) => {
  const f = path.join(tmpDir('ironfleet-fw-'), 'fw.json');
  writeFileSync(f, typeof v === 'string' ? v : JSON.stringify(v));
  return f;
};

describe('generic firmware config', () => {
  it('loads a valid config with the default timeout', () => {
    const c = loadGenericFirmwareConfig(write({ components: { bios: { version_command: ['cat', '/x'], update_command: ['flash', '{payload}'] } } }));
    expect(c.components.bios!.timeout_s).toBe(1800);
    expect(new GenericCommandFirmware(c).components()).toEqual(['bios']);
  });

  it.each([
    ['no {payload}', { components: { bios: { version_command: ['v'], update_command: ['flash'] } } }, /components\.bios\.update_command.*\{payload\}/],
    ['empty command', { components: { bios: { version_command: [], update_command: ['f', '{payload}'] } } }, /components\.bios\.version_command/],
    ['unknown key', { components: { bios: { version_command: ['v'], update_command: ['f', '{payload}'], shell: true } } }, /shell/],
    ['bad name', { components: { 'b i o s': { version_command: ['v'], update_command: ['f', '{payload}'] } } }, /components/],
    ['not JSON', '{', /cannot read firmware config/],
  ])('%s is refused naming the field', (_n, v, re) => {
    expect(() => loadGenericFirmwareConfig(write(v))).toThrow(re);
  });

  it('an unknown component is refused before anything is downloaded', async () => {
    await expect(updateFirmware([], { component: 'bios', url: 'http://127.0.0.1:9/none', checksum: 'a'.repeat(64) })).rejects.toMatchObject({ code: 'UNKNOWN_COMPONENT', message: /none configured/ });
  });
});
