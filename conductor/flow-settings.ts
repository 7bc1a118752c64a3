/** The flow engine's settings, compiled once from the conductor configuration. */
import type { ConductorConfig } from './config.js';
import type { FlowSettings } from './flow-plan.js';

export function flowSettings(cfg: ConductorConfig): FlowSettings {
  const c = cfg.conductor;
  return {
    fastTrack: c.fast_track,
    fastTrackTimeoutS: c.fast_track_timeout_s,
    callbackTimeoutS: c.deploy_callback_timeout_s,
    agentLostGraceS: cfg.agent.command_lost_grace_s,
    powerTimeoutS: c.power_state_change_timeout_s,
    automatedClean: c.automated_clean,
    eraseDevicesPriority: c.erase_devices_priority,
    eraseDevicesMetadataPriority: c.erase_devices_metadata_priority,
  };
}
