/**
 * Debian's python3-sushy — the Redfish library Ironic uses — against the simulator in a separate
 * process: session login, power state, reset, thermal, boot override, as with a real BMC.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { admin, startSim, type SimProc } from './helpers.js';

const run = promisify(execFile);

const SCRIPT = `
import json, sys, time
import sushy
m = json.load(open(sys.argv[1]))
b = m['bmcs'][int(sys.argv[2])]
verify = m['ca_file'] if sys.argv[3] == 'ca' else False
auth = sushy.auth.SessionAuth(username=b['username'], password=b['password'])
s = sushy.Sushy(b['address'], auth=auth, verify=verify)
out = {}
system = s.get_system('/redfish/v1/Systems/' + b['system_id'])
out['power_before'] = str(system.power_state)
system.reset_system(sushy.RESET_ON)
deadline = time.time() + 20
while time.time() < deadline:
    system.refresh()
    if str(system.power_state) == str(sushy.POWER_STATE_ON):
        break
    time.sleep(0.1)
out['power_after'] = str(system.power_state)
th = s.get_chassis('/redfish/v1/Chassis/' + b['system_id']).thermal
out['temps'] = {t.name: t.reading_celsius for t in th.temperatures}
out['fans'] = {f.name: f.reading for f in th.fans}
out['macs'] = sorted(e.mac_address.lower() for e in system.ethernet_interfaces.get_members())
system.set_system_boot_options(sushy.BOOT_SOURCE_TARGET_PXE, enabled=sushy.BOOT_SOURCE_ENABLED_ONCE)
system.refresh()
out['boot'] = [str(system.boot.target), str(system.boot.enabled)]
out['session_timeout'] = s.get_session_service().session_timeout
out['health'] = str(system.status.health)
print(json.dumps(out))
`;

async function sushy(sim: SimProc, index: number, verify: 'ca' | 'off') {
  const script = path.join(sim.dir, 'check.py');
  writeFileSync(script, SCRIPT);
  // REQUESTS_CA_BUNDLE would override verify=False inside requests; a real Ironic host sets neither.
  const env = { ...process.env };
  delete env.REQUESTS_CA_BUNDLE;
  delete env.CURL_CA_BUNDLE;
  const { stdout } = await run('/usr/bin/python3', ['-W', 'ignore', script, path.join(sim.dir, 'manifest.json'), String(index), verify], { env, timeout: 60_000 });
  return JSON.parse(stdout.trim().split('\n').pop()!);
}

describe('python3-sushy against the simulator (one address per BMC)', () => {
  let sim: SimProc;
  beforeAll(async () => {
    sim = await startSim(['--bmcs', '4', '--profile', 'realistic', '--profile-override', '{"latency_ms":{"get":[5,20],"login":[50,100],"action":[10,30]},"power_delay_ms":[500,1500],"flapping_fraction":0,"storm_fraction":0,"slow_fraction":0}']);
  });
  afterAll(async () => sim?.stop());

  it('logs in with a session, reads and changes power, reads thermal, sets boot', async () => {
    const out = await sushy(sim, 2, 'off');
    expect(out.power_before).toMatch(/off/i);
    expect(out.power_after).toMatch(/on/i);
    expect(Object.keys(out.temps)).toContain('CPU1 Temp');
    expect(out.temps['CPU1 Temp']).toBeGreaterThan(20);
    expect(Object.values(out.fans).every((v) => typeof v === 'number')).toBe(true);
    expect(out.macs).toEqual([...sim.manifest.bmcs[2]!.macs].sort());
    expect(out.boot[0]).toMatch(/pxe/i);
    expect(out.boot[1]).toMatch(/once/i);
    expect(out.session_timeout).toBe(1800);
    expect(out.health).toMatch(/ok/i);
    const bmc = (await admin(sim, 'GET', '/bmcs/2')).json;
    expect(bmc.counters.sessions_created).toBe(1);
    expect(bmc.counters.resets).toBe(1);
    expect(bmc.machine.power).toBe('On');
    // Other BMCs were not touched: each BMC is its own service.
    expect((await admin(sim, 'GET', '/bmcs/1')).json.counters.requests_get).toBe(0);
  });
});

describe('python3-sushy with certificate verification (single address, sushy-tools style)', () => {
  let sim: SimProc;
  beforeAll(async () => {
    sim = await startSim(['--bmcs', '3', '--profile', 'ideal', '--single-address', '127.0.0.1:{port}']);
  });
  afterAll(async () => sim?.stop());

  it('verifies the simulator certificate with the manifest CA and drives any system', async () => {
    expect(new Set(sim.manifest.bmcs.map((b) => b.address)).size).toBe(1);
    expect(sim.manifest.bmcs[0]!.address).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const out = await sushy(sim, 1, 'ca');
    expect(out.power_after).toMatch(/on/i);
    const stats = (await admin(sim, 'GET', '/stats')).json;
    expect(stats.workers).toBe(1);
    expect(stats.fleet.sessions_created).toBe(1);
  });
});
