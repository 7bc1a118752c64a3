/**
 * The flow engine, constructed directly from narrow dependencies (flow-harness.ts): deploy,
 * automated and manual clean, service; hold/unhold; wait; abort; an agent lost past its grace; the
 * fast-track lease expiring — and a hardware type defined by this test alone that deploys through
 * its own step without the engine knowing it.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { HardwareType, PowerState } from '../../conductor/drivers/base.js';
import { fakeHardware } from '../../conductor/drivers/fake-hardware.js';
import { DIRECT_DEPLOY_STEPS, deployImageParams } from '../../conductor/steps/agent-deploy.js';
import { AGENT_RAID_STEPS } from '../../conductor/steps/agent-raid.js';
import { POWER_STEPS } from '../../conductor/steps/power.js';
import { stepsOf } from '../../conductor/steps/registry.js';
import { internalInfo } from '../../conductor/internal-info.js';
import type { Node } from '../../conductor/db/store.js';
import { harness, type Harness, type ScriptedAgent } from './flow-harness.js';
import { waitFor } from '../helpers.js';

/** Power kept in memory; any power-on boots the ramdisk (the scripted agent connects 50 ms later). */
function agentLab(agent: () => ScriptedAgent, power: Map<string, PowerState>): HardwareType {
  const fake = fakeHardware();
  return {
    ...fake,
    name: 'agent-lab',
    power: {
      name: 'lab',
      validate() {},
      steps: POWER_STEPS,
      async getPowerState(node) {
        return power.get(node.uuid) ?? 'power off';
      },
      async setPowerState(node, target) {
        const s: PowerState = target === 'power off' || target === 'soft power off' ? 'power off' : 'power on';
        power.set(node.uuid, s);
        if (s === 'power on') setTimeout(() => void agent().connect(node.id), 50);
        return s;
      },
    },
    deploy: { name: 'direct', validate() {}, needsAgent: true, steps: DIRECT_DEPLOY_STEPS, validateInstance: (n) => void deployImageParams(n) },
    raid: { name: 'agent', validate() {}, steps: AGENT_RAID_STEPS },
  };
}

const IMAGE = { image_source: 'http://127.0.0.1:1/img.raw', image_os_hash_value: 'a'.repeat(64), image_os_hash_algo: 'sha256' };

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

async function labHarness(settings = {}) {
  const power = new Map<string, PowerState>();
  let agentRef: ScriptedAgent | undefined;
  h = await harness({ settings, hardware: [agentLab(() => agentRef!, power)] });
  agentRef = h.agent;
  return { h, power };
}

const history = async (n: Node) => (await h!.store.listHistory(n.id, { limit: 100 })).map((e) => e.event);

