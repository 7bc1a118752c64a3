/**
 * Out-of-band firmware: starts an update through the node's firmware interface and records the
 * BMC task on the node; nothing waits on it. A timer polls every node with an update in flight
 * until its task ends, then records the new versions (or the failure) under the node lock. The
 * task lives in driver_internal_info, so a restart loses nothing.
 */
import type { Logger } from 'pino';
import type { Node, Store } from './db/store.js';
import type { TaskManager } from './task-manager.js';
import type { NodeOps } from './node-ops.js';
import type { DriverRegistry } from './drivers/registry.js';
import { internalInfo } from './internal-info.js';
import { InvalidInputError, InvalidStateError, NodeLockedError, errorMessage } from '../shared/errors.js';

export interface FirmwareMonitorDeps {
  store: Store;
  tasks: TaskManager;
  ops: NodeOps;
  drivers: DriverRegistry;
  pollIntervalMs: number;
  /** Is this node this conductor's (its hash-ring owner)? Every node when absent. */
  owns?(node: Node): boolean;
  log: Logger;
}

export class FirmwareMonitor {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly d: FirmwareMonitorDeps) {}

  start(): void {
    const poll = () => {
      this.timer = setTimeout(async () => {
        await this.poll().catch((err) => this.d.log.warn({ err }, 'firmware monitor failed'));
        if (!this.stopped) poll();
      }, this.d.pollIntervalMs);
      this.timer.unref();
    };
    poll();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  /** Starts an update (lock held while the BMC accepts it); 409-style errors when one is running. */
  async update(node: Node, imageUrl: string, component: 'bios' | 'bmc'): Promise<void> {
    const fw = this.d.drivers.get(node.driver).firmware;
    if (!fw.startUpdate) throw new InvalidInputError(`driver: out-of-band firmware needs the redfish driver, node ${node.uuid} uses ${node.driver}`, 'driver');
    if (internalInfo(node).firmware_update) throw new InvalidStateError(`Node ${node.uuid} already has a firmware update in progress.`, node.uuid, node.provision_state);
    await this.d.tasks.withLock(
      node.id,
      'firmware update',
      async (task) => {
        const t = await fw.startUpdate!(task.node, imageUrl, component);
        await this.d.ops.patchInternal(task, { firmware_update: { ...t, started_at: new Date().toISOString() } });
        await this.d.store.updateNode(node.id, { last_error: null });
        await this.d.ops.history(node, `Firmware update of ${component} started from ${imageUrl} (BMC task ${t.task_uri})`, 'firmware', 'INFO');
      },
      { retries: 0 },
    );
  }

  /** One pass: polls every node with an update in flight; returns how many finished. */
  async poll(): Promise<number> {
    const drivers = this.d.drivers.names().filter((n) => this.d.drivers.get(n).firmware.pollUpdate);
    const nodes = (await this.d.store.listNodesWithInternal('firmware_update')).filter((n) => drivers.includes(n.driver) && (!this.d.owns || this.d.owns(n)));
    let finished = 0;
    await Promise.all(
      nodes.map(async (n) => {
        const fw = internalInfo(n).firmware_update!;
        let status;
        try {
          status = await this.d.drivers.get(n.driver).firmware.pollUpdate!(n, fw);
        } catch (err) {
          this.d.log.warn({ node: n.uuid, err: errorMessage(err) }, 'firmware task poll failed; will retry');
          return;
        }
        if (!status.finished) return;
        // Record it under the node lock: a flow may be writing driver_internal_info right now, and
        // an unlocked read-modify-write here once erased a parked flow's wait (node stuck in
        // `clean wait`). Locked by someone else: the next pass records it.
        const done = await this.d.tasks
          .withLock(
            n.id,
            'firmware task finished',
            async (task) => {
              if (!internalInfo(task.node).firmware_update) return false;
              if (status.ok && status.versions) {
                const v = status.versions;
                await this.d.ops.patchInternal(task, { firmware_update: null, firmware_versions: { ...v, updated_at: new Date().toISOString(), last_version_flashed: { component: fw.component, image_url: fw.image_url } } });
                await this.d.ops.history(n, `Firmware update of ${fw.component} completed; now ${fw.component === 'bios' ? v.bios : v.bmc}`, 'firmware', 'INFO');
              } else {
                const msg = `Firmware update of ${fw.component} failed: ${status.message}`;
                await this.d.ops.patchInternal(task, { firmware_update: null });
                await this.d.store.updateNode(n.id, { last_error: msg });
                await this.d.ops.history(n, msg, 'firmware', 'ERROR');
              }
              return true;
            },
            { retries: 0 },
          )
          .catch((err) => {
            if (!(err instanceof NodeLockedError)) throw err;
            return false;
          });
        if (done) finished++;
      }),
    );
    return finished;
  }
}
