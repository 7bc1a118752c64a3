/** UpdateService (SimpleUpdate, firmware inventory) and TaskService (the update tasks). */
import { ODATA, collection, redfishError, select, versionFromImage, type Reply, type ResourceContext, type Task } from './common.js';
import { between } from '../rng.js';

export function updateService(ctx: ResourceContext, seg: string[], method: string, body: Record<string, unknown> | undefined, query: URLSearchParams): Reply {
  const [, sub, item] = seg;
  const m = ctx.machines[0]!;
  if (!sub && method === 'GET') {
    return select(
      {
        ...ODATA('/redfish/v1/UpdateService', '#UpdateService.v1_11_0.UpdateService'),
        Id: 'UpdateService',
        Name: 'Update Service',
        ServiceEnabled: true,
        FirmwareInventory: { '@odata.id': '/redfish/v1/UpdateService/FirmwareInventory' },
        Actions: { '#UpdateService.SimpleUpdate': { target: '/redfish/v1/UpdateService/Actions/UpdateService.SimpleUpdate', 'TransferProtocol@Redfish.AllowableValues': ['HTTP', 'HTTPS'] } },
      },
      query,
    );
  }
  if (sub === 'FirmwareInventory' && method === 'GET') {
    if (!item) return collection('/redfish/v1/UpdateService/FirmwareInventory', '#SoftwareInventoryCollection.SoftwareInventoryCollection', 'Firmware Inventory', ['BIOS', 'BMC']);
    if (item !== 'BIOS' && item !== 'BMC') return redfishError(404, 'Base.1.8.ResourceMissingAtURI', `Firmware ${item} not found.`);
    return select(
      { ...ODATA(`/redfish/v1/UpdateService/FirmwareInventory/${item}`, '#SoftwareInventory.v1_10_0.SoftwareInventory'), Id: item, Name: item, Version: item === 'BIOS' ? m.biosVersion : m.bmcVersion, Updateable: true, Status: { State: 'Enabled', Health: 'OK' } },
      query,
    );
  }
  if (sub === 'Actions' && item === 'UpdateService.SimpleUpdate' && method === 'POST') {
    const uri = body?.ImageURI;
    if (typeof uri !== 'string' || !/^https?:\/\//.test(uri)) return redfishError(400, 'Base.1.8.ActionParameterMissing', 'ImageURI (http or https URL) is required.');
    const targets = (body?.Targets as string[] | undefined) ?? [];
    const component = targets.some((t) => /Managers/.test(t)) ? 'BMC' : 'BIOS';
    const id = String(ctx.nextTaskId());
    const dur = between(ctx.rng, ctx.profile.firmware_update_ms);
    const now = Date.now();
    const task: Task = { id, state: 'New', percent: 0, start: now, end: now + dur, image: uri, message: `Update of ${component} from ${uri}`, machineIndex: 0 };
    ctx.tasks.set(id, task);
    ctx.counters.tasks_created++;
    const done = setTimeout(() => {
      task.state = 'Completed';
      task.percent = 100;
      m.setFirmware(component, versionFromImage(uri, component === 'BIOS' ? m.biosVersion : m.bmcVersion));
    }, dur);
    done.unref();
    const loc = `/redfish/v1/TaskService/Tasks/${id}`;
    return { status: 202, headers: { Location: loc }, body: taskDoc(ctx, task) };
  }
  return redfishError(405, 'Base.1.8.OperationNotAllowed', `${method} is not allowed here.`);
}

export function taskDoc(ctx: ResourceContext, t: Task): Record<string, unknown> {
  const now = Date.now();
  if (t.state !== 'Completed' && t.state !== 'Exception') {
    t.state = now > t.start + 500 ? 'Running' : 'New';
    t.percent = Math.min(99, Math.floor(((now - t.start) / (t.end - t.start)) * 100));
  }
  return {
    ...ODATA(`/redfish/v1/TaskService/Tasks/${t.id}`, '#Task.v1_7_0.Task'),
    Id: t.id,
    Name: 'Firmware update',
    TaskState: t.state,
    TaskStatus: 'OK',
    PercentComplete: t.percent,
    StartTime: new Date(t.start).toISOString(),
    ...(t.state === 'Completed' ? { EndTime: new Date(t.end).toISOString() } : {}),
    Messages: [{ MessageId: 'TaskEvent.1.0.TaskProgressChanged', Message: t.message }],
  };
}

export function taskService(ctx: ResourceContext, seg: string[], method: string, query: URLSearchParams): Reply {
  const [, sub, id] = seg;
  if (method !== 'GET') return redfishError(405, 'Base.1.8.OperationNotAllowed', `${method} is not allowed here.`);
  if (!sub) {
    return select(
      { ...ODATA('/redfish/v1/TaskService', '#TaskService.v1_2_0.TaskService'), Id: 'TaskService', Name: 'Task Service', ServiceEnabled: true, Tasks: { '@odata.id': '/redfish/v1/TaskService/Tasks' } },
      query,
    );
  }
  if (sub === 'Tasks' && !id) return collection('/redfish/v1/TaskService/Tasks', '#TaskCollection.TaskCollection', 'Task Collection', [...ctx.tasks.keys()]);
  const t = id ? ctx.tasks.get(id) : undefined;
  if (!t) return redfishError(404, 'Base.1.8.ResourceMissingAtURI', `Task ${id} not found.`);
  return select(taskDoc(ctx, t), query);
}
