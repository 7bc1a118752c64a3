/** Ironic API microversions: what we accept and how a request picks one. */
import { IronfleetError } from '../../shared/errors.js';

export const MIN_VERSION = { major: 1, minor: 1 };
export const MAX_VERSION = { major: 1, minor: 96 };
/** Used when a request names no version (Ironic's default). */
export const DEFAULT_VERSION = { major: 1, minor: 1 };

export const fmt = (v: { major: number; minor: number }) => `${v.major}.${v.minor}`;

export interface ApiVersion {
  major: number;
  minor: number;
}

export function parseRequestedVersion(headers: Record<string, string | string[] | undefined>): ApiVersion {
  let raw = headers['x-openstack-ironic-api-version'];
  if (Array.isArray(raw)) raw = raw[0];
  if (!raw) {
    let generic = headers['openstack-api-version'];
    if (Array.isArray(generic)) generic = generic[0];
    const m = generic?.match(/^\s*baremetal\s+(\S+)\s*$/i);
    if (m) raw = m[1];
  }
  if (!raw) return DEFAULT_VERSION;
  if (raw.trim().toLowerCase() === 'latest') return MAX_VERSION;
  const m = raw.trim().match(/^(\d+)\.(\d+)$/);
  if (!m) {
    throw new IronfleetError('IRF_INVALID_INPUT', `Invalid value for X-OpenStack-Ironic-API-Version header: "${raw}"`, { httpStatus: 400 });
  }
  const v = { major: Number(m[1]), minor: Number(m[2]) };
  const n = (x: ApiVersion) => x.major * 1000 + x.minor;
  if (n(v) < n(MIN_VERSION) || n(v) > n(MAX_VERSION)) {
    throw new IronfleetError(
      'IRF_NOT_ACCEPTABLE',
      `Version ${fmt(v)} was requested but the minor version is not supported by this service. The supported version range is: [${fmt(MIN_VERSION)}, ${fmt(MAX_VERSION)}].`,
      { httpStatus: 406 },
    );
  }
  return v;
}

export function atLeast(v: ApiVersion, minor: number): boolean {
  return v.major > 1 || v.minor >= minor;
}