describe('FlowEngine from narrow dependencies', () => {
  it('deploys through the agent: boot_agent, get_deploy_steps, write_image, prepare_instance_boot, boot_instance', async () => {
    const { h, power } = await labHarness();
    h.agent.autoAnswer = {
      'deploy.get_deploy_steps': { deploy_steps: { deploy: [] } },
      'deploy.write_image': { bytes_written: 1024, target: '/dev/vda', checksum_algo: 'sha256', disk_format: 'raw' },
    };
    const n = await h.node('agent-lab', 'available', { instance_info: IMAGE });
    await h.start(n, 'deploy', 'deploy');
    const done = await h.waitState(n, 'active');
    expect(h.agent.sent.map((c) => c.name)).toEqual(['deploy.get_deploy_steps', 'deploy.write_image']);
    expect(h.agent.last('deploy.write_image')!.params).toMatchObject({ url: IMAGE.image_source, checksum: IMAGE.image_os_hash_value, checksum_algo: 'sha256' });
    expect(done.driver_internal_info.fake_boot_device).toEqual({ boot_device: 'disk', persistent: true });
    expect(internalInfo(done).flow).toBeUndefined();
    expect(power.get(n.uuid)).toBe('power on');
    const events = await history(n);
    expect(events.join('\n')).toMatch(/Image written/);
    expect(events.some((e) => /Image written: 1024 bytes to \/dev\/vda/.test(e))).toBe(true);
    // The finish writes history right after the state moves.
    await waitFor(async () => (await history(n)).some((e) => /deploy finished \(4 steps\): now active/.test(e)), 5000, 'finish recorded');
  });

  it('automated clean runs the agent steps by priority, honours a priority override, and powers off after', async () => {
    const { h, power } = await labHarness({ eraseDevicesPriority: 0 });
    h.agent.autoAnswer = {
      'clean.get_clean_steps': {
        clean_steps: {
          deploy: [
            { interface: 'deploy', step: 'erase_devices', priority: 10 },
            { interface: 'deploy', step: 'erase_devices_metadata', priority: 99 },
            { interface: 'deploy', step: 'no_such_step', priority: 50 },
          ],
        },
      },
      'clean.erase_devices_metadata': {},
    };
    const n = await h.node('agent-lab', 'manageable');
    await h.start(n, 'provide', 'clean');
    await h.waitState(n, 'available');
    // erase_devices was overridden to priority 0 (skipped); the unknown step is not run.
    expect(h.agent.sent.map((c) => c.name)).toEqual(['clean.get_clean_steps', 'clean.erase_devices_metadata']);
    expect(power.get(n.uuid)).toBe('power off');
    expect(h.agent.isConnected(n.id)).toBe(false);
  });

  it('hold parks a manual clean until unhold; wait parks it on a timer; then it finishes', async () => {
    h = await harness();
    const n = await h.node('fake-hardware', 'manageable');
    await h.start(n, 'clean', 'clean', [{ interface: 'deploy', step: 'hold' }, { interface: 'deploy', step: 'wait', args: { seconds: 1 } }]);
    const held = await h.waitState(n, 'clean hold');
    expect(internalInfo(held).flow?.wait?.type).toBe('hold');
    await new Promise((r) => setTimeout(r, 300));
    expect(await h.state(n)).toBe('clean hold'); // nothing moves it but unhold
    await h.tasks.withLock(n.id, 'unhold', async (task) => {
      await h!.ops.move(task, 'unhold');
      await h!.flows.unhold(task);
    });
    const waiting = await waitFor(async () => {
      const cur = (await h!.store.getNodeById(n.id))!;
      return internalInfo(cur).flow?.wait?.type === 'timer' && cur;
    }, 5000, 'parked on the wait timer');
    expect(waiting.provision_state).toBe('clean wait');
    const t0 = Date.now();
    await h.waitState(n, 'manageable');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(500);
  });

  it('abort stops a held flow: no more steps, nothing left scheduled for it', async () => {
    h = await harness();
    const n = await h.node('fake-hardware', 'manageable');
    await h.start(n, 'clean', 'clean', [{ interface: 'deploy', step: 'hold' }, { interface: 'power', step: 'reboot' }]);
    await h.waitState(n, 'clean hold');
    await h.tasks.withLock(n.id, 'abort', async (task) => {
      await h!.ops.move(task, 'abort');
      await h!.flows.abort(task);
    });
    const after = (await h.store.getNodeById(n.id))!;
    expect(after.provision_state).toBe('clean failed');
    expect(internalInfo(after).flow).toBeUndefined();
    expect(await h.store.listDeferred({ nodeId: n.id, states: ['CREATED', 'PENDING_RETRY'] })).toEqual([]);
  });

  it('an agent lost past the grace period fails the step, naming the command; one back from the same boot goes on', async () => {
    const { h } = await labHarness();
    const lost = await h.node('agent-lab', 'manageable');
    await h.start(lost, 'clean', 'clean', [{ interface: 'deploy', step: 'erase_devices_metadata' }]);
    await waitFor(() => h.agent.last('clean.erase_devices_metadata'), 10_000, 'command sent');
    h.agent.disconnect(lost.id, 'network gone');
    const failed = await h.waitState(lost, 'clean failed', 10_000);
    expect(failed.last_error).toMatch(/agent lost while running clean\.erase_devices_metadata: connection lost \(network gone\)/);

    const back = await h.node('agent-lab', 'manageable');
    h.agent.sent.length = 0;
    await h.start(back, 'clean', 'clean', [{ interface: 'deploy', step: 'erase_devices_metadata' }]);
    const cmd = await waitFor(() => h.agent.last('clean.erase_devices_metadata'), 10_000, 'command sent');
    const boot = h.agent.bootId(back.id)!;
    h.agent.disconnect(back.id, 'blip');
    await h.agent.connect(back.id, boot); // same boot, within the 1 s grace
    await h.agent.answer(cmd.id, {});
    await h.waitState(back, 'manageable');
  });

  it('fast-track: the agent stays under a lease after cleaning; the lease expiring powers the node off', async () => {
    const { h, power } = await labHarness({ fastTrack: true, fastTrackTimeoutS: 1 });
    h.agent.autoAnswer = { 'clean.erase_devices_metadata': {} };
    const n = await h.node('agent-lab', 'manageable');
    await h.start(n, 'clean', 'clean', [{ interface: 'deploy', step: 'erase_devices_metadata' }]);
    const done = await h.waitState(n, 'manageable');
    expect(internalInfo(done).fast_track_lease_until).toBeDefined();
    expect(h.agent.isConnected(n.id)).toBe(true);
    expect(power.get(n.uuid)).toBe('power on');
    await waitFor(() => power.get(n.uuid) === 'power off', 10_000, 'lease expiry powered off');
    expect(h.agent.isConnected(n.id)).toBe(false);
    await waitFor(async () => (await history(n)).includes('Fast-track lease expired: powered off'), 5000, 'history');
  });

  it('service runs its steps on an active node and returns it to active', async () => {
    h = await harness();
    const n = await h.node('fake-hardware', 'active', { power_state: 'power on' });
    await h.start(n, 'service', 'service', [{ interface: 'power', step: 'reboot' }]);
    await h.waitState(n, 'active');
    await waitFor(async () => (await history(n)).some((e) => /service finished \(1 steps\): now active/.test(e)), 5000, 'finish recorded');
  });

  it('a hardware type defined only by this test deploys through its own step; steps it does not offer are refused', async () => {
    const fake = fakeHardware();
    const testHardware: HardwareType = {
      ...fake,
      name: 'test-hardware',
      deploy: {
        name: 'stamp',
        validate() {},
        needsAgent: false,
        steps: [
          {
            interface: 'deploy',
            step: 'stamp_disk',
            deployPriority: 70,
            async run(ctx) {
              await ctx.ops.patchInternal(ctx.task, { stamped_by: ctx.hw.name });
              return 'done';
            },
          },
          {
            interface: 'deploy',
            step: 'power_on_instance',
            deployPriority: 10,
            async run(ctx) {
              await ctx.ops.setPower(ctx.task, 'power on');
              return 'done';
            },
          },
        ],
      },
    };
    h = await harness({ hardware: [testHardware] });
    const n = await h.node('test-hardware', 'available');
    await h.start(n, 'deploy', 'deploy');
    const done = await h.waitState(n, 'active');
    expect(done.driver_internal_info.stamped_by).toBe('test-hardware');
    expect(done.power_state).toBe('power on');
    await waitFor(async () => (await history(n)).some((e) => /deploy finished \(2 steps\)/.test(e)), 5000, 'finish recorded');
    expect(stepsOf(testHardware).validate('deploy', [{ interface: 'deploy', step: 'write_image' }])).toBe('deploy_steps.0: unknown step deploy.write_image');
    expect(stepsOf(testHardware).validate('deploy', [{ interface: 'deploy', step: 'stamp_disk', args: { x: 1 } }])).toBe('deploy_steps.0.args.x: step deploy.stamp_disk takes no arguments');
  });
});
