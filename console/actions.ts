/**
 * The actions an operator takes from the console, each the same API call `baremetal` would make,
 * run on one node or a selection (eight at a time) with an outcome per node. A 503 from the
 * admission limits reads "queued/refused: limit", not a bare error.
 */
import { api, ApiError } from './api.js';

export interface ActionDef {
  label: string;
  /** Extra inputs the confirmation asks for. */
  inputs?: Array<{ key: string; label: string; placeholder?: string; required?: boolean }>;
  danger?: boolean;
  run(uuid: string, input: Record<string, string>): Promise<unknown>;
}

const power = (target: string) => (uuid: string) => api('PUT', `/v1/nodes/${uuid}/states/power`, { target });
const provision = (target: string) => (uuid: string) => api('PUT', `/v1/nodes/${uuid}/states/provision`, { target });
const image = [
  { key: 'image_source', label: 'Image URL', placeholder: 'http://images.example/os.img', required: true },
  { key: 'image_checksum', label: 'Checksum (sha256/sha512 hex, or a checksum file URL)', required: true },
];
async function withImage(uuid: string, input: Record<string, string>, target: string): Promise<unknown> {
  await api('PATCH', `/v1/nodes/${uuid}`, [
    { op: 'add', path: '/instance_info/image_source', value: input.image_source },
    { op: 'add', path: '/instance_info/image_checksum', value: input.image_checksum },
  ]);
  return api('PUT', `/v1/nodes/${uuid}/states/provision`, { target });
}

export const ACTIONS: Record<string, ActionDef> = {
  power_on: { label: 'Power on', run: power('power on') },
  power_off: { label: 'Power off', danger: true, run: power('power off') },
  reboot: { label: 'Reboot', danger: true, run: power('rebooting') },
  maintenance_set: {
    label: 'Set maintenance',
    inputs: [{ key: 'reason', label: 'Reason', required: true }],
    run: (uuid, i) => api('PUT', `/v1/nodes/${uuid}/maintenance`, { reason: i.reason }),
  },
  maintenance_unset: { label: 'Unset maintenance', run: (uuid) => api('DELETE', `/v1/nodes/${uuid}/maintenance`) },
  manage: { label: 'Manage', run: provision('manage') },
  provide: { label: 'Provide', run: provision('provide') },
  deploy: { label: 'Deploy', inputs: image, run: (uuid, i) => withImage(uuid, i, 'active') },
  rebuild: { label: 'Rebuild', danger: true, inputs: image, run: (uuid, i) => withImage(uuid, i, 'rebuild') },
  undeploy: { label: 'Undeploy', danger: true, run: provision('deleted') },
  abort: { label: 'Abort', danger: true, run: provision('abort') },
  unhold: { label: 'Unhold', run: provision('unhold') },
};

export interface Outcome {
  uuid: string;
  name: string;
  ok: boolean;
  message: string;
}

export function describeError(err: unknown): string {
  if (err instanceof ApiError) {
    if (err.status === 503 && err.code === 'IRF_CONCURRENT_ACTION_LIMIT') return `queued/refused: limit — ${err.message}`;
    return `${err.status}: ${err.message}`;
  }
  return String((err as Error)?.message ?? err);
}

/** Runs an action over nodes, `parallel` at a time; `progress` sees each outcome as it lands. */
export async function runBulk(def: ActionDef, nodes: Array<{ uuid: string; name: string }>, input: Record<string, string>, progress: (o: Outcome) => void, parallel = 8): Promise<Outcome[]> {
  const out: Outcome[] = [];
  let next = 0;
  const worker = async () => {
    while (next < nodes.length) {
      const n = nodes[next++]!;
      let o: Outcome;
      try {
        await def.run(n.uuid, input);
        o = { ...n, ok: true, message: 'accepted' };
      } catch (err) {
        o = { ...n, ok: false, message: describeError(err) };
      }
      out.push(o);
      progress(o);
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, nodes.length) }, worker));
  return out;
}
